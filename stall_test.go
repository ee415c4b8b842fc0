package ratchet_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
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
	s, url := serveTight(t, rec, ratchet.WithWriteTimeout(0), ratchet.WithKeepalive(0, 0), ratchet.WithSendQueue(queue))
	stalled := wstest.DialRaw(t, url, wstest.RawOptions{RecvBuffer: 4 << 10})
	stalledConn := rec.expect(t, "open").conn
	other := dial(t, url, nil)
	otherConn := rec.expect(t, "open").conn
	for _, c := range []ratchet.Conn{stalledConn, otherConn} {
		require.NoError(t, hub.Subscribe(ctx, c, "t"))
	}

	// 8k pongs of 127 bytes, 1 MiB, are far more than the server's 16 KiB
	// send buffer and the peer's 4 KiB receive buffer hold: a server that
	// wrote each pong before reading on would stop reading here.
	flood := pingFlood(8<<10, "after the pings")
	wrote := make(chan error, 1)
	go func() { _, err := stalled.Write(flood); wrote <- err }()
	e := rec.next(t)
	require.Equal(t, "message", e.kind, "the server stopped reading the ping flood: %+v", e)
	require.Equal(t, "after the pings", e.msg.String())
	require.NoError(t, <-wrote)
	// Pongs that wait share one, so they may not fill the socket: a large
	// message does.
	require.NoError(t, stalledConn.Send(ratchet.Binary(make([]byte, 1<<20))))

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

// pipeline writes n requests without waiting for the replies and checks
// that the replies come back all and in order: a client that reads is never
// a slow consumer, however far ahead of the server it writes.
func pipeline(t *testing.T, url string, n int, request, reply func(i int) string) {
	t.Helper()
	c := dial(t, url, nil)
	wrote := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, []byte(request(i))); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	for i := range n {
		_, m := read(t, c)
		require.Equal(t, reply(i), m, "reply %d", i)
	}
	require.NoError(t, <-wrote)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

// 10,000 pipelined echo requests are all answered, in order: the replies
// sent from OnMessage hold back the connection's reader instead of
// overflowing its send queue.
func TestPipelinedRequestsAllAnswered(t *testing.T) {
	_, url := serveComponent(t, echo)
	msg := func(i int) string { return fmt.Sprintf("request %d", i) }
	pipeline(t, url, 10000, msg, msg)
}

// A peer that pipelines requests and does not read stops being read once
// half its queue waits; sends from elsewhere then overflow the queue, and
// it is closed with 1008 like any slow consumer.
func TestNonReadingPipelinerIsSlowConsumer(t *testing.T) {
	rec := newRecorder()
	rec.onMessage = func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }
	const queue = 16
	_, url := serveTight(t, rec, ratchet.WithSendQueue(queue), ratchet.WithWriteTimeout(0), ratchet.WithKeepalive(0, 0))
	raw := wstest.DialRaw(t, url, wstest.RawOptions{RecvBuffer: 4 << 10})
	conn := rec.expect(t, "open").conn

	// 64 KiB requests: 8 MiB of echoes are far more than the sockets hold.
	req := wstest.AppendFrame(nil, true, false, wstest.OpBinary, make([]byte, 64<<10))
	wrote, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(wrote)
		for range 128 {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := raw.Write(req); err != nil {
				return // the server closed the connection
			}
		}
	}()
	// 256 KiB messages from elsewhere fill the sockets, if the echoes have
	// not, then the queue.
	big := ratchet.Binary(make([]byte, 256<<10))
	var err error
	for i := 0; err == nil; i++ {
		require.Less(t, i, 10*queue, "the queue never overflowed")
		err = conn.Send(big)
	}
	require.ErrorIs(t, err, ratchet.ErrSlowConsumer)
	close(stop)

	assert.Equal(t, 1008, raw.ExpectClose(t, wstest.OpBinary, wstest.OpText))
	e := rec.next(t)
	for e.kind == "message" {
		e = rec.next(t)
	}
	require.Equal(t, "error", e.kind)
	assert.ErrorIs(t, e.err, ratchet.ErrSlowConsumer)
	rec.expect(t, "close")
	<-wrote
}

// The server's close handshake while the peer keeps sending: the peer gets
// the close frame, its answer ends the connection, and the messages that
// arrive after Close do not reach OnMessage.
func TestCloseWhilePeerSends(t *testing.T) {
	rec := newRecorder()
	rec.onMessage = func(c ratchet.Conn, m ratchet.Message) {
		if m.String() == "close" {
			_ = c.Close(4000, "done")
		}
	}
	_, url := serveComponent(t, rec)
	c := wstest.DialRaw(t, url, wstest.RawOptions{})
	rec.expect(t, "open")
	b := wstest.AppendFrame(nil, true, false, wstest.OpText, []byte("close"))
	for range 300 {
		// fragmented, so that the reader is often in the middle of one
		b = wstest.AppendFrame(b, false, false, wstest.OpBinary, make([]byte, 3000))
		b = wstest.AppendFrame(b, true, false, wstest.OpContinuation, make([]byte, 3000))
	}
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(b); wrote <- err }()
	assert.Equal(t, 4000, c.ExpectClose(t))
	require.NoError(t, <-wrote)
	assert.Equal(t, "close", rec.expect(t, "message").msg.String())
	rec.expect(t, "close")
}

// When the send queue overflows, the messages not yet written are dropped
// with it: the close frame (1008) follows the message under way, so a peer
// that reads again gets it at once instead of after megabytes.
func TestSlowConsumerCloseFrameFirst(t *testing.T) {
	rec := newRecorder()
	const queue = 4
	_, url := serveTight(t, rec, ratchet.WithSendQueue(queue), ratchet.WithWriteTimeout(0), ratchet.WithKeepalive(0, 0))
	raw := wstest.DialRaw(t, url, wstest.RawOptions{RecvBuffer: 4 << 10})
	conn := rec.expect(t, "open").conn
	// Each message is far more than the sockets hold.
	msg := ratchet.Binary(make([]byte, 256<<10))
	require.NoError(t, conn.Send(msg))
	// It is under way once its first bytes arrive (a Send made while OnOpen
	// has not quite returned is queued rather than written inline, and the
	// queue must not hold it too).
	_, err := raw.Peek(10)
	require.NoError(t, err)
	for range queue { // a full queue behind it
		require.NoError(t, conn.Send(msg))
	}
	f := raw.NextFrame(t)
	require.Equal(t, len(msg.Data), len(f.Payload))
	// The next one has started: the writer has taken the queue as its batch.
	_, err = raw.Peek(10)
	require.NoError(t, err)
	for range queue {
		require.NoError(t, conn.Send(msg))
	}
	require.ErrorIs(t, conn.Send(msg), ratchet.ErrSlowConsumer)

	f = raw.NextFrame(t)
	assert.Equal(t, byte(wstest.OpBinary), f.Opcode, "the message under way")
	f = raw.NextFrame(t)
	require.Equal(t, byte(wstest.OpClose), f.Opcode, "then the close frame, not the rest of the batch")
	assert.Equal(t, 1008, f.CloseCode())
	raw.WriteFrame(t, wstest.OpClose, f.Payload[:2])
	e := rec.expect(t, "error")
	assert.ErrorIs(t, e.err, ratchet.ErrSlowConsumer)
	rec.expect(t, "close")
}
