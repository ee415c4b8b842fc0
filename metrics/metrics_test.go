package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
	"github.com/ratchetgo/ratchet/metrics"
	"github.com/ratchetgo/ratchet/push"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sample returns the value of the sample of family name whose labels
// include want, from a parsed scrape.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam := fams[name]
	require.NotNil(t, fam, "no metric %s in the scrape", name)
	v, ok := lookup(fam, want)
	if !ok {
		t.Fatalf("no sample of %s with labels %v", name, want)
	}
	return v
}

// lookup returns the value of the first sample of fam whose labels include
// want (a histogram's: its count).
func lookup(fam *dto.MetricFamily, want map[string]string) (float64, bool) {
next:
	for _, m := range fam.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// Real clients drive a real App and Hub observed by Metrics; the counters
// move as they should, and one scrape of /metrics parses with expfmt and
// holds the same figures.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	hub := ratchet.NewHub(ratchet.WithHubObserver(m))
	t.Cleanup(func() { _ = hub.Close(context.Background()) })
	require.NoError(t, m.WatchHub("main", hub))
	broker := ratchet.NewMemoryBroker()
	require.NoError(t, m.WatchBroker("memory", broker)) // neither Connected nor Outages: nothing to watch
	assert.Error(t, m.WatchHub("main", hub), "a second watch of the same name is refused")

	ctx := context.Background()
	room := ratchet.ComponentFuncs{
		Open: func(c ratchet.Conn) { _ = hub.Subscribe(ctx, c, "room") },
		Message: func(c ratchet.Conn, msg ratchet.Message) {
			switch string(msg.Data) {
			case "flood": // past a send queue of 1 while in the callback
				for c.Send(ratchet.Text("x")) == nil {
				}
			default:
				_, _ = hub.Publish(ctx, "room", msg)
			}
		},
	}
	app := ratchet.NewApp("", 0, ratchet.WithObserver(m))
	app.Route("/room", room, nil, ratchet.WithSendQueue(1))
	app.Route("/auth", room, nil, ratchet.WithAuthenticate(func(*http.Request) (string, error) {
		return "", errors.New("no")
	}))
	app.Route("/one", room, nil, ratchet.WithMaxConns(1))
	app.Route("/other", room, nil, ratchet.WithHost("other.example"))
	app.Route("/panic", ratchet.ComponentFuncs{Message: func(ratchet.Conn, ratchet.Message) { panic("on purpose") }}, nil)
	app.Route("/ka", ratchet.ComponentFuncs{}, nil, ratchet.WithKeepalive(10*time.Millisecond, 20*time.Millisecond))
	app.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	addr := wstest.ServeApp(t, app)
	base := "ws://" + addr

	// Two clients in the room; one publishes, both receive.
	a := wstest.Dial(t, base+"/room", nil)
	b := wstest.Dial(t, base+"/room", nil)
	require.Eventually(t, func() bool { return hub.Stats().Subscriptions == 2 }, 10*time.Second, time.Millisecond)
	wstest.Write(t, a, "hello")
	for _, c := range []*websocket.Conn{a, b} {
		_, got := wstest.Read(t, c)
		assert.Equal(t, "hello", got)
	}
	// A flood closes a with 1008; b leaves with 1000; a panic closes with 1011.
	wstest.Write(t, a, "flood")
	assert.Equal(t, websocket.StatusPolicyViolation, wstest.ReadClose(t, a))
	require.NoError(t, b.Close(websocket.StatusNormalClosure, ""))
	p := wstest.Dial(t, base+"/panic", nil)
	wstest.Write(t, p, "panic")
	assert.Equal(t, websocket.StatusInternalError, wstest.ReadClose(t, p))

	// Refusals, one of each reason.
	status := func(url string, opts *websocket.DialOptions) int {
		c, resp, err := websocket.Dial(ctx, url, opts)
		if err == nil {
			c.CloseNow()
			return http.StatusSwitchingProtocols
		}
		require.NotNil(t, resp, "%v", err)
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusForbidden, status(base+"/room", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}}))
	assert.Equal(t, http.StatusUnauthorized, status(base+"/auth", nil))
	one := wstest.Dial(t, base+"/one", nil)
	assert.Equal(t, http.StatusServiceUnavailable, status(base+"/one", nil))
	assert.Equal(t, http.StatusNotFound, status(base+"/other", nil))
	resp, err := http.Get("http://" + addr + "/room") // GET without the upgrade
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)

	// A client that never reads does not answer pings.
	ka := wstest.Dial(t, base+"/ka", nil)
	defer ka.CloseNow()
	require.Eventually(t, func() bool { return gathered(t, reg, "ratchet_keepalive_timeouts_total", "/ka") == 1 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return gathered(t, reg, "ratchet_connections_closed_total", "/room") == 2 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return gathered(t, reg, "ratchet_connections_closed_total", "/panic") == 1 }, 10*time.Second, time.Millisecond)

	// One scrape, parsed.
	resp, err = http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)

	room1 := map[string]string{"route": "/room", "transport": "websocket"}
	assert.Equal(t, 2.0, sample(t, fams, "ratchet_connections_opened_total", room1))
	assert.Equal(t, 0.0, sample(t, fams, "ratchet_connections_open", room1))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_connections_open", map[string]string{"route": "/one"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_connections_closed_total", map[string]string{"route": "/room", "code": "1000"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_connections_closed_total", map[string]string{"route": "/panic", "code": "1011"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_connections_closed_total", map[string]string{"route": "/room", "code": "1008"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_connections_closed_total", map[string]string{"route": "/ka", "code": "1006"}))
	assert.Equal(t, 2.0, sample(t, fams, "ratchet_messages_received_total", room1), "hello, flood")
	assert.Equal(t, float64(len("helloflood")), sample(t, fams, "ratchet_received_bytes_total", room1))
	sent := sample(t, fams, "ratchet_messages_sent_total", room1)
	assert.GreaterOrEqual(t, sent, 3.0, "hello twice, and the flood")
	assert.Equal(t, sent-2, sample(t, fams, "ratchet_sent_bytes_total", room1)-2*5, "the flood's messages are 1 byte")
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_slow_consumer_closes_total", room1))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_callback_panics_total", map[string]string{"route": "/panic"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_keepalive_timeouts_total", map[string]string{"route": "/ka"}))
	for route, reason := range map[string]string{"/room": "origin", "/auth": "auth", "/one": "limit", "": "host"} {
		assert.Equal(t, 1.0, sample(t, fams, "ratchet_handshake_rejections_total", map[string]string{"route": route, "reason": reason}), reason)
	}
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_handshake_rejections_total", map[string]string{"route": "/room", "reason": "malformed"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_hub_publishes_total", map[string]string{"result": "ok"}))
	assert.Equal(t, 2.0, sample(t, fams, "ratchet_hub_deliveries_total", nil))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_hub_fanout", nil), "one observation")
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_hub_publish_duration_seconds", nil), "one observation")
	// Left: the connection on /one, in the room.
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_hub_connections", map[string]string{"hub": "main"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_hub_topics", map[string]string{"hub": "main"}))
	assert.Equal(t, 1.0, sample(t, fams, "ratchet_hub_subscriptions", map[string]string{"hub": "main"}))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ratchet_hub_publishes_total Hub publishes, by result (error: refused or the Broker failed).
