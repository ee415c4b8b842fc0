//go:build unix

package brokertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

// OutageNode is a Broker that counts and reports its outages, as the Redis
// and NATS brokers do.
type OutageNode interface {
	ratchet.Broker
	// Outages returns how many times the connection was lost.
	Outages() uint64
	// Connected reports whether the broker's subscriptions are in effect.
	Connected() bool
}

// NodeConfig is what an outage test sets on a node: the broker's
// WithOnError and WithOnReconnect functions, and its health interval, which
// also bounds each reconnection attempt.
type NodeConfig struct {
	OnError        func(error)
	OnReconnect    func()
	HealthInterval time.Duration
}

// Outage describes a broker for the suites that stop its server.
type Outage struct {
	// Server starts a server of the test's own and returns it; the test may
	// kill, freeze and restart it.
	Server func(t *testing.T) *Process
	// NewNode returns a node on srv configured by c, reconnecting quickly
	// (backoff of tens of milliseconds). The suite closes it.
	NewNode func(t *testing.T, srv *Process, c NodeConfig) OutageNode
	// Unavailable is the error the broker's outage reports wrap.
	Unavailable error
}

// ErrorLog records what a broker reports to its OnError function, and the
// broker's outage count at the time of each report.
type ErrorLog struct {
	node atomic.Pointer[OutageNode]

	mu     sync.Mutex
	errs   []error
	counts []uint64
}

// Report is an OnError function.
func (l *ErrorLog) Report(err error) {
	var count uint64
	if n := l.node.Load(); n != nil {
		count = (*n).Outages()
	}
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.counts = append(l.counts, count)
	l.mu.Unlock()
}

// Watch makes the log read n's outage count with each report.
func (l *ErrorLog) Watch(n OutageNode) { l.node.Store(&n) }

// Errors returns the errors reported so far.
func (l *ErrorLog) Errors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// CheckOutage checks that the first error reported wraps target, and that
// it was reported before the outage was counted: whoever sees Outages move
// finds the outage already reported.
func (l *ErrorLog) CheckOutage(t testing.TB, target error) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 || !errors.Is(l.errs[0], target) {
		t.Fatalf("OnError got %v, want errors wrapping %v", l.errs, target)
	}
	if l.counts[0] != 0 {
		t.Fatalf("OnError ran with Outages() = %d: the outage was counted before it was reported", l.counts[0])
	}
}

// node returns a node of o on srv whose errors go to a new ErrorLog and
// whose reconnections are counted.
func (o Outage) node(t *testing.T, srv *Process, health time.Duration) (OutageNode, *ErrorLog, *atomic.Int32) {
	log := new(ErrorLog)
	reconnects := new(atomic.Int32)
	n := o.NewNode(t, srv, NodeConfig{OnError: log.Report, OnReconnect: func() { reconnects.Add(1) }, HealthInterval: health})
	log.Watch(n)
	t.Cleanup(func() { _ = n.Close() })
	return n, log, reconnects
}

// RunKillAndRestart kills the server under two nodes, checks that
// publishing fails within its context and the outage is reported (before it
// is counted), restarts the server on the same port, and checks that the
// subscription still in place receives again, as does one made during the
// outage.
func RunKillAndRestart(t *testing.T, o Outage) {
	srv := o.Server(t)
	a, aLog, aReconnects := o.node(t, srv, 500*time.Millisecond)
	b, bLog, bReconnects := o.node(t, srv, 500*time.Millisecond)
	topic := Topic(t)
	c := NewCollector(64)
	Subscribe(t, b, topic, c)
	Publish(t, a, topic, ratchet.Text("before"))
	c.Expect(t, ratchet.Text("before"))

	srv.Kill()

	// Publish fails, within its context, whether or not the client has
	// noticed the loss yet; a short context bounds it as well.
	for _, d := range []time.Duration{2 * time.Second, 50 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		start := time.Now()
		err := a.Publish(ctx, topic, ratchet.Text("during"))
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatal("Publish succeeded with the server down")
		}
		if took > d+Slack {
			t.Fatalf("Publish took %v, past its %v context", took, d)
		}
		t.Logf("Publish while down (%v context): %v after %v", d, err, took.Round(time.Millisecond))
	}

	WaitFor(t, "outage counted", func() bool { return b.Outages() == 1 && a.Outages() == 1 })
	if b.Connected() {
		t.Fatal("Connected() true with the server down")
	}
	aLog.CheckOutage(t, o.Unavailable)
	bLog.CheckOutage(t, o.Unavailable)

	// A subscription made during the outage is registered and subscribed on
	// reconnection.
	during := NewCollector(8)
	Subscribe(t, b, topic+"-during", during)

	srv.Start()
	WaitFor(t, "OnReconnect", func() bool { return aReconnects.Load() == 1 && bReconnects.Load() == 1 })
	if !a.Connected() || !b.Connected() {
		t.Fatal("OnReconnect called while Connected() is false")
	}

	for i := range 10 {
		Publish(t, a, topic, ratchet.Text(fmt.Sprint("after-", i)))
	}
	for i := range 10 {
		c.Expect(t, ratchet.Text(fmt.Sprint("after-", i)))
	}
	Publish(t, a, topic+"-during", ratchet.Text("subscribed while down"))
	during.Expect(t, ratchet.Text("subscribed while down"))
	c.None(t)
	if n := b.Outages(); n != 1 {
		t.Fatalf("Outages() = %d, want 1", n)
	}
}

