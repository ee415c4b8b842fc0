package topicsubs

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noLeave(context.Context, *Sub) error { return nil }

func mustNotReport(t *testing.T) func(error) {
	return func(err error) { t.Errorf("reported: %v", err) }
}

func TestDeliversInOrderToEach(t *testing.T) {
	var l List
	var a, b []string
	l.Add(func(m ratchet.Message) { a = append(a, m.String()) }, noLeave)
	l.Add(func(m ratchet.Message) { b = append(b, m.String()) }, noLeave)
	require.Equal(t, 2, l.Len())
	for i := range 3 {
		l.Deliver(ratchet.Text(fmt.Sprint(i)), mustNotReport(t))
	}
	assert.Equal(t, []string{"0", "1", "2"}, a)
	assert.Equal(t, []string{"0", "1", "2"}, b)
}

func TestPanicIsReportedAndOthersStillGetTheMessage(t *testing.T) {
	var l List
	var got []string
	l.Add(func(ratchet.Message) { panic("boom") }, noLeave)
	l.Add(func(m ratchet.Message) { got = append(got, m.String()) }, noLeave)
	var reported []error
	l.Deliver(ratchet.Text("x"), func(err error) { reported = append(reported, err) })
	require.Len(t, reported, 1)
	var pe *ratchet.PanicError
	require.ErrorAs(t, reported[0], &pe)
	assert.Equal(t, "boom", pe.Value)
	assert.NotEmpty(t, pe.Stack)
	assert.Equal(t, []string{"x"}, got)
}

func TestUnsubscribeRunsLeaveOnceAndStopsDeliveries(t *testing.T) {
	var l List
	leaves := 0
	errLeave := errors.New("unsubscribe failed")
	var n atomic.Int64
	s := l.Add(func(ratchet.Message) { n.Add(1) }, func(_ context.Context, s *Sub) error {
		leaves++
		l.Remove(s)
		return errLeave
	})
	// A delivery racing Unsubscribe either ends before it returns or does
	// not happen.
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				s.handle(ratchet.Text("x"), mustNotReport(t))
			}
		}
	}()
	for n.Load() == 0 {
		runtime.Gosched()
	}
	require.ErrorIs(t, s.Unsubscribe(context.Background()), errLeave)
	after := n.Load()
	close(stop)
	wg.Wait()
	assert.Equal(t, after, n.Load(), "delivered after Unsubscribe returned")
	require.NoError(t, s.Unsubscribe(context.Background()), "a second Unsubscribe does nothing")
	assert.Equal(t, 1, leaves)
	assert.Equal(t, 0, l.Len())
}

func TestRemoveAndClear(t *testing.T) {
	var l List
	a := l.Add(func(ratchet.Message) {}, noLeave)
	b := l.Add(func(ratchet.Message) {}, noLeave)
	assert.Equal(t, 1, l.Remove(a))
	assert.Equal(t, 1, l.Remove(a), "removing twice changes nothing")
	assert.Equal(t, []*Sub{b}, l.Clear())
	assert.Equal(t, 0, l.Len())
}

func TestInvalidTextIsDeliveredAsBinaryAndReported(t *testing.T) {
	var l List
	var got []ratchet.Message
	l.Add(func(m ratchet.Message) { got = append(got, m) }, noLeave)
	var reported []error
	report := func(err error) { reported = append(reported, err) }
	bad := ratchet.Message{Type: ratchet.MessageText, Data: []byte("caf\xe9")}
	l.Deliver(bad, report)
	l.Deliver(ratchet.Text("café"), report)
	l.Deliver(ratchet.Binary([]byte("\xff")), report)
	assert.Equal(t, []ratchet.Message{ratchet.Binary([]byte("caf\xe9")), ratchet.Text("café"), ratchet.Binary([]byte("\xff"))}, got)
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], ratchet.ErrInvalidUTF8)
}
