package ratchet_test

import (
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

// On Linux an idle connection holds no goroutine: its reader parks the
// socket between messages (internal/netpoll), a new one reads when input
// comes, and a parked connection still closes cleanly. With RATCHET_EPOLL=0
// (the portable path) each connection keeps its reader goroutine, which the
// test checks instead, so that it can fail either way. Checked for a
// WsServer on net/http's server and on App.Serve, whose own accept loop
// hands the route the socket itself (and net/http a wrapper that still
// gives it, for a head over 4 KiB).
func TestIdleConnsHoldNoGoroutine(t *testing.T) {
	t.Run("WsServer", func(t *testing.T) {
		rec := newRecorder()
		_, url := serveComponent(t, rec)
		testIdleConns(t, rec, url, nil)
	})
	serveApp := func(t *testing.T) (*recorder, string) {
		rec := newRecorder()
		app := ratchet.NewApp("", 0)
		app.Route("/ws", rec, nil)
		return rec, "ws://" + startApp(t, app) + "/ws"
	}
	t.Run("App.Serve", func(t *testing.T) {
		rec, url := serveApp(t)
		testIdleConns(t, rec, url, nil)
	})
	t.Run("App.Serve, head over 4 KiB", func(t *testing.T) {
		rec, url := serveApp(t)
		testIdleConns(t, rec, url, &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {strings.Repeat("c", 5000)}}})
	})
}

func testIdleConns(t *testing.T, rec *recorder, url string, opts *websocket.DialOptions) {
	parks := runtime.GOOS == "linux" && os.Getenv("RATCHET_EPOLL") != "0"
	before := runtime.NumGoroutine()
	const n = 40
	clients := make([]*websocket.Conn, n)
	conns := make(map[ratchet.Conn]*websocket.Conn, n)
	for i := range clients {
		clients[i] = wstest.Dial(t, url, opts)
		conns[rec.expect(t, "open").conn] = clients[i]
	}
	idle := func() bool {
		grown := runtime.NumGoroutine() - before
		if parks {
			return grown < n/4 // the poller's goroutine and a few of net/http's
		}
		return grown >= n
	}
	require.Eventually(t, idle, 10*time.Second, 10*time.Millisecond,
		"goroutines grew by %d for %d idle connections (parking: %v)", runtime.NumGoroutine()-before, n, parks)

	// Parked connections read again, in order, and park again.
	for _, c := range clients {
		wstest.Write(t, c, "one")
		wstest.Write(t, c, "two")
	}
	got := make(map[ratchet.Conn]string, n)
	for range 2 * n {
		e := rec.expect(t, "message")
		got[e.conn] += string(e.msg.Data) + " "
	}
	for sc := range conns {
		assert.Equal(t, "one two ", got[sc])
	}
	require.Eventually(t, idle, 10*time.Second, 10*time.Millisecond)

	// A server-side Close of a parked connection: the close handshake needs a reader.
	for sc, c := range conns {
		require.NoError(t, sc.Close(ratchet.StatusNormalClosure, "bye"))
		assert.Equal(t, websocket.StatusNormalClosure, wstest.ReadClose(t, c))
		assert.Equal(t, sc, rec.expect(t, "close").conn)
		break
	}
}
