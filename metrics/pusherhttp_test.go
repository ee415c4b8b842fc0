package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/metrics"
	"github.com/ratchetgo/ratchet/pusher"
)

// Sessions of pusher-js's HTTP transports are observed under their own
// label: opened, messages both ways, a malformed request refused, and a
// session whose client stops polling ended by the session timeout (a
// keepalive timeout, closed without a code: 1006).
func TestPusherHTTPObserved(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	hub := ratchet.NewHub()
	t.Cleanup(func() { _ = hub.Close(context.Background()) })
	srv, err := pusher.NewServer(hub, []pusher.App{{ID: "1", Key: "app-key", Secret: "app-secret"}},
		pusher.WithHTTPTransports(pusher.HTTPTransports{Observer: m, SessionTimeout: 100 * time.Millisecond}))
	require.NoError(t, err)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		ts.Close()
	})
	l := func(kv ...string) map[string]string {
		out := map[string]string{"route": pusher.DefaultHTTPPath, "transport": pusher.HTTPTransportLabel}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(ts.URL+pusher.DefaultHTTPPath+"/app/app-key/"+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}

	status, _ := post("1/a.b/xhr", "")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_handshake_rejections_total", l("reason", "malformed")))

	_, body := post("1/abc/xhr", "")
	require.Equal(t, "o\n", body)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_open", l()))
	_, body = post("1/abc/xhr", "")
	require.Contains(t, body, "connection_established")
	status, _ = post("1/abc/xhr_send", `["{\"event\":\"pusher:ping\",\"data\":{}}"]`)
	require.Equal(t, http.StatusNoContent, status)
	_, body = post("1/abc/xhr", "")
	require.Contains(t, body, "pusher:pong")
	assert.Equal(t, 1.0, value(t, reg, "ratchet_messages_received_total", l()))
	assert.Equal(t, 2.0, value(t, reg, "ratchet_messages_sent_total", l()))

	// No more polls: the session times out.
	require.Eventually(t, func() bool { return value(t, reg, "ratchet_connections_open", l()) == 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_keepalive_timeouts_total", l()))
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_closed_total", l("code", "1006")))
}
