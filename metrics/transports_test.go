package metrics_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
	"github.com/ratchetgo/ratchet/internal/wstest"
	"github.com/ratchetgo/ratchet/metrics"
	"github.com/ratchetgo/ratchet/push"
)

// value returns the sample of name whose labels include labels, gathered
// from reg; -1 when there is none.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name {
			if v, ok := lookup(f, labels); ok {
				return v
			}
		}
	}
	return -1
}

// SSE streams are observed under their own transport label: opened, open,
// messages queued, closed by how they ended (the client leaving, a slow
// consumer), refused requests.
func TestSSEObserved(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	hub := ratchet.NewHub()
	t.Cleanup(func() { _ = hub.Close(context.Background()) })
	sse := push.NewSSE(hub, push.WithObserver(m, "/events"), push.WithSendQueue(1), push.WithHeartbeat(0))
	app := ratchet.NewApp("", 0)
	app.Handle("/events", sse)
	base := "http://" + wstest.ServeApp(t, app) + "/events"
	l := map[string]string{"route": "/events", "transport": push.TransportSSE}
	with := func(k, v string) map[string]string {
		out := map[string]string{k: v}
		for lk, lv := range l {
			out[lk] = lv
		}
		return out
	}

	resp, err := http.Post(base+"?topic=news", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_handshake_rejections_total", with("reason", "malformed")))

	// A stream that reads: one message, then the client leaves.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"?topic=news", nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	rd := bufio.NewReader(resp.Body)
	_, err = rd.ReadString('\n') // retry:, sent once subscribed
	require.NoError(t, err)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_open", l))
	n, err := hub.Publish(context.Background(), "news", ratchet.Text("hello"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	for line := ""; line != "data: hello\n"; {
		line, err = rd.ReadString('\n')
		require.NoError(t, err)
	}
	cancel()
	require.Eventually(t, func() bool { return sse.Len() == 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_closed_total", with("code", "1005")), "the client left")

	// A stream that never reads: publishes fill the socket, then the
	// queue, and the stream is closed as a slow consumer.
	resp, err = http.Get(base + "?topic=big")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	big := ratchet.Text(strings.Repeat("x", 1<<20))
	sent := 0
	for ; sent < 1000; sent++ {
		if n, err := hub.Publish(context.Background(), "big", big); err != nil || n == 0 {
			break
		}
	}
	require.Less(t, sent, 1000, "the stream never overflowed")
	require.Eventually(t, func() bool { return sse.Len() == 0 }, 10*time.Second, time.Millisecond)
	_, _ = io.Copy(io.Discard, resp.Body)

	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_closed_total", with("code", "1008")), "the slow consumer")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ratchet_connections_opened_total Connections upgraded.
# TYPE ratchet_connections_opened_total counter
ratchet_connections_opened_total{route="/events",transport="sse"} 2
# HELP ratchet_connections_open Connections open now.
# TYPE ratchet_connections_open gauge
ratchet_connections_open{route="/events",transport="sse"} 0
# HELP ratchet_slow_consumer_closes_total Connections closed because their send queue was full.
# TYPE ratchet_slow_consumer_closes_total counter
ratchet_slow_consumer_closes_total{route="/events",transport="sse"} 1
`), "ratchet_connections_opened_total", "ratchet_connections_open", "ratchet_slow_consumer_closes_total"))
	assert.Equal(t, float64(1+sent), value(t, reg, "ratchet_messages_sent_total", l), "hello, and the big ones queued")
}

// Engine.IO sessions are observed under the label "engineio": a polling
// session's messages both ways and its close, a refused handshake, and a
// session whose client stops answering pings.
func TestEngineIOObserved(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	echo := ratchet.ComponentFuncs{Message: func(c ratchet.Conn, msg ratchet.Message) { _ = c.Send(msg) }}
	h := engineio.NewHandler(echo, engineio.WithObserver(m, "/eio"))
	ka := engineio.NewHandler(echo, engineio.WithObserver(m, "/ka"), engineio.WithPing(10*time.Millisecond, 10*time.Millisecond))
	app := ratchet.NewApp("", 0)
	app.Handle("/eio/", h)
	app.Handle("/ka/", ka)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, h.Shutdown(ctx))
		assert.NoError(t, ka.Shutdown(ctx))
	})
	base := "http://" + wstest.ServeApp(t, app)
	l := func(route string, kv ...string) map[string]string {
		out := map[string]string{"route": route, "transport": engineio.TransportLabel}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}

	status, body := eio(t, "GET", base+"/eio/?EIO=3&transport=polling", "")
	require.Equal(t, http.StatusBadRequest, status, body)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_handshake_rejections_total", l("/eio", "reason", "malformed")))

	session := eioOpen(t, base+"/eio/")
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_open", l("/eio")))
	status, _ = eio(t, "POST", session, "4hello")
	require.Equal(t, http.StatusOK, status)
	status, body = eio(t, "GET", session, "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "4hello", body)
	status, _ = eio(t, "POST", session, "1") // the client's close packet
	require.Equal(t, http.StatusOK, status)
	require.Eventually(t, func() bool { return value(t, reg, "ratchet_connections_open", l("/eio")) == 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_opened_total", l("/eio")))
	assert.Equal(t, 1.0, value(t, reg, "ratchet_connections_closed_total", l("/eio", "code", "1001")))
	assert.Equal(t, 1.0, value(t, reg, "ratchet_messages_received_total", l("/eio")))
	assert.Equal(t, 1.0, value(t, reg, "ratchet_messages_sent_total", l("/eio")))
	assert.Equal(t, 5.0, value(t, reg, "ratchet_received_bytes_total", l("/eio")))

	eioOpen(t, base+"/ka/") // never polls again: no pong
	require.Eventually(t, func() bool { return value(t, reg, "ratchet_keepalive_timeouts_total", l("/ka")) == 1 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return value(t, reg, "ratchet_connections_closed_total", l("/ka", "code", "1006")) == 1 }, 10*time.Second, time.Millisecond)
}

// eio makes one Engine.IO request and returns its status and body.
func eio(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// eioOpen makes the handshake of a polling session and returns its URL.
func eioOpen(t *testing.T, base string) string {
	t.Helper()
	status, body := eio(t, "GET", base+"?EIO=4&transport=polling", "")
	require.Equal(t, http.StatusOK, status, body)
	i := strings.Index(body, `"sid":"`)
	require.GreaterOrEqual(t, i, 0, body)
	sid := body[i+len(`"sid":"`):]
	return base + "?EIO=4&transport=polling&sid=" + sid[:strings.IndexByte(sid, '"')]
}
