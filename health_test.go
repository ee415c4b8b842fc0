package ratchet_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// probe GETs url and returns the status and body.
func probe(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// During Shutdown, /readyz answers 503 before any client hears its 1001:
// OnClose is held until the client, having received the close, has probed,
// so a readiness turned off only after the connections were closed would
// be seen as 200. /healthz stays 200 throughout.
func TestReadyGoesFalseBeforeGoingAway(t *testing.T) {
	opened, release := make(chan struct{}), make(chan struct{})
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{
		Open:  func(ratchet.Conn) { close(opened) },
		Close: func(ratchet.Conn) { <-release },
	}, nil)
	app.Handle("/healthz", app.HealthHandler())
	app.Handle("/readyz", app.ReadyHandler())
	addr := startApp(t, app)
	base := "http://" + addr

	status, body := probe(t, base+"/readyz")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ready", body)
	require.True(t, app.Ready())

	c := dial(t, "ws://"+addr+"/ws", nil)
	<-opened
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- app.Shutdown(ctx)
	}()
	_, _, err := c.Read(context.Background())
	require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err))
	// Shutdown is still waiting for OnClose: the HTTP server still answers.
	status, body = probe(t, base+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "shutting down", body)
	assert.False(t, app.Ready())
	status, _ = probe(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, status)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before OnClose was released", err)
	default:
	}
	close(release)
	require.NoError(t, <-shut)
}
