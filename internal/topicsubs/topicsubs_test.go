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

// pub is msg as a publication of topic "t" without position.
func pub(msg ratchet.Message) ratchet.Publication {
	return ratchet.Publication{Topic: "t", Message: msg}
}

func mustNotReport(t *testing.T) func(error) {
	return func(err error) { t.Errorf("reported: %v", err) }
}

func TestDeliversInOrderToEach(t *testing.T) {
	var l List
	var a, b []string
	l.Add(func(m ratchet.Publication) { a = append(a, m.Message.String()) }, noLeave)
	l.Add(func(m ratchet.Publication) { b = append(b, m.Message.String()) }, noLeave)
	require.Equal(t, 2, l.Len())
	for i := range 3 {
		l.Deliver(pub(ratchet.Text(fmt.Sprint(i))), mustNotReport(t))
	}
	assert.Equal(t, []string{"0", "1", "2"}, a)
	assert.Equal(t, []string{"0", "1", "2"}, b)
}

func TestPanicIsReportedAndOthersStillGetTheMessage(t *testing.T) {
	var l List
	var got []string
	l.Add(func(ratchet.Publication) { panic("boom") }, noLeave)
	l.Add(func(m ratchet.Publication) { got = append(got, m.Message.String()) }, noLeave)
	var reported []error
	l.Deliver(pub(ratchet.Text("x")), func(err error) { reported = append(reported, err) })
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
	s := l.Add(func(ratchet.Publication) { n.Add(1) }, func(_ context.Context, s *Sub) error {
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
				s.handle(pub(ratchet.Text("x")), mustNotReport(t))
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
	a := l.Add(func(ratchet.Publication) {}, noLeave)
	b := l.Add(func(ratchet.Publication) {}, noLeave)
	assert.Equal(t, 1, l.Remove(a))
	assert.Equal(t, 1, l.Remove(a), "removing twice changes nothing")
	assert.Equal(t, []*Sub{b}, l.Clear())
	assert.Equal(t, 0, l.Len())
}

func TestInvalidTextIsDeliveredAsBinaryAndReported(t *testing.T) {
	var l List
	var got []ratchet.Message
	l.Add(func(m ratchet.Publication) { got = append(got, m.Message) }, noLeave)
	var reported []error
	report := func(err error) { reported = append(reported, err) }
	bad := ratchet.Message{Type: ratchet.MessageText, Data: []byte("caf\xe9")}
	l.Deliver(pub(bad), report)
	l.Deliver(pub(ratchet.Text("café")), report)
	l.Deliver(pub(ratchet.Binary([]byte("\xff"))), report)
	assert.Equal(t, []ratchet.Message{ratchet.Binary([]byte("caf\xe9")), ratchet.Text("café"), ratchet.Binary([]byte("\xff"))}, got)
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], ratchet.ErrInvalidUTF8)
}

func TestPublicationPassesThroughAndPlainTakesItsMessage(t *testing.T) {
	var l List
	var got []ratchet.Publication
	var msgs []ratchet.Message
	l.Add(func(p ratchet.Publication) { got = append(got, p) }, noLeave)
	l.Add(Plain(func(m ratchet.Message) { msgs = append(msgs, m) }), noLeave)
	p := ratchet.Publication{Topic: "news", Position: ratchet.Position{Epoch: "e", Offset: 7}, Message: ratchet.Text("hi")}
	l.Deliver(p, mustNotReport(t))
	assert.Equal(t, []ratchet.Publication{p}, got)
	assert.Equal(t, []ratchet.Message{ratchet.Text("hi")}, msgs)
	assert.Nil(t, Plain(nil))
}
