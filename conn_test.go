package ratchet_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

func TestEchoTextAndBinary(t *testing.T) {
	_, url := serveComponent(t, echo)
	c := dial(t, url, nil)
	write(t, c, "hello")
	typ, s := read(t, c)
	assert.Equal(t, websocket.MessageText, typ)
	assert.Equal(t, "hello", s)

	ctx := context.Background()
	require.NoError(t, c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2, 0xff}))
	typ, s = read(t, c)
	assert.Equal(t, websocket.MessageBinary, typ)
	assert.Equal(t, "\x00\x01\x02\xff", s)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

// OnOpen comes first, messages in order one at a time, OnClose once and last.
func TestCallbackOrderPerConnection(t *testing.T) {
	rec := newRecorder()
	inside := make(chan struct{}, 1)
	rec.onMessage = func(ratchet.Conn, ratchet.Message) {
		select {
		case inside <- struct{}{}:
		default:
			t.Error("OnMessage calls overlap for one connection")
		}
		time.Sleep(time.Millisecond)
		<-inside
	}
	_, url := serveComponent(t, rec)
	c := dial(t, url, nil)
	const n = 200
	for i := range n {
		write(t, c, fmt.Sprint(i))
	}
	require.NoError(t, c.Close(websocket.StatusNormalClosure, "bye"))

	open := rec.expect(t, "open")
	for i := range n {
		e := rec.expect(t, "message")
		assert.Same(t, open.conn, e.conn)
		assert.Equal(t, fmt.Sprint(i), e.msg.String())
	}
	rec.expect(t, "close")
	select {
	case e := <-rec.events:
		t.Fatalf("event after OnClose: %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
	assert.ErrorIs(t, open.conn.Send(ratchet.Text("late")), ratchet.ErrClosed)
	assert.Error(t, open.conn.Context().Err(), "context is done after the end")
}

// Every way a connection can end gives exactly one OnClose, and OnError only
// for the abnormal ones.
func TestOnCloseExactlyOnce(t *testing.T) {
	cases := []struct {
		name      string
		opts      []ratchet.WsOption
		onOpen    func(ratchet.Conn)
		onMessage func(ratchet.Conn, ratchet.Message)
		client    func(t *testing.T, c *websocket.Conn)
		wantErr   func(t *testing.T, err error) // nil: no OnError
		wantCode  websocket.StatusCode          // as seen by the client; 0: don't check
	}{
		{
			name:     "client close",
			client:   func(t *testing.T, c *websocket.Conn) { require.NoError(t, c.Close(websocket.StatusNormalClosure, "")) },
			wantCode: 0,
		},
		{
			name:   "client drops the TCP connection",
			client: func(t *testing.T, c *websocket.Conn) { c.CloseNow() },
			wantErr: func(t *testing.T, err error) {
				assert.ErrorContains(t, err, "connection lost")
			},
		},
		{
			name:     "server Close from OnOpen",
			onOpen:   func(c ratchet.Conn) { _ = c.Close(4000, "done") },
			client:   func(t *testing.T, c *websocket.Conn) { assert.Equal(t, websocket.StatusCode(4000), readClose(t, c)) },
			wantCode: 4000,
		},
		{
			name:      "panic in OnMessage",
			onMessage: func(ratchet.Conn, ratchet.Message) { panic("boom") },
			client: func(t *testing.T, c *websocket.Conn) {
				write(t, c, "x")
				assert.Equal(t, websocket.StatusInternalError, readClose(t, c))
			},
			wantErr: func(t *testing.T, err error) {
				var pe *ratchet.PanicError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, "boom", pe.Value)
				assert.Contains(t, string(pe.Stack), "TestOnCloseExactlyOnce")
			},
		},
		{
			name:   "panic in OnOpen",
			onOpen: func(ratchet.Conn) { panic(errors.New("open failed")) },
			client: func(t *testing.T, c *websocket.Conn) {
				assert.Equal(t, websocket.StatusInternalError, readClose(t, c))
			},
			wantErr: func(t *testing.T, err error) { assert.ErrorContains(t, err, "open failed") },
		},
		{
			name: "invalid UTF-8 text",
			client: func(t *testing.T, c *websocket.Conn) {
				require.NoError(t, c.Write(context.Background(), websocket.MessageText, []byte{0xff, 0xfe}))
				assert.Equal(t, websocket.StatusInvalidFramePayloadData, readClose(t, c))
			},
			wantErr: func(t *testing.T, err error) { assert.ErrorIs(t, err, ratchet.ErrInvalidUTF8) },
		},
		{
			name: "message over the read limit",
			opts: []ratchet.WsOption{ratchet.WithReadLimit(100)},
			client: func(t *testing.T, c *websocket.Conn) {
				_ = c.Write(context.Background(), websocket.MessageBinary, make([]byte, 101))
				assert.Equal(t, websocket.StatusMessageTooBig, readClose(t, c))
			},
			wantErr: func(t *testing.T, err error) {
				var ce *ratchet.CloseError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, ratchet.StatusMessageTooBig, ce.Code)
			},
		},
		{
			name: "client closes with an error code",
			client: func(t *testing.T, c *websocket.Conn) {
				require.NoError(t, c.Close(websocket.StatusPolicyViolation, "go away"))
			},
			wantErr: func(t *testing.T, err error) {
				var ce *ratchet.CloseError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, ratchet.StatusPolicyViolation, ce.Code)
				assert.Equal(t, "go away", ce.Reason)
			},
		},
		{
			name: "keepalive timeout",
			opts: []ratchet.WsOption{ratchet.WithKeepalive(50*time.Millisecond, 100*time.Millisecond)},
			// The client never reads, so it never answers the ping.
			client:  func(t *testing.T, c *websocket.Conn) {},
			wantErr: func(t *testing.T, err error) { assert.ErrorIs(t, err, ratchet.ErrKeepaliveTimeout) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			rec.onOpen, rec.onMessage = tc.onOpen, tc.onMessage
			_, url := serveComponent(t, rec, tc.opts...)
			c := dial(t, url, nil)
			open := rec.expect(t, "open")
			tc.client(t, c)
			e := rec.next(t)
			for e.kind == "message" {
				e = rec.next(t)
			}
			if tc.wantErr != nil {
				require.Equal(t, "error", e.kind, "want OnError, got %+v", e)
				assert.Same(t, open.conn, e.conn)
				tc.wantErr(t, e.err)
				e = rec.next(t)
			}
			require.Equal(t, "close", e.kind, "want OnClose, got %+v", e)
			select {
			case e := <-rec.events:
				t.Fatalf("event after OnClose: %+v", e)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// Keepalive pings do not close a peer that answers them.
func TestKeepaliveKeepsLivePeer(t *testing.T) {
	rec := newRecorder()
	_, url := serveComponent(t, rec, ratchet.WithKeepalive(20*time.Millisecond, time.Second))
	c := dial(t, url, nil)
	ctx := c.CloseRead(context.Background()) // reads, so pings are answered
	rec.expect(t, "open")
	select {
	case e := <-rec.events:
		t.Fatalf("unexpected %+v while the peer answers pings", e)
	case <-ctx.Done():
		t.Fatal("connection closed")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	rec.expect(t, "close")
}

// A peer that stops reading fills its queue: Send returns ErrSlowConsumer
// without blocking, OnError is told, the connection closes, and other
// connections keep getting everything.
func TestSlowConsumer(t *testing.T) {
	rec := newRecorder()
	s, url := serveComponent(t, rec, ratchet.WithSendQueue(64), ratchet.WithWriteTimeout(500*time.Millisecond))

	wstest.DialRaw(t, url, wstest.RawOptions{}) // a socket we never read from
	slow := rec.expect(t, "open").conn

	fast := dial(t, url, nil)
	fastConn := rec.expect(t, "open").conn

	payload := ratchet.Binary(make([]byte, 64<<10))
	var slowErr error
	sent := 0
	for i := 0; i < 10000 && slowErr == nil; i++ {
		slowErr = slow.Send(payload)
		sent++
	}
	// A Send that waited on the socket would have met the write timeout
	// and failed with it; ErrSlowConsumer says the queue filled instead.
	require.ErrorIs(t, slowErr, ratchet.ErrSlowConsumer)
	assert.ErrorIs(t, slow.Send(payload), ratchet.ErrClosed)

	// Meanwhile the fast connection gets all of a broadcast.
	const n = 50
	go func() {
		for i := range n {
			s.Broadcast(ratchet.Text(fmt.Sprint(i)), slow)
		}
	}()
	for i := range n {
		_, m := read(t, fast)
		assert.Equal(t, fmt.Sprint(i), m)
	}

	e := rec.next(t)
	require.Equal(t, "error", e.kind)
	assert.Same(t, slow, e.conn)
	assert.ErrorIs(t, e.err, ratchet.ErrSlowConsumer)
	e = rec.expect(t, "close")
	assert.Same(t, slow, e.conn)
	require.NoError(t, fast.Close(websocket.StatusNormalClosure, ""))
	assert.Same(t, fastConn, rec.expect(t, "close").conn)
}

// Sends from many goroutines at once are all delivered.
func TestConcurrentSends(t *testing.T) {
	rec := newRecorder()
	_, url := serveComponent(t, rec)
	c := dial(t, url, nil)
	conn := rec.expect(t, "open").conn
	const senders, each = 8, 25 // within the default queue of 256
	for g := range senders {
		go func() {
			for i := range each {
				assert.NoError(t, conn.Send(ratchet.Text(fmt.Sprintf("%d-%d", g, i))))
			}
		}()
	}
	last := map[int]int{}
	for range senders * each {
		_, m := read(t, c)
		var g, i int
		_, err := fmt.Sscanf(m, "%d-%d", &g, &i)
		require.NoError(t, err)
		if prev, ok := last[g]; ok {
			assert.Equal(t, prev+1, i, "order of one sender")
		}
		last[g] = i
	}
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	rec.expect(t, "close")
}

// A panic on one connection leaves the others working.
func TestPanicIsolated(t *testing.T) {
	comp := ratchet.ComponentFuncs{Message: func(c ratchet.Conn, m ratchet.Message) {
		if m.String() == "panic" {
			panic("boom")
		}
		_ = c.Send(m)
	}}
	_, url := serveComponent(t, comp)
	a, b := dial(t, url, nil), dial(t, url, nil)
	write(t, a, "panic")
	assert.Equal(t, websocket.StatusInternalError, readClose(t, a))
	write(t, b, "still here")
	_, m := read(t, b)
	assert.Equal(t, "still here", m)
}

func TestConnValuesAndMetadata(t *testing.T) {
	rec := newRecorder()
	_, url := serveComponent(t, rec)
	c := dial(t, url+"/?room=blue", nil)
	conn := rec.expect(t, "open").conn
	assert.NotZero(t, conn.ID())
	assert.Equal(t, "blue", conn.Request().URL.Query().Get("room"))
	assert.Contains(t, conn.RemoteAddr(), "127.0.0.1:")
	_, ok := conn.Get("k")
	assert.False(t, ok)
	conn.Set("k", 42)
	v, ok := conn.Get("k")
	assert.True(t, ok)
	assert.Equal(t, 42, v)
	c2 := dial(t, url, nil)
	assert.NotEqual(t, conn.ID(), rec.expect(t, "open").conn.ID())
	c.CloseNow()
	c2.CloseNow()
	rec.expect(t, "error")
	rec.expect(t, "close")
	rec.expect(t, "error")
	rec.expect(t, "close")
}

// A close reason reaches the peer as valid UTF-8 (RFC 6455 §8.1): a long one
// is cut to fit a control frame without splitting a character, invalid
// bytes are left out.
func TestCloseReasonValidUTF8(t *testing.T) {
	for _, tc := range []struct{ reason, want string }{
		{strings.Repeat("é", 100), strings.Repeat("é", 61)}, // 200 bytes, cut to 122
		{"a\xffb", "ab"},
	} {
		_, url := serveComponent(t, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { _ = c.Close(4001, tc.reason) }})
		c := dial(t, url, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		var ce websocket.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, websocket.StatusCode(4001), ce.Code)
		assert.True(t, utf8.ValidString(ce.Reason))
		assert.Equal(t, tc.want, ce.Reason)
	}
}

func TestStatusCodeString(t *testing.T) {
	assert.Equal(t, "1008 policy violation", ratchet.StatusPolicyViolation.String())
	assert.Equal(t, "4000", ratchet.StatusCode(4000).String())
}

// A peer that takes no bytes at all loses its connection after the write
// timeout, even when its queue never fills.
func TestWriteTimeoutDropsStuckPeer(t *testing.T) {
	rec := newRecorder()
	_, url := serveComponent(t, rec, ratchet.WithWriteTimeout(200*time.Millisecond), ratchet.WithReadLimit(-1))
	wstest.DialRaw(t, url, wstest.RawOptions{}) // a socket we never read from
	conn := rec.expect(t, "open").conn
	start := time.Now()
	require.NoError(t, conn.Send(ratchet.Binary(make([]byte, 16<<20)))) // far more than socket buffers hold
	e := rec.expect(t, "error")
	var ne net.Error
	require.ErrorAs(t, e.err, &ne, "got %v", e.err)
	assert.True(t, ne.Timeout())
	assert.Less(t, time.Since(start), 5*time.Second)
	rec.expect(t, "close")
}

// A close code that may not be sent becomes 1011, as with coder/websocket.
func TestCloseWithUnsendableCode(t *testing.T) {
	for _, code := range []ratchet.StatusCode{ratchet.StatusNoStatusRcvd, 1004, 2000, 5000} {
		_, url := serveComponent(t, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { _ = c.Close(code, "x") }})
		c := dial(t, url, nil)
		assert.Equal(t, websocket.StatusInternalError, readClose(t, c), "code %d", code)
	}
	for _, code := range []ratchet.StatusCode{ratchet.StatusTryAgainLater, 3000, 4999} {
		_, url := serveComponent(t, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { _ = c.Close(code, "x") }})
		c := dial(t, url, nil)
		assert.Equal(t, websocket.StatusCode(code), readClose(t, c))
	}
}