# TYPE ratchet_hub_publishes_total counter
ratchet_hub_publishes_total{result="error"} 0
ratchet_hub_publishes_total{result="ok"} 1
`), "ratchet_hub_publishes_total"))
	require.NoError(t, one.Close(websocket.StatusNormalClosure, ""))
}

// gathered returns the value of name for route.
func gathered(t *testing.T, reg *prometheus.Registry, name, route string) float64 {
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "route" && lp.GetValue() == route {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	return 0
}

// A client that stops reading while the server sends more than the
// socket buffers hold makes a write time out; the counter moves and the
// connection is dropped (1006).
func TestWriteTimeoutCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	big := ratchet.Binary(make([]byte, 1<<20))
	app := ratchet.NewApp("", 0, ratchet.WithObserver(m))
	app.Route("/big", ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		for range 64 { // far more than loopback socket buffers take
			if c.Send(big) != nil {
				return
			}
		}
	}}, nil, ratchet.WithWriteTimeout(100*time.Millisecond), ratchet.WithSendQueue(1000))
	addr := wstest.ServeApp(t, app)
	c := wstest.Dial(t, "ws://"+addr+"/big", nil) // never read
	defer c.CloseNow()
	require.Eventually(t, func() bool { return gathered(t, reg, "ratchet_write_timeouts_total", "/big") == 1 },
		15*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		fams, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range fams {
			if f.GetName() == "ratchet_connections_closed_total" {
				return sample(t, map[string]*dto.MetricFamily{f.GetName(): f}, f.GetName(), map[string]string{"route": "/big", "code": "1006"}) == 1
			}
		}
		return false
	}, 15*time.Second, time.Millisecond)
}

// The publish API of package push, instrumented, counts its answers by
// status.
func TestInstrumentHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	hub := ratchet.NewHub()
	t.Cleanup(func() { _ = hub.Close(context.Background()) })
	secret := []byte("test-secret")
	app := ratchet.NewApp("", 0)
	app.Handle("/publish", m.InstrumentHandler("publish", push.NewPublishHandler(hub, push.WithSecret(secret))))
	addr := wstest.ServeApp(t, app)

	body := []byte(`{"topic":"news","data":"hi"}`)
	post := func(sign bool) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/publish", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if sign {
			ts, sig := push.Sign(secret, body, time.Now())
			req.Header.Set(push.HeaderTimestamp, ts)
			req.Header.Set(push.HeaderSignature, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, post(true))
	require.Equal(t, http.StatusUnauthorized, post(false))
	require.Equal(t, http.StatusUnauthorized, post(false))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ratchet_http_requests_total HTTP requests answered by an instrumented handler, by status.
# TYPE ratchet_http_requests_total counter
ratchet_http_requests_total{code="200",handler="publish"} 1
ratchet_http_requests_total{code="401",handler="publish"} 2
`), "ratchet_http_requests_total"))
}
