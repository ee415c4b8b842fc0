package ratchet_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

// event is one callback seen by a recorder.
type event struct {
	kind string // open, message, error, close
	conn ratchet.Conn
	msg  ratchet.Message
	err  error
}

// recorder is a MessageComponent that records every callback in order and
// can be told what to do on a message.
type recorder struct {
	events    chan event
	onMessage func(ratchet.Conn, ratchet.Message)
	onOpen    func(ratchet.Conn)
}

func newRecorder() *recorder { return &recorder{events: make(chan event, 10000)} }

func (r *recorder) OnOpen(c ratchet.Conn) {
	r.events <- event{kind: "open", conn: c}
	if r.onOpen != nil {
		r.onOpen(c)
	}
}

func (r *recorder) OnMessage(c ratchet.Conn, m ratchet.Message) {
	r.events <- event{kind: "message", conn: c, msg: m}
	if r.onMessage != nil {
		r.onMessage(c, m)
	}
}
func (r *recorder) OnClose(c ratchet.Conn) { r.events <- event{kind: "close", conn: c} }
func (r *recorder) OnError(c ratchet.Conn, err error) {
	r.events <- event{kind: "error", conn: c, err: err}
}

// next waits for the next event.
func (r *recorder) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-r.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a callback")
		return event{}
	}
}

// expect waits for the next event and checks its kind.
func (r *recorder) expect(t *testing.T, kind string) event {
	t.Helper()
	e := r.next(t)
	require.Equal(t, kind, e.kind, "event %+v", e)
	return e
}

// serve starts an httptest server for h and returns its ws:// URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// serveComponent serves c with a WsServer and shuts it down at the end.
func serveComponent(t *testing.T, c ratchet.MessageComponent, opts ...ratchet.WsOption) (*ratchet.WsServer, string) {
	t.Helper()
	s := ratchet.NewWsServer(c, opts...)
	url := serve(t, s)
	shutdownAtEnd(t, s)
	return s, url
}

// serveTight is serveComponent with a 16 KiB send buffer on each server
// socket (instead of up to 4 MiB), so that a peer that does not read stalls
// the server's writes after a few kilobytes.
func serveTight(t *testing.T, c ratchet.MessageComponent, opts ...ratchet.WsOption) (*ratchet.WsServer, string) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := ratchet.NewWsServer(c, opts...)
	srv := httptest.NewUnstartedServer(s)
	srv.Listener.Close()
	srv.Listener = l // accepted sockets inherit the send buffer
	srv.Start()
	t.Cleanup(srv.Close)
	shutdownAtEnd(t, s)
	return s, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func shutdownAtEnd(t *testing.T, s *ratchet.WsServer) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
}

// dialStatus tries a handshake and returns the HTTP status it got.
func dialStatus(t *testing.T, url string, opts *websocket.DialOptions) int {
	t.Helper()
	if resp := dialResponse(t, url, opts); resp != nil {
		return resp.StatusCode
	}
	return http.StatusSwitchingProtocols
}

// dialResponse tries a handshake and returns the refusal it got, or nil
// when the handshake succeeded (the connection is then dropped).
func dialResponse(t *testing.T, url string, opts *websocket.DialOptions) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err == nil {
		c.CloseNow()
		return nil
	}
	require.NotNil(t, resp, "no HTTP response: %v", err)
	return resp
}

// The client steps shared with the other packages' tests.
var (
	dial      = wstest.Dial
	read      = wstest.Read
	write     = wstest.Write
	readClose = wstest.ReadClose
)

// echo is a component that sends every message back.
var echo = ratchet.ComponentFuncs{Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }}

type syncList struct {
	mu sync.Mutex
	s  []string
}

func (l *syncList) add(format string, args ...any) {
	l.mu.Lock()
	l.s = append(l.s, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// Write makes a syncList an io.Writer of lines, for a logger.
func (l *syncList) Write(p []byte) (int, error) {
	l.add("%s", p)
	return len(p), nil
}

func (l *syncList) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.s)
}
