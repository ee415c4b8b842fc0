package wire

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/internal/wstest"
)

// recordingConn records every Write that reaches the socket.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// after101 returns the writes after the first, which must be the whole 101
// answer.
func (c *recordingConn) after101(t *testing.T) [][]byte {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.NotEmpty(t, c.writes)
	first := string(c.writes[0])
	require.True(t, strings.HasPrefix(first, "HTTP/1.1 101 Switching Protocols\r\n") && strings.HasSuffix(first, "\r\n\r\n"),
		"the 101 answer is not written by Accept in one write: %q", first)
	return c.writes[1:]
}

type recordingListener struct {
	net.Listener
	conns chan *recordingConn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	l.conns <- rc
	return rc, nil
}

// upgraded is one connection upgraded by Accept, with what its hooks saw.
type upgraded struct {
	ws           *websocket.Conn
	wc           *Conn
	deflate      bool
	pings, pongs chan string
	socket       *recordingConn
	raw          *wstest.Raw
}

// contractServer upgrades every request with Accept, offering the
// subprotocol "chat" and permessage-deflate without context takeover, as
// ratchet does.
func contractServer(t *testing.T) (dial func(wstest.RawOptions) *upgraded) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rl := &recordingListener{Listener: l, conns: make(chan *recordingConn, 1)}
	ups := make(chan *upgraded, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := &upgraded{pings: make(chan string, 10), pongs: make(chan string, 10)}
		opts := &websocket.AcceptOptions{
			InsecureSkipVerify: true,
			Subprotocols:       []string{"chat"},
			CompressionMode:    websocket.CompressionNoContextTakeover,
			OnPingReceived:     func(_ context.Context, p []byte) bool { u.pings <- string(p); return false },
			OnPongReceived:     func(_ context.Context, p []byte) { u.pongs <- string(p) },
		}
		var err error
		u.ws, u.wc, u.deflate, err = Accept(w, r, opts, 5*time.Second)
		assert.NoError(t, err)
		ups <- u
	}))
	srv.Listener.Close()
	srv.Listener = rl
	srv.Start()
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	return func(o wstest.RawOptions) *upgraded {
		raw := wstest.DialRaw(t, url, o)
		u := <-ups
		require.NotNil(t, u.ws)
		t.Cleanup(func() { u.ws.CloseNow() })
		u.socket, u.raw = <-rl.conns, raw
		return u
	}
}

func (u *upgraded) read(t *testing.T) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := u.ws.Read(ctx)
	return string(b), err
}

func closeFrame(code uint16, reason string) []byte {
	return append([]byte{0x88, byte(2 + len(reason)), byte(code >> 8), byte(code)}, reason...)
}

const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"

