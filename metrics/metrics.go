// Package metrics exports what ratchet's servers, Hubs and Brokers do as
// Prometheus metrics, through the observer seam of package ratchet
// (ratchet.WithObserver, ratchet.WithHubObserver), so that the root package
// does not depend on Prometheus:
//
//	m := metrics.New(prometheus.DefaultRegisterer)
//	app := ratchet.NewApp("", 8080, ratchet.WithObserver(m))
//	hub := ratchet.NewHub(ratchet.WithHubObserver(m))
//	m.WatchHub(hub)
//	app.Handle("/metrics", promhttp.Handler())
//
// Every metric is named ratchet_*. Connection metrics carry the labels route
// (the App route's pattern) and transport ("websocket"; "sse" and "engineio"
// for the handlers given the Metrics by push.WithObserver and
// engineio.WithObserver); the label values are resolved once per route, so
// that counting a message costs a few atomic adds. WatchHub, WatchBroker and
// WatchPusher export gauges read at each scrape.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/pusher"
)

// Metrics holds the collectors. It implements ratchet.Observer and
// ratchet.HubObserver; one Metrics can observe any number of Apps, and the
// publishes and deliveries of any number of Hubs.
type Metrics struct {
	reg prometheus.Registerer

	open                          *prometheus.GaugeVec
	opened, msgIn, msgOut         *prometheus.CounterVec
	bytesIn, bytesOut, slow       *prometheus.CounterVec
	writeTimeouts, panics, pongTO *prometheus.CounterVec
	closed, rejected              *prometheus.CounterVec

	publishes  outcome // ok, error
	historyPub outcome // ok, error
	recoveries outcome // complete, reset
	requests   *prometheus.CounterVec
	deliveries prometheus.Counter
	fanout     prometheus.Histogram
	latency    prometheus.Histogram
}

// FanoutBuckets are the buckets of ratchet_hub_fanout: how many local
// connections a published message was queued for.
var FanoutBuckets = prometheus.ExponentialBuckets(1, 4, 9) // 1 .. 65536

// LatencyBuckets are the buckets of ratchet_hub_publish_duration_seconds,
// from 10 µs (in-process fan-out) to 2.5 s (a broker timing out).
var LatencyBuckets = prometheus.ExponentialBuckets(10e-6, 4, 10)

// New creates the collectors and registers them with reg (for example
// prometheus.DefaultRegisterer, or a prometheus.NewRegistry()). It panics if
// they are registered already, as prometheus.MustRegister does.
func New(reg prometheus.Registerer) *Metrics {
	conn := []string{"route", "transport"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ratchet", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg: reg,
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ratchet", Name: "connections_open",
			Help: "Connections open now."}, conn),
		opened:        counter("connections_opened_total", "Connections upgraded.", conn...),
		closed:        counter("connections_closed_total", "Connections ended, by close code (1006: dropped without one).", "route", "transport", "code"),
		rejected:      counter("handshake_rejections_total", "Upgrade requests refused, by reason.", "route", "transport", "reason"),
		msgIn:         counter("messages_received_total", "Messages received from clients.", conn...),
		msgOut:        counter("messages_sent_total", "Messages queued for clients.", conn...),
		bytesIn:       counter("received_bytes_total", "Payload bytes received from clients.", conn...),
		bytesOut:      counter("sent_bytes_total", "Payload bytes queued for clients.", conn...),
		slow:          counter("slow_consumer_closes_total", "Connections closed because their send queue was full.", conn...),
		writeTimeouts: counter("write_timeouts_total", "Socket writes that did not finish within the write timeout.", conn...),
		panics:        counter("callback_panics_total", "Panics in component callbacks.", conn...),
		pongTO:        counter("keepalive_timeouts_total", "Connections dropped for not answering a ping.", conn...),
		requests:      counter("http_requests_total", "HTTP requests answered by an instrumented handler, by status.", "handler", "code"),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ratchet", Name: "hub_deliveries_total",
			Help: "Messages queued for local connections by Hub fan-out."}),
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "ratchet", Name: "hub_fanout",
			Help: "Local connections one published message was queued for.", Buckets: FanoutBuckets}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "ratchet", Name: "hub_publish_duration_seconds",
			Help: "Time a Hub publish took (through the Broker, with one).", Buckets: LatencyBuckets}),
	}
	publishes := counter("hub_publishes_total", "Hub publishes, by result (error: refused or the Broker failed).", "result")
	historyPub := counter("hub_history_publishes_total", "Hub publishes to topics that keep history, by result (error: not stored).", "result")
	recoveries := counter("hub_recoveries_total", "Subscriptions that asked to resume, by result (complete: every missed message sent; reset: a gap the client must reset over).", "result")
	m.publishes = newOutcome(publishes, "ok", "error")
	m.historyPub = newOutcome(historyPub, "ok", "error")
	m.recoveries = newOutcome(recoveries, "complete", "reset")
	reg.MustRegister(m.open, m.opened, m.closed, m.rejected, m.msgIn, m.msgOut, m.bytesIn, m.bytesOut,
		m.slow, m.writeTimeouts, m.panics, m.pongTO, publishes, historyPub, recoveries, m.requests, m.deliveries, m.fanout, m.latency)
	return m
}

