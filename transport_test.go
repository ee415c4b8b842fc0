package ratchet_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// pubTransport is a PublicationWriter that records what it is given.
type pubTransport struct {
	mu     sync.Mutex
	got    []ratchet.Publication
	closed chan ratchet.StatusCode
}

func newPubTransport() *pubTransport { return &pubTransport{closed: make(chan ratchet.StatusCode, 1)} }

func (p *pubTransport) WritePublications(pubs []ratchet.Publication) error {
	p.mu.Lock()
	p.got = append(p.got, pubs...)
	p.mu.Unlock()
	return nil
}

func (p *pubTransport) WriteMessages([]ratchet.Message) error {
	return errors.New("a PublicationWriter is given publications")
}

func (p *pubTransport) Close(code ratchet.StatusCode, _ string) error {
	p.closed <- code
	return nil
}

func (p *pubTransport) publications() []ratchet.Publication {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ratchet.Publication(nil), p.got...)
}

// The TransportConn of a PublicationWriter gets a topic's messages with
// their topic and position (Envelope does not apply), Send's messages
// without a topic, and its transport's notes, all in the order queued.
func TestTransportConnWritesPublications(t *testing.T) {
	hub := ratchet.NewHub(ratchet.WithHistory("*", ratchet.HistoryPolicy{}))
	defer hub.Close(context.Background())
	ctx := context.Background()
	first, _, err := hub.PublishPosition(ctx, "news", ratchet.Text("1"))
	require.NoError(t, err)
	second, _, err := hub.PublishPosition(ctx, "news", ratchet.Text("2"))
	require.NoError(t, err)

	tr := newPubTransport()
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, tr, httptest.NewRequest("GET", "/", nil), "", 16)
	c.Open()
	note := ratchet.Publication{Topic: "news", Position: second, Message: ratchet.Message{Data: []byte("mark")}}
	_, err = hub.SubscribeWith(ctx, c, "news", ratchet.SubscribeOptions{
		Since:    first,
		Envelope: true,
		Ready:    func(ratchet.Recovery) { require.NoError(t, c.SendPublication(note)) },
	})
	require.NoError(t, err)
	third, _, err := hub.PublishPosition(ctx, "news", ratchet.Text("3"))
	require.NoError(t, err)
	require.NoError(t, c.Send(ratchet.Text("direct")))
	require.NoError(t, c.Close(ratchet.StatusNormalClosure, ""))
	require.Equal(t, ratchet.StatusNormalClosure, <-tr.closed)
	<-c.Done()
	require.Equal(t, []ratchet.Publication{
		{Topic: "news", Position: second, Message: ratchet.Text("2")}, // recovered
		note,
		{Topic: "news", Position: third, Message: ratchet.Text("3")},
		{Message: ratchet.Text("direct")},
	}, tr.publications())
}

// stuckTransport is a peer that stopped reading: WriteMessages waits until
// Interrupt.
type stuckTransport struct {
	writing     chan struct{}
	interrupted chan struct{}
	once        sync.Once
	closed      chan ratchet.StatusCode
}

func (s *stuckTransport) WriteMessages([]ratchet.Message) error {
	s.writing <- struct{}{}
	<-s.interrupted
	return errors.New("interrupted")
}

func (s *stuckTransport) Interrupt() { s.once.Do(func() { close(s.interrupted) }) }

func (s *stuckTransport) Close(code ratchet.StatusCode, _ string) error {
	s.closed <- code
	return nil
}

// A queue overflow interrupts the write under way, instead of waiting for a
// peer that stopped reading; the Conn closes with 1008 and OnError is told.
func TestTransportConnOverflowInterrupts(t *testing.T) {
	tr := &stuckTransport{writing: make(chan struct{}, 1), interrupted: make(chan struct{}), closed: make(chan ratchet.StatusCode, 1)}
	errs := make(chan error, 2)
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{Error: func(_ ratchet.Conn, err error) { errs <- err }},
		tr, httptest.NewRequest("GET", "/", nil), "", 2)
	c.Open()
	require.NoError(t, c.Send(ratchet.Text("taken")))
	<-tr.writing
	require.NoError(t, c.Send(ratchet.Text("1")))
	require.NoError(t, c.Send(ratchet.Text("2")))
	require.ErrorIs(t, c.Send(ratchet.Text("3")), ratchet.ErrSlowConsumer)
	select {
	case code := <-tr.closed:
		require.Equal(t, ratchet.StatusPolicyViolation, code)
	case <-time.After(10 * time.Second): // a watchdog, not a timing assertion
		t.Fatal("the write under way was not interrupted")
	}
	<-c.Done()
	require.ErrorIs(t, <-errs, ratchet.ErrSlowConsumer)
	require.Empty(t, errs)
}

// End with a *CloseError is the peer's own close: its code is the
// connection's, and only an abnormal one reaches OnError.
func TestTransportConnEndWithCloseCode(t *testing.T) {
	for _, tc := range []struct {
		code    ratchet.StatusCode
		onError bool
	}{
		{ratchet.StatusNoStatusRcvd, false},
		{ratchet.StatusGoingAway, false},
		{4000, true},
	} {
		tr := newPubTransport()
		errs := make(chan error, 1)
		c := ratchet.NewTransportConn(ratchet.ComponentFuncs{Error: func(_ ratchet.Conn, err error) { errs <- err }},
			tr, httptest.NewRequest("GET", "/", nil), "", 2)
		c.Open()
		c.End(&ratchet.CloseError{Code: tc.code, Reason: "bye"})
		require.Equal(t, tc.code, <-tr.closed)
		<-c.Done()
		if !tc.onError {
			require.Empty(t, errs, tc.code)
			continue
		}
		var ce *ratchet.CloseError
		require.ErrorAs(t, <-errs, &ce)
		require.Equal(t, tc.code, ce.Code)
	}
}

// Hub.SetUser changes a TransportConn's identity and the user it is reached
// by; a Conn of another package cannot be changed.
func TestHubSetUserOnTransportConn(t *testing.T) {
	hub := ratchet.NewHub()
	defer hub.Close(context.Background())
	ctx := context.Background()
	tr := newPubTransport()
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, tr, httptest.NewRequest("GET", "/", nil), "alice", 4)
	c.Open()
	require.NoError(t, hub.Add(ctx, c))
	require.NoError(t, hub.SetUser(ctx, c, "bob"))
	require.Equal(t, "bob", c.User())
	n, err := hub.PublishToUser(ctx, "alice", ratchet.Text("for alice"))
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = hub.PublishToUser(ctx, "bob", ratchet.Text("for bob"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	c.End(nil)
	<-c.Done()

	require.ErrorContains(t, hub.SetUser(ctx, newPubConn(), "carol"), "not a connection of package ratchet")
}