// TestCoderWebsocketContract checks, against the coder/websocket of go.mod,
// each point of the package documentation that ratchet relies on. If an
// upgrade of coder/websocket makes it fail, the package documentation says
// what ratchet needs; fix the wire package (or pin the old release) before
// anything else.
func TestCoderWebsocketContract(t *testing.T) {
	dial := contractServer(t)
	text := func(s string) []byte { return wstest.AppendFrame(nil, true, false, wstest.OpText, []byte(s)) }

	t.Run("the 101 is Accept's, from coder's headers; deflate is detected from them", func(t *testing.T) {
		u := dial(wstest.RawOptions{Header: "Sec-WebSocket-Protocol: chat\r\n" + deflateOffer})
		h := u.raw.Header
		assert.Equal(t, "websocket", h.Get("Upgrade"))
		assert.Equal(t, "Upgrade", h.Get("Connection"))
		assert.Equal(t, wstest.Accept, h.Get("Sec-WebSocket-Accept"))
		assert.Equal(t, "chat", h.Get("Sec-WebSocket-Protocol"))
		assert.Contains(t, h.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
		assert.True(t, u.deflate, "coder/websocket negotiated permessage-deflate without setting Sec-WebSocket-Extensions")
		assert.Empty(t, u.socket.after101(t))

		u = dial(wstest.RawOptions{})
		assert.Empty(t, u.raw.Header.Get("Sec-WebSocket-Extensions"))
		assert.False(t, u.deflate)
	})

	t.Run("coder reads through the Conn, the bytes read ahead with the request first", func(t *testing.T) {
		u := dial(wstest.RawOptions{Early: text("early")})
		m, err := u.read(t)
		require.NoError(t, err)
		assert.Equal(t, "early", m)
		assert.Positive(t, u.wc.nread.Load(), "coder/websocket read around the Conn")
	})

	t.Run("a ping goes to OnPingReceived; returning false, coder writes no pong", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		_, err := u.raw.Write(append(wstest.AppendFrame(nil, true, false, wstest.OpPing, []byte("p1")), text("after")...))
		require.NoError(t, err)
		m, err := u.read(t)
		require.NoError(t, err)
		assert.Equal(t, "after", m)
		assert.Equal(t, "p1", <-u.pings)
		assert.Empty(t, u.socket.after101(t), "coder/websocket wrote a pong")
	})

	t.Run("a pong goes to OnPongReceived", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		_, err := u.raw.Write(append(wstest.AppendFrame(nil, true, false, wstest.OpPong, []byte("p2")), text("after")...))
		require.NoError(t, err)
		_, err = u.read(t)
		require.NoError(t, err)
		assert.Equal(t, "p2", <-u.pongs)
	})

	t.Run("coder echoes the peer's close frame in one Write", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		u.raw.WriteFrame(t, wstest.OpClose, wstest.ClosePayload(1001, "bye"))
		_, err := u.read(t)
		assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err))
		assert.Equal(t, [][]byte{closeFrame(1001, "bye")}, u.socket.after101(t))
	})

	t.Run("coder writes the close for a protocol error in one Write", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		f := text("x")
		f[0] |= 0x20 // RSV2: no extension defines it
		_, err := u.raw.Write(f)
		require.NoError(t, err)
		_, err = u.read(t)
		require.Error(t, err)
		w := u.socket.after101(t)
		require.Len(t, w, 1)
		assert.Equal(t, byte(0x88), w[0][0])
		assert.Equal(t, uint16(1002), binary.BigEndian.Uint16(w[0][2:]))
	})

	t.Run("coder enforces the read limit and writes 1009 in one Write", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		u.ws.SetReadLimit(4)
		_, err := u.raw.Write(text("0123456789"))
		require.NoError(t, err)
		_, err = u.read(t)
		assert.ErrorIs(t, err, websocket.ErrMessageTooBig)
		w := u.socket.after101(t)
		require.Len(t, w, 1)
		assert.Equal(t, uint16(1009), binary.BigEndian.Uint16(w[0][2:]))
	})

	t.Run("corrupt compressed data is a flate.CorruptInputError", func(t *testing.T) {
		u := dial(wstest.RawOptions{Header: deflateOffer})
		require.True(t, u.deflate)
		_, err := u.raw.Write(wstest.AppendFrame(nil, true, true, wstest.OpText, []byte{0xff, 0xff, 0xff}))
		require.NoError(t, err)
		_, err = u.read(t)
		var corrupt flate.CorruptInputError
		assert.True(t, errors.As(err, &corrupt), "got %v", err)
	})

	t.Run("errors of Conn.Read reach coder's reader wrapped", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		u.wc.LimitRead(3)
		_, err := u.raw.Write(text("0123456789"))
		require.NoError(t, err)
		_, err = u.read(t)
		assert.ErrorIs(t, err, ErrReadLimit)
		assert.True(t, u.wc.LimitReached())
	})

	t.Run("ratchet's close first: coder's echo of the answer is dropped", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		require.NoError(t, u.wc.AppendFrame(OpClose, false, []byte{0x03, 0xe8}))
		assert.Equal(t, 1000, u.raw.ExpectClose(t)) // and answers it
		_, err := u.read(t)
		assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err))
		assert.Equal(t, [][]byte{closeFrame(1000, "")}, u.socket.after101(t), "one close frame, ratchet's")
		_, err = u.raw.ReadFrame()
		assert.Error(t, err, "no second close frame")
	})

	t.Run("coder's Close after ratchet's close frame reads on to the answer and writes nothing", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		require.NoError(t, u.wc.AppendFrame(OpClose, false, []byte{0x03, 0xe8}))
		closed := make(chan error, 1)
		go func() { closed <- u.ws.Close(websocket.StatusNormalClosure, "") }()
		u.raw.WriteFrame(t, wstest.OpText, []byte("read and dropped by Close"))
		assert.Equal(t, 1000, u.raw.ExpectClose(t))
		assert.NoError(t, <-closed, "coder/websocket's Close did not see the answer")
		assert.Equal(t, [][]byte{closeFrame(1000, "")}, u.socket.after101(t), "one close frame, ratchet's")
	})

	t.Run("a close reason that is not UTF-8 is answered with 1007", func(t *testing.T) {
		u := dial(wstest.RawOptions{})
		u.raw.WriteFrame(t, wstest.OpClose, wstest.ClosePayload(1000, "\xff"))
		_, err := u.read(t)
		assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err))
		assert.Equal(t, 1007, u.raw.ExpectClose(t))
	})
}