// outcome is a counter by result, its two label values resolved up front:
// the Hub's events are counted without a label lookup.
type outcome struct{ good, bad prometheus.Counter }

func newOutcome(v *prometheus.CounterVec, good, bad string) outcome {
	return outcome{v.WithLabelValues(good), v.WithLabelValues(bad)}
}

func (o outcome) inc(good bool) {
	if good {
		o.good.Inc()
	} else {
		o.bad.Inc()
	}
}

// Route implements ratchet.Observer: it resolves the label values of one
// route.
func (m *Metrics) Route(route, transport string) ratchet.RouteObserver {
	l := prometheus.Labels{"route": route, "transport": transport}
	r := &routeObserver{
		m: m, route: route, transport: transport,
		open: m.open.With(l), opened: m.opened.With(l),
		msgIn: m.msgIn.With(l), msgOut: m.msgOut.With(l), bytesIn: m.bytesIn.With(l), bytesOut: m.bytesOut.With(l),
		slow: m.slow.With(l), writeTimeouts: m.writeTimeouts.With(l), panics: m.panics.With(l), pongTO: m.pongTO.With(l),
		rejected: make(map[ratchet.RejectReason]prometheus.Counter, len(ratchet.RejectReasons)),
	}
	for _, reason := range ratchet.RejectReasons {
		r.rejected[reason] = m.rejected.WithLabelValues(route, transport, reason.String())
	}
	return r
}

type routeObserver struct {
	m                *Metrics
	route, transport string
	open             prometheus.Gauge
	opened, msgIn    prometheus.Counter
	msgOut, bytesIn  prometheus.Counter
	bytesOut, slow   prometheus.Counter
	writeTimeouts    prometheus.Counter
	panics, pongTO   prometheus.Counter
	rejected         map[ratchet.RejectReason]prometheus.Counter // read-only once built
}

func (r *routeObserver) HandshakeRejected(reason ratchet.RejectReason) {
	if c := r.rejected[reason]; c != nil {
		c.Inc()
		return
	}
	r.m.rejected.WithLabelValues(r.route, r.transport, reason.String()).Inc()
}

func (r *routeObserver) ConnOpened() { r.opened.Inc(); r.open.Inc() }

// ConnClosed looks its label up: once per connection, not per message.
func (r *routeObserver) ConnClosed(code ratchet.StatusCode) {
	r.open.Dec()
	r.m.closed.WithLabelValues(r.route, r.transport, strconv.Itoa(int(code))).Inc()
}

func (r *routeObserver) MessageIn(n int)   { r.msgIn.Inc(); r.bytesIn.Add(float64(n)) }
func (r *routeObserver) MessageOut(n int)  { r.msgOut.Inc(); r.bytesOut.Add(float64(n)) }
func (r *routeObserver) SlowConsumer()     { r.slow.Inc() }
func (r *routeObserver) WriteTimeout()     { r.writeTimeouts.Inc() }
func (r *routeObserver) Panic()            { r.panics.Inc() }
func (r *routeObserver) KeepaliveTimeout() { r.pongTO.Inc() }

// Published implements ratchet.HubObserver.
func (m *Metrics) Published(d time.Duration, err error) {
	m.publishes.inc(err == nil)
	m.latency.Observe(d.Seconds())
}

// Delivered implements ratchet.HubObserver.
func (m *Metrics) Delivered(n int) {
	m.deliveries.Add(float64(n))
	m.fanout.Observe(float64(n))
}

// HistoryPublished implements ratchet.HubObserver.
func (m *Metrics) HistoryPublished(err error) {
	m.historyPub.inc(err == nil)
}

// Recovered implements ratchet.HubObserver.
func (m *Metrics) Recovered(ok bool) {
	m.recoveries.inc(ok)
}