// RunSilentServer freezes the server under a node (SIGSTOP: its sockets stay
// open, it answers nothing), checks that Publish stays within its context
// and that the health checks notice the outage, and that the node
// reconnects once the server resumes.
func RunSilentServer(t *testing.T, o Outage) {
	srv := o.Server(t)
	b, _, _ := o.node(t, srv, 200*time.Millisecond)
	Subscribe(t, b, Topic(t), NewCollector(1))
	srv.Stop()
	const d = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	if err := b.Publish(ctx, "x", ratchet.Text("x")); err == nil {
		t.Fatal("Publish to a stopped server succeeded")
	}
	if took := time.Since(start); took > d+Slack {
		t.Fatalf("Publish took %v with a %v context", took, d)
	}
	WaitFor(t, "silent server detected", func() bool { return b.Outages() == 1 })
	srv.Continue()
	WaitFor(t, "reconnected", b.Connected)
	// Close waits for a publish still in flight on the stopped server.
}

// RunSubscribeWhileDown checks that a client of push's endpoint is told
// "subscribed" only once the subscription is in effect on the broker: while
// the server is down, subscribing to a new topic, or to one the node already
// subscribes, is answered {"error":"unavailable"} (and an event stream gets
// 503); once the broker has reconnected, the same requests succeed and
// messages flow.
func RunSubscribeWhileDown(t *testing.T, o Outage) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := o.Server(t)
	b, _, reconnects := o.node(t, srv, 500*time.Millisecond)
	node := NewPushNode(t, b)
	kept, fresh := Topic(t), Topic(t)
	early := node.Dial(ctx, t, "topic="+kept)
	ExpectJSON(ctx, t, early, `{"subscribed":"`+kept+`"}`)

	srv.Kill()
	WaitFor(t, "outage noticed", func() bool { return !b.Connected() })
	late := node.Dial(ctx, t, "")
	for _, c := range []*websocket.Conn{early, late} {
		for _, topic := range []string{fresh, kept} {
			if c == early && topic == kept {
				continue
			}
			writeWS(ctx, t, c, `{"subscribe":"`+topic+`"}`)
			ExpectJSON(ctx, t, c, `{"error":"unavailable","topic":"`+topic+`"}`)
		}
	}
	if status := node.eventsStatus(ctx, t, "topic="+fresh); status != http.StatusServiceUnavailable {
		t.Fatalf("event stream while down: %d, want 503", status)
	}

	srv.Start()
	WaitFor(t, "OnReconnect", func() bool { return reconnects.Load() == 1 })
	for _, c := range []*websocket.Conn{early, late} {
		writeWS(ctx, t, c, `{"subscribe":"`+fresh+`"}`)
		ExpectJSON(ctx, t, c, `{"subscribed":"`+fresh+`"}`)
	}
	writeWS(ctx, t, late, `{"subscribe":"`+kept+`"}`)
	ExpectJSON(ctx, t, late, `{"subscribed":"`+kept+`"}`)
	for _, topic := range []string{fresh, kept} {
		if _, err := node.Hub.Publish(ctx, topic, ratchet.Text("on "+topic)); err != nil {
			t.Fatal(err)
		}
		ExpectFrame(ctx, t, early, websocket.MessageText, "on "+topic)
		ExpectFrame(ctx, t, late, websocket.MessageText, "on "+topic)
	}
}
