package ratchet_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

// returns runs f on another goroutine and fails the test unless it returns
// while the stalled peer is still stalled (the test releases it only later).
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s is blocked behind the stalled peer", what)
	}
}

// pingFlood is n pings with the largest payload a control frame may carry,
// then a text message: once the server has read the message, it has
// answered (or is answering) every ping.
func pingFlood(n int, marker string) []byte {
	payload := bytes.Repeat([]byte("p"), 125)
	b := make([]byte, 0, n*(6+len(payload))+64)
	for range n {
		b = wstest.AppendFrame(b, true, false, wstest.OpPing, payload)
	}
	return wstest.AppendFrame(b, true, false, wstest.OpText, []byte(marker))
}

// A peer that floods pings and never reads stalls only itself: its pongs
// wait on its own socket, a Broadcast and a Hub.Publish that include it
// return while it is stalled, the others get the messages, and once its
// queue overflows it is a slow consumer (1008) like any peer that does not
// read.
func TestPingFloodDoesNotBlockSenders(t *testing.T) {
	ctx := context.Background()
	hub := ratchet.NewHub()
	t.Cleanup(func() { require.NoError(t, hub.Close(ctx)) })
	rec := newRecorder()
	// No write timeout and no keepalive: the stalled peer stays stalled for
	// as long as the test wants.
	const queue = 16
	s, url := serveComponent(t, rec, ratchet.WithWriteTimeout(0), ratchet.WithKeepalive(0, 0), ratchet.WithSendQueue(queue))
	stalled := wstest.DialRaw(t, url, wstest.RawOptions{RecvBuffer: 4 << 10})
	stalledConn := rec.expect(t, "open").conn
	other := dial(t, url, nil)
	otherConn := rec.expect(t, "open").conn
	for _, c := range []ratchet.Conn{stalledConn, otherConn} {
		require.NoError(t, hub.Subscribe(ctx, c, "t"))
	}

	// 64k pongs of 127 bytes, written one by one, are twice what the
	// server's socket (4 MiB at most) and the peer's 4 KiB receive buffer
	// hold: a server that wrote each pong before reading on would stop
	// reading here.
	flood := pingFlood(64<<10, "after the pings")
	wrote := make(chan error, 1)
	go func() { _, err := stalled.Write(flood); wrote <- err }()
	e := rec.next(t)
	require.Equal(t, "message", e.kind, "the server stopped reading the ping flood: %+v", e)
	require.Equal(t, "after the pings", e.msg.String())
	require.NoError(t, <-wrote)
	// Pongs that wait share one, so they may not fill the socket: a large
	// message does.
	require.NoError(t, stalledConn.Send(ratchet.Binary(make([]byte, 8<<20))))

	returns(t, "Broadcast", func() { assert.Equal(t, 2, s.Broadcast(ratchet.Text("broadcast"))) })
	returns(t, "Hub.Publish", func() {
		n, err := hub.Publish(ctx, "t", ratchet.Text("published"))
		assert.NoError(t, err)
		assert.Equal(t, 2, n)
	})
	for _, want := range []string{"broadcast", "published"} {
		_, m := read(t, other)
		assert.Equal(t, want, m)
	}

	// The stalled peer's queue overflows: it is cut as a slow consumer.
	// (OnError follows when the connection ends, after the close
	// handshake.)
	published := 0
	for refused := false; !refused; published++ {
		require.Less(t, published, 2*queue, "the stalled peer's queue never overflowed")
		returns(t, "Hub.Publish", func() {
			n, err := hub.Publish(ctx, "t", ratchet.Text(fmt.Sprint(published)))
			assert.NoError(t, err)
			refused = n == 1
		})
	}

	// Released, the peer reads its pongs and the large message, then the
	// close frame.
	assert.Equal(t, 1008, stalled.ExpectClose(t, wstest.OpPong, wstest.OpBinary))
	e = rec.expect(t, "error")
	assert.Same(t, stalledConn, e.conn)
	assert.ErrorIs(t, e.err, ratchet.ErrSlowConsumer)
	assert.Same(t, stalledConn, rec.expect(t, "close").conn)
	for i := range published {
		_, m := read(t, other)
		assert.Equal(t, fmt.Sprint(i), m)
	}
}

// A ping is answered with a pong carrying its payload; pings the peer sends
// faster than it reads may share one pong, the one for the latest.
func TestPingAnsweredWithPong(t *testing.T) {
	_, url := serveComponent(t, echo, ratchet.WithKeepalive(0, 0))
	c := wstest.DialRaw(t, url, wstest.RawOptions{})
	c.WriteFrame(t, wstest.OpPing, []byte("hello"))
	f := c.NextFrame(t)
	assert.Equal(t, byte(wstest.OpPong), f.Opcode)
	assert.Equal(t, "hello", string(f.Payload))

	var b []byte
	for i := range 100 {
		b = wstest.AppendFrame(b, true, false, wstest.OpPing, []byte(fmt.Sprint(i)))
	}
	b = wstest.AppendFrame(b, true, false, wstest.OpText, []byte("done"))
	_, err := c.Write(b)
	require.NoError(t, err)
	last := ""
	for {
		f := c.NextFrame(t)
		if f.Opcode == wstest.OpText {
			assert.Equal(t, "done", string(f.Payload))
			break
		}
		require.Equal(t, byte(wstest.OpPong), f.Opcode)
		last = string(f.Payload)
	}
	assert.Equal(t, "99", last, "the latest ping is answered before the message after it")
	c.WriteFrame(t, wstest.OpClose, wstest.ClosePayload(1000, ""))
	assert.Equal(t, 1000, c.ExpectClose(t))
}
