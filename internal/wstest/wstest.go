//go:build unix

// Package wstest holds the WebSocket client steps the tests of several
// packages share: dial, read, write and wait for the close, each bounded by
// a timeout and failing the test on error.
package wstest

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Dial opens a client connection, closed at the end of the test.
func Dial(t testing.TB, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	require.NoError(t, err)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// Read reads one message.
func Read(t testing.TB, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	require.NoError(t, err)
	return typ, string(b)
}

// Write sends s as a text message.
func Write(t testing.TB, c *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(s)))
}

// ReadClose reads until the connection ends and returns its close code.
func ReadClose(t testing.TB, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			require.NoError(t, ctx.Err(), "no close within the timeout")
			return websocket.CloseStatus(err)
		}
	}
}

// App is what ServeApp serves: a ratchet.App (named by its methods, so
// that internal/wire's tests, which ratchet imports, can use this package).
type App interface {
	Serve(l net.Listener) error
	Shutdown(ctx context.Context) error
}

// ServeApp serves app on a loopback port, shuts it down at the end of the
// test (checking that Serve then returned http.ErrServerClosed, which is
// ratchet.ErrServerClosed), and returns its address.
func ServeApp(t testing.TB, app App) (addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- app.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, app.Shutdown(ctx))
		assert.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	return l.Addr().String()
}