// WatchHub exports the size of h (ratchet.Hub.Stats) as the gauges
// ratchet_hub_connections, ratchet_hub_topics and ratchet_hub_subscriptions,
// read at each scrape, labelled hub=name. Publishes and deliveries are
// counted by giving the Metrics to ratchet.WithHubObserver.
func (m *Metrics) WatchHub(name string, h *ratchet.Hub) error {
	gauge := func(metric, help string, f func(ratchet.HubStats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ratchet", Name: metric, Help: help,
			ConstLabels: prometheus.Labels{"hub": name}}, func() float64 { return float64(f(h.Stats())) })
	}
	return register(m.reg,
		gauge("hub_connections", "Connections known to the Hub.", func(s ratchet.HubStats) int { return s.Conns }),
		gauge("hub_topics", "Client topics with local subscribers.", func(s ratchet.HubStats) int { return s.Topics }),
		gauge("hub_subscriptions", "Local subscriptions to client topics.", func(s ratchet.HubStats) int { return s.Subscriptions }))
}

// WatchBroker exports, labelled broker=name, ratchet_broker_connected (1 or
// 0) when b has a Connected() bool method and ratchet_broker_outages_total
// when it has an Outages() uint64 method, as the Redis and NATS brokers do.
// Broker publish errors are counted in ratchet_hub_publishes_total.
func (m *Metrics) WatchBroker(name string, b ratchet.Broker) error {
	labels := prometheus.Labels{"broker": name}
	var cs []prometheus.Collector
	if hb, ok := b.(interface{ Connected() bool }); ok {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ratchet", Name: "broker_connected",
			Help: "Whether the Broker's subscriptions are in effect (1) or it has lost its server (0).", ConstLabels: labels},
			func() float64 {
				if hb.Connected() {
					return 1
				}
				return 0
			}))
	}
	if ob, ok := b.(interface{ Outages() uint64 }); ok {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "ratchet", Name: "broker_outages_total",
			Help: "Times the Broker lost its server.", ConstLabels: labels},
			func() float64 { return float64(ob.Outages()) }))
	}
	return register(m.reg, cs...)
}

// InstrumentHandler counts the requests h answers, by status, in
// ratchet_http_requests_total{handler=name}: for the HTTP publish API of
// package push, say. The handler it returns is not a long-lived one that
// App.Shutdown ends: wrap only handlers of short requests.
func (m *Metrics) InstrumentHandler(name string, h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(prometheus.Labels{"handler": name}), h)
}

// register registers cs, undoing the ones done if one fails.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// WatchPusher exports what s, a Pusher Channels server, does on this node,
// read from s.Stats at each scrape and labelled pusher=name:
// ratchet_pusher_connections and ratchet_pusher_channels_occupied by app
// (its App.ID), and the webhook counters ratchet_pusher_webhook_deliveries_total,
// _retries_total, _failures_total (batches given up) and
// _dropped_events_total (events dropped from full queues). The channels are
// this node's: summed over the nodes, a channel occupied on two counts twice.
func (m *Metrics) WatchPusher(name string, s *pusher.Server) error {
	return register(m.reg, newPusherCollector(name, s))
}

type pusherCollector struct {
	s                                      *pusher.Server
	conns, channels                        *prometheus.Desc
	deliveries, retries, failures, dropped *prometheus.Desc
}

func newPusherCollector(name string, s *pusher.Server) *pusherCollector {
	labels := prometheus.Labels{"pusher": name}
	desc := func(metric, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc("ratchet_pusher_"+metric, help, vars, labels)
	}
	return &pusherCollector{s: s,
		conns:      desc("connections", "Pusher connections open on this node.", "app"),
		channels:   desc("channels_occupied", "Channels with a subscriber on this node.", "app"),
		deliveries: desc("webhook_deliveries_total", "Webhook batches delivered (answered with a 2xx)."),
		retries:    desc("webhook_retries_total", "Webhook tries after a batch's first one."),
		failures:   desc("webhook_failures_total", "Webhook batches given up after their last try."),
		dropped:    desc("webhook_dropped_events_total", "Webhook events dropped from full queues."),
	}
}

func (c *pusherCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.channels, c.deliveries, c.retries, c.failures, c.dropped} {
		ch <- d
	}
}

func (c *pusherCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, a := range st.Apps {
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(a.Conns), a.ID)
		ch <- prometheus.MustNewConstMetric(c.channels, prometheus.GaugeValue, float64(a.Channels), a.ID)
	}
	ch <- prometheus.MustNewConstMetric(c.deliveries, prometheus.CounterValue, float64(st.WebhookDeliveries))
	ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(st.WebhookRetries))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.WebhookFailures))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.WebhookDropped))
}
