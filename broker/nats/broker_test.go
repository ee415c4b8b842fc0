package nats_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
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
	brokertest.RunPrefix(t, func(t *testing.T, prefix string) ratchet.Broker {
		return newBroker(t, u, natsbroker.WithPrefix(prefix))
	}, "app-a.", "app-b.")
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

func TestKillAndRestart(t *testing.T) {
	brokertest.RunKillAndRestart(t, outage)
}

func TestSubscribeWhileDown(t *testing.T) {
	brokertest.RunSubscribeWhileDown(t, outage)
}

// outage runs the outage suites on NATS servers of the test's own.
var outage = brokertest.Outage{
	Server: func(t *testing.T) *brokertest.Process { srv, _ := startNATS(t); return srv },
	NewNode: func(t *testing.T, srv *brokertest.Process, c brokertest.NodeConfig) brokertest.OutageNode {
		return newBroker(t, fmt.Sprintf("nats://127.0.0.1:%d", srv.Port()),
			natsbroker.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
			natsbroker.WithHealthInterval(c.HealthInterval), natsbroker.WithDialTimeout(c.HealthInterval),
			natsbroker.WithOnError(c.OnError), natsbroker.WithOnReconnect(c.OnReconnect))
	},
	Unavailable: natsbroker.ErrUnavailable,
}

// A server that stops answering without closing its sockets (SIGSTOP) is
// detected by the client's PINGs, and Publish stays within its context.
func TestSilentNATS(t *testing.T) { brokertest.RunSilentServer(t, outage) }

// Two Apps, each with a Hub on its own NATS broker: a WebSocket client on
// node B gets what node A publishes.
func TestTwoApps(t *testing.T) {
	u := natsURL(t)
	brokertest.RunApps(t, func(t *testing.T) ratchet.Broker { return newBroker(t, u) })
}

// A message marked "Ratchet-Type: text" whose payload is not UTF-8, from
// another program, reaches browsers as binary and is reported; no one is
// cut off.
func TestInvalidTextFromOutside(t *testing.T) {
	u := natsURL(t)
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	brokertest.RunInvalidText(t,
		func(t *testing.T, onError func(error)) ratchet.Broker {
			return newBroker(t, u, natsbroker.WithOnError(onError))
		},
		func(t *testing.T, b ratchet.Broker, topic string, data []byte) {
			m := &nats.Msg{Subject: b.(*natsbroker.Broker).Subject(topic), Data: data,
				Header: nats.Header{natsbroker.TypeHeader: {"text"}}}
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
		})
}
