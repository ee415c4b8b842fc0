package metrics_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
	"github.com/ratchetgo/ratchet/metrics"
)

// Publishes to a topic with history are counted, and so is each
// subscription that asks to resume: complete when history holds what it
// missed, reset when it cannot (an epoch it does not know). A subscription
// that does not ask is not counted.
func TestHistoryObserved(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	ctx := context.Background()
	hub := ratchet.NewHub(ratchet.WithHubObserver(m), ratchet.WithHistory("news", ratchet.HistoryPolicy{Size: 10}))
	t.Cleanup(func() { _ = hub.Close(ctx) })

	var first ratchet.Position
	for i := range 3 {
		pos, _, err := hub.PublishPosition(ctx, "news", ratchet.Text("m"))
		require.NoError(t, err)
		if i == 0 {
			first = pos
		}
	}
	_, err := hub.Publish(ctx, "plain", ratchet.Text("no history"))
	require.NoError(t, err)

	app := ratchet.NewApp("", 0)
	app.Route("/sub", ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		var since ratchet.Position
		if s := c.Request().URL.Query().Get("since"); s != "" {
			since, _ = ratchet.ParsePosition(s)
		}
		if hub.Add(ctx, c) != nil {
			return
		}
		if _, err := hub.SubscribeWith(ctx, c, "news", ratchet.SubscribeOptions{Since: since}); err == nil {
			_ = c.Send(ratchet.Text("subscribed"))
		}
	}}, nil)
	base := "ws://" + wstest.ServeApp(t, app) + "/sub"
	for _, since := range []string{first.String(), "other-epoch:1", ""} {
		c := wstest.Dial(t, base+"?since="+url.QueryEscape(since), nil)
		for {
			if _, got := wstest.Read(t, c); got == "subscribed" {
				break
			}
		}
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ratchet_hub_history_publishes_total Hub publishes to topics that keep history, by result (error: not stored).
# TYPE ratchet_hub_history_publishes_total counter
ratchet_hub_history_publishes_total{result="error"} 0
ratchet_hub_history_publishes_total{result="ok"} 3
# HELP ratchet_hub_recoveries_total Subscriptions that asked to resume, by result (complete: every missed message sent; reset: a gap the client must reset over).
# TYPE ratchet_hub_recoveries_total counter
ratchet_hub_recoveries_total{result="complete"} 1
ratchet_hub_recoveries_total{result="reset"} 1
`), "ratchet_hub_history_publishes_total", "ratchet_hub_recoveries_total"))
	require.Equal(t, 4.0, value(t, reg, "ratchet_hub_publishes_total", map[string]string{"result": "ok"}), "every publish, with history or not")
}
