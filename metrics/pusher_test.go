package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
	"github.com/ratchetgo/ratchet/metrics"
	"github.com/ratchetgo/ratchet/pusher"
)

// A Pusher server's occupied channels and connections, and its webhook
// deliveries, retries and failures, are exported: a real client occupies
// two channels, and a webhook endpoint answers 500, 200 to the first
// batch (one retry, delivered) and 500, 500 to the second (given up after
// its two tries).
func TestWatchPusher(t *testing.T) {
	var mu sync.Mutex
	answers := []int{500, 200, 500, 500}
	requests := 0
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		status := http.StatusOK
		if requests < len(answers) {
			status = answers[requests]
		}
		requests++
		w.WriteHeader(status)
	}))
	t.Cleanup(hooks.Close)

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	hub := ratchet.NewHub()
	t.Cleanup(func() { _ = hub.Close(context.Background()) })
	app := pusher.App{ID: "1", Key: "app-key", Secret: "app-secret", WebhookGrace: -1,
		Webhooks: []pusher.Webhook{{URL: hooks.URL, Events: []string{pusher.WebhookChannelOccupied}}}}
	srv, err := pusher.NewServer(hub, []pusher.App{app}, pusher.WithWebhookRetries(2, time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, m.WatchPusher("main", srv))
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		ts.Close()
	})

	c := wstest.Dial(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/app/app-key?protocol=7", nil)
	defer c.Close(websocket.StatusNormalClosure, "")
	expect := func(event string) {
		t.Helper()
		for {
			_, got := wstest.Read(t, c)
			if strings.Contains(got, `"event":"`+event+`"`) {
				return
			}
		}
	}
	expect("pusher:connection_established")
	subscribe := func(channel string) {
		wstest.Write(t, c, `{"event":"pusher:subscribe","data":{"channel":"`+channel+`"}}`)
		expect("pusher_internal:subscription_succeeded")
	}
	subscribe("news")
	require.Eventually(t, func() bool { return srv.Stats().WebhookDeliveries == 1 }, 10*time.Second, time.Millisecond)
	subscribe("sports")
	require.Eventually(t, func() bool { return srv.Stats().WebhookFailures == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ratchet_pusher_channels_occupied Channels with a subscriber on this node.
# TYPE ratchet_pusher_channels_occupied gauge
ratchet_pusher_channels_occupied{app="1",pusher="main"} 2
# HELP ratchet_pusher_connections Pusher connections open on this node.
# TYPE ratchet_pusher_connections gauge
ratchet_pusher_connections{app="1",pusher="main"} 1
# HELP ratchet_pusher_webhook_deliveries_total Webhook batches delivered (answered with a 2xx).
# TYPE ratchet_pusher_webhook_deliveries_total counter
ratchet_pusher_webhook_deliveries_total{pusher="main"} 1
# HELP ratchet_pusher_webhook_dropped_events_total Webhook events dropped from full queues.
# TYPE ratchet_pusher_webhook_dropped_events_total counter
ratchet_pusher_webhook_dropped_events_total{pusher="main"} 0
# HELP ratchet_pusher_webhook_failures_total Webhook batches given up after their last try.
# TYPE ratchet_pusher_webhook_failures_total counter
ratchet_pusher_webhook_failures_total{pusher="main"} 1
# HELP ratchet_pusher_webhook_retries_total Webhook tries after a batch's first one.
# TYPE ratchet_pusher_webhook_retries_total counter
ratchet_pusher_webhook_retries_total{pusher="main"} 2
`), "ratchet_pusher_channels_occupied", "ratchet_pusher_connections", "ratchet_pusher_webhook_deliveries_total",
		"ratchet_pusher_webhook_dropped_events_total", "ratchet_pusher_webhook_failures_total", "ratchet_pusher_webhook_retries_total"))
	require.Error(t, m.WatchPusher("main", srv), "a second watch of the same name is refused")
}
