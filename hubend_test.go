package ratchet_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
)

// A WebSocket connection in several Hubs leaves each of them when it ends,
// and a Hub closed before it ends is left alone.
func TestHubMembershipsEndWithWebSocketConn(t *testing.T) {
	ctx := context.Background()
	add, sub, closed := ratchet.NewHub(), ratchet.NewHub(), ratchet.NewHub()
	defer add.Close(ctx)
	defer sub.Close(ctx)
	rec := newRecorder()
	joined := make(chan struct{}) // the recorder records "open" before it calls onOpen
	rec.onOpen = func(c ratchet.Conn) {
		defer close(joined)
		assert.NoError(t, add.Add(ctx, c))
		assert.NoError(t, sub.Subscribe(ctx, c, "news"))
		assert.NoError(t, closed.SetUser(ctx, c, "ann"))
	}
	_, url := serveComponent(t, rec)
	client := dial(t, url, nil)
	c := rec.expect(t, "open").conn
	<-joined
	assert.Equal(t, 1, add.Len())
	assert.Equal(t, 1, sub.Subscribers("news"))
	require.NoError(t, closed.Close(ctx))
	assert.Zero(t, closed.Len())

	require.NoError(t, client.Close(websocket.StatusNormalClosure, ""))
	rec.expect(t, "close")
	require.Eventually(t, func() bool { return add.Len() == 0 && sub.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Empty(t, sub.Topics())
	assert.ErrorIs(t, add.Add(ctx, c), ratchet.ErrClosed, "an ended connection does not join")
	assert.ErrorIs(t, sub.Subscribe(ctx, c, "news"), ratchet.ErrClosed)
	assert.Zero(t, add.Len()+sub.Len())
}

// A TransportConn leaves its Hubs when it ends, and no goroutine is left
// behind: none waits while it is a member, none stays once it has left.
func TestHubMembershipOfTransportConnLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	ctx := context.Background()
	hub := ratchet.NewHub()
	defer hub.Close(ctx)
	conns := make([]*ratchet.TransportConn, 20)
	for i := range conns {
		conns[i] = ratchet.NewTransportConn(ratchet.ComponentFuncs{}, newPubTransport(), httptest.NewRequest("GET", "/", nil), "bob", 4)
		conns[i].Open()
		require.NoError(t, hub.Subscribe(ctx, conns[i], "news"))
	}
	require.NoError(t, goleak.Find(ignore), "a member holds no goroutine")
	assert.Equal(t, len(conns), hub.Len())

	for _, c := range conns {
		c.End(nil)
		<-c.Done()
	}
	require.Eventually(t, func() bool { return hub.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Empty(t, hub.Topics())
	n, err := hub.PublishToUser(ctx, "bob", ratchet.Text("gone"))
	require.NoError(t, err)
	assert.Zero(t, n)
	goleak.VerifyNone(t, ignore)
	assert.ErrorIs(t, hub.Add(ctx, conns[0]), ratchet.ErrClosed)
}

// wrappedConn is a Conn of another package that wraps one of this
// package's; embeddingConn embeds a TransportConn, and with it its
// unexported methods.
type (
	wrappedConn   struct{ ratchet.Conn }
	embeddingConn struct{ *ratchet.TransportConn }
)

// A Conn implemented outside the package leaves the Hub when its Context
// ends, even one that embeds a connection of the package: it is that Conn,
// not the one it embeds, that the Hub knows.
func TestHubMembershipOfForeignConnEnds(t *testing.T) {
	ctx := context.Background()
	hub := ratchet.NewHub()
	defer hub.Close(ctx)
	newConn := func() *ratchet.TransportConn {
		c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, newPubTransport(), httptest.NewRequest("GET", "/", nil), "", 4)
		c.Open()
		return c
	}
	inner1, inner2 := newConn(), newConn()
	for _, c := range []ratchet.Conn{wrappedConn{inner1}, embeddingConn{inner2}} {
		require.NoError(t, hub.Subscribe(ctx, c, "news"))
	}
	assert.Equal(t, 2, hub.Subscribers("news"))

	inner1.End(nil)
	require.Eventually(t, func() bool { return hub.Len() == 1 }, 5*time.Second, 5*time.Millisecond)
	inner2.End(nil)
	require.Eventually(t, func() bool { return hub.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, hub.Subscribers("news"))
	assert.ErrorIs(t, hub.Add(ctx, embeddingConn{inner2}), ratchet.ErrClosed)

	// Close stops the AfterFunc of a foreign Conn still a member.
	c := newConn()
	require.NoError(t, hub.Add(ctx, wrappedConn{c}))
	require.NoError(t, hub.Close(ctx))
	c.End(nil)
	<-c.Done()
	assert.Zero(t, hub.Len())
}
