package nats_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	natsbroker "github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const natsServer = "/usr/sbin/nats-server"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// natsURL returns the URL of the shared NATS the integration tests use, or
// skips the test (fails it under CI=true).
func natsURL(t testing.TB) string {
	t.Helper()
	u := brokertest.Addr("RATCHET_NATS_URL", "nats://127.0.0.1:4222")
	pu, err := url.Parse(u)
	if err != nil || !brokertest.Reachable(pu.Host) {
		brokertest.SkipOrFail(t, "no nats-server at %s: start one (apt-get install nats-server; nats-server -js) "+
			"or set RATCHET_NATS_URL=nats://host:port to run the NATS integration tests", u)
	}
	return u
}

func newBroker(t testing.TB, u string, opts ...natsbroker.Option) *natsbroker.Broker {
	t.Helper()
	b, err := natsbroker.Connect(u, append([]natsbroker.Option{natsbroker.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	u := natsURL(t)
	brokertest.Run(t, func(t *testing.T) ratchet.Broker { return newBroker(t, u) })
}

// With WithAsyncPublish, Publish returns before the server has the message,
// so "published before Subscribe returned" is not established and the whole
// suite does not apply; delivery and order do.
func TestAsyncPublish(t *testing.T) {
	u := natsURL(t)
	a, b := newBroker(t, u, natsbroker.WithAsyncPublish()), newBroker(t, u)
	topic := brokertest.Topic(t)
	const n = 5000
	c := brokertest.NewCollector(n)
	brokertest.Subscribe(t, b, topic, c)
	for i := range n {
		brokertest.Publish(t, a, topic, ratchet.Text(fmt.Sprint(i)))
	}
	for i := range n {
		c.Expect(t, ratchet.Text(fmt.Sprint(i)))
	}
}

// `nats pub ratchet.topic payload` from any language reaches subscribers.
func TestForeignPublisher(t *testing.T) {
	u := natsURL(t)
	b := newBroker(t, u)
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	topic := brokertest.Topic(t)
	c := brokertest.NewCollector(8)
	brokertest.Subscribe(t, b, topic, c)
	subj := b.Subject(topic)
	_ = nc.Publish(subj, []byte("plain text"))
	_ = nc.PublishMsg(&nats.Msg{Subject: subj, Data: []byte("bin"), Header: nats.Header{natsbroker.TypeHeader: {"binary"}}})
	_ = nc.Publish(subj, []byte("\xff not UTF-8"))
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, ratchet.Text("plain text"))
	c.Expect(t, ratchet.Binary([]byte("bin")))
	c.Expect(t, ratchet.Binary([]byte("\xff not UTF-8")))
}

// Any string is a topic: those that are not literal subjects are encoded.
func TestTopicEncoding(t *testing.T) {
	u := natsURL(t)
	a, b := newBroker(t, u), newBroker(t, u)
	for topic, subj := range map[string]string{
		"news":                     "ratchet.news",
		"chat.room1":               "ratchet.chat.room1",
		"@user/ann":                "ratchet.@user/ann",
		"http://example.com/topic": "ratchet.http://example.com/topic",
		"John Smith":               "ratchet.~Sm9obiBTbWl0aA",
		"*":                        "ratchet.~Kg",
		"a.>":                      "ratchet.~YS4-",
		"a..b":                     "ratchet.~YS4uYg",
		"":                         "ratchet.~",
		"~Kg":                      "ratchet.~fktn",
	} {
		if got := b.Subject(topic); got != subj {
			t.Errorf("Subject(%q) = %q, want %q", topic, got, subj)
		}
	}
	suffix := brokertest.Topic(t)
	for _, topic := range []string{"@user/John Smith " + suffix, "* " + suffix, suffix + ".>", "~" + suffix} {
		c := brokertest.NewCollector(1)
		brokertest.Subscribe(t, b, topic, c)
		brokertest.Publish(t, a, topic, ratchet.Text(topic))
		c.Expect(t, ratchet.Text(topic))
	}
	if _, err := natsbroker.Connect(u, natsbroker.WithPrefix("my app.")); !errors.Is(err, natsbroker.ErrInvalidPrefix) {
		t.Fatalf("Connect with prefix %q: %v, want ErrInvalidPrefix", "my app.", err)
	}
}

func TestPrefix(t *testing.T) {
	u := natsURL(t)
	a := newBroker(t, u, natsbroker.WithPrefix("app-a."))
	b := newBroker(t, u, natsbroker.WithPrefix("app-b."))
	topic := brokertest.Topic(t)
	ca, cb := brokertest.NewCollector(4), brokertest.NewCollector(4)
	brokertest.Subscribe(t, a, topic, ca)
	brokertest.Subscribe(t, b, topic, cb)
	brokertest.Publish(t, a, topic, ratchet.Text("for a"))
	ca.Expect(t, ratchet.Text("for a"))
	brokertest.Publish(t, b, topic, ratchet.Text("for b"))
	cb.Expect(t, ratchet.Text("for b"))
	ca.None(t)
}

// The node subscribes a subject only while it has local subscribers, all on
// its one connection.
func TestSubscribesOnlyWhileNeeded(t *testing.T) {
	b := newBroker(t, natsURL(t))
	// The first subscription looks up the history stream, which leaves the
	// connection's subscription for the answers of its requests.
	first := brokertest.Subscribe(t, b, brokertest.Topic(t), brokertest.NewCollector(1))
	_ = first.Unsubscribe(context.Background())
	base := b.Conn().NumSubscriptions()
	topic := brokertest.Topic(t)
	s1 := brokertest.Subscribe(t, b, topic, brokertest.NewCollector(1))
	s2 := brokertest.Subscribe(t, b, topic, brokertest.NewCollector(1))
	if n := b.Conn().NumSubscriptions() - base; n != 1 {
		t.Fatalf("%d NATS subscriptions for one topic, want 1", n)
	}
	_ = s1.Unsubscribe(context.Background())
	if n := b.Conn().NumSubscriptions() - base; n != 1 {
		t.Fatalf("%d NATS subscriptions with one local subscription left, want 1", n)
	}
	_ = s2.Unsubscribe(context.Background())
	if n := b.Conn().NumSubscriptions() - base; n != 0 {
		t.Fatalf("%d NATS subscriptions after the last local one left, want 0", n)
	}
}

func startNATS(t *testing.T, extra ...string) (*brokertest.Process, string) {
	port := brokertest.FreePort(t)
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, extra...)
	srv := brokertest.StartProcess(t, natsServer, port, args...)
	return srv, fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// Kill NATS under a node, check that publishing fails within its context
// and the outage is reported, restart NATS on the same port, and check that
// the subscription still in place receives again.
func TestKillAndRestart(t *testing.T) {
	srv, u := startNATS(t)
	var (
		mu         sync.Mutex
		errs       []error
		reconnects atomic.Int32
	)
	opts := []natsbroker.Option{
		natsbroker.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		natsbroker.WithHealthInterval(500 * time.Millisecond),
		natsbroker.WithOnError(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }),
		natsbroker.WithOnReconnect(func() { reconnects.Add(1) }),
	}
	a := newBroker(t, u, opts...)
	b := newBroker(t, u, opts...)
	topic := brokertest.Topic(t)
	c := brokertest.NewCollector(64)
	brokertest.Subscribe(t, b, topic, c)
	brokertest.Publish(t, a, topic, ratchet.Text("before"))
	c.Expect(t, ratchet.Text("before"))

	srv.Kill()

	// Publish fails, within its context, whether or not the client has
	// noticed the loss yet.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	err := a.Publish(ctx, topic, ratchet.Text("during"))
	cancel()
	if err == nil {
		t.Fatal("Publish succeeded with NATS down")
	}
	if d := time.Since(start); d > 2*time.Second+brokertest.Slack {
		t.Fatalf("Publish took %v, past its 2s context", d)
	}
	t.Logf("Publish while down: %v after %v", err, time.Since(start).Round(time.Millisecond))

	brokertest.WaitFor(t, "outage reported", func() bool { return b.Outages() == 1 && a.Outages() == 1 })
	if b.Connected() {
		t.Fatal("Connected() true with NATS down")
	}
	if err := a.Publish(context.Background(), topic, ratchet.Text("during")); !errors.Is(err, natsbroker.ErrUnavailable) {
		t.Fatalf("Publish while down: %v, want ErrUnavailable", err)
	}
	mu.Lock()
	if len(errs) == 0 || !errors.Is(errs[0], natsbroker.ErrUnavailable) {
		t.Fatalf("OnError got %v, want errors wrapping ErrUnavailable", errs)
	}
	mu.Unlock()

	during := brokertest.NewCollector(8)
	brokertest.Subscribe(t, b, topic+"-during", during)

	srv.Start()
	brokertest.WaitFor(t, "both reconnected", func() bool { return a.Connected() && b.Connected() })
	brokertest.WaitFor(t, "OnReconnect", func() bool { return reconnects.Load() == 2 })

	for i := range 10 {
		brokertest.Publish(t, a, topic, ratchet.Text(fmt.Sprint("after-", i)))
	}
	for i := range 10 {
		c.Expect(t, ratchet.Text(fmt.Sprint("after-", i)))
	}
	brokertest.Publish(t, a, topic+"-during", ratchet.Text("subscribed while down"))
	during.Expect(t, ratchet.Text("subscribed while down"))
	if n := b.Outages(); n != 1 {
		t.Fatalf("Outages() = %d, want 1", n)
	}
}

// A server that stops answering without closing its sockets (SIGSTOP) is
// detected by the client's PINGs, and Publish stays within its context.
func TestSilentNATS(t *testing.T) {
	srv, u := startNATS(t)
	b := newBroker(t, u, natsbroker.WithHealthInterval(200*time.Millisecond),
		natsbroker.WithBackoff(20*time.Millisecond, 100*time.Millisecond), natsbroker.WithDialTimeout(200*time.Millisecond))
	brokertest.Subscribe(t, b, brokertest.Topic(t), brokertest.NewCollector(1))
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Publish(ctx, "x", ratchet.Text("x")); err == nil {
		t.Fatal("Publish to a stopped NATS succeeded")
	}
	if d := time.Since(start); d > 100*time.Millisecond+brokertest.Slack {
		t.Fatalf("Publish took %v with a 100ms context", d)
	}
	brokertest.WaitFor(t, "silent NATS detected", func() bool { return b.Outages() == 1 })
	srv.Continue()
	brokertest.WaitFor(t, "reconnected", b.Connected)
}

// Two Apps, each with a Hub on its own NATS broker: a WebSocket client on
// node B gets what node A publishes.
func TestTwoApps(t *testing.T) {
	u := natsURL(t)
	brokertest.RunApps(t, func(t *testing.T) ratchet.Broker { return newBroker(t, u) })
}
