package redis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const redisServer = "/usr/bin/redis-server"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// redisAddr returns the address of the shared Redis the integration tests
// use, or skips the test (fails it under CI=true).
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := brokertest.Addr("RATCHET_REDIS_ADDR", "127.0.0.1:6379")
	if !brokertest.Reachable(addr) {
		brokertest.SkipOrFail(t, "no redis-server at %s: start one (apt-get install redis-server; redis-server) "+
			"or set RATCHET_REDIS_ADDR=host:port to run the Redis integration tests", addr)
	}
	return addr
}

func newClient(t testing.TB, addr string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newBroker(t testing.TB, addr string, opts ...redis.Option) *redis.Broker {
	t.Helper()
	return newBrokerOn(t, newClient(t, addr), opts...)
}

// newBrokerOn is newBroker on a client of the test's own.
func newBrokerOn(t testing.TB, client *goredis.Client, opts ...redis.Option) *redis.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := redis.New(ctx, client, append([]redis.Option{redis.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	addr := redisAddr(t)
	brokertest.Run(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) })
}

// A PHP script's `$redis->publish('ratchet:topic', $payload)` is a plain
// PUBLISH: raw payloads arrive as text, envelopes as what they wrap.
func TestForeignPublisher(t *testing.T) {
	addr := redisAddr(t)
	b := newBroker(t, addr)
	raw := newClient(t, addr)
	topic := brokertest.Topic(t)
	c := brokertest.NewCollector(8)
	brokertest.Subscribe(t, b, topic, c)
	ctx := context.Background()
	for _, p := range []string{
		"plain text from PHP",
		`{"ratchet":1,"type":"binary","data":"AP8="}`,
		`{"ratchet":1,"type":"text","data":"enveloped text"}`,
		"\xff\xfe not UTF-8",
	} {
		if err := raw.Publish(ctx, b.Channel(topic), p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Expect(t, ratchet.Text("plain text from PHP"))
	c.Expect(t, ratchet.Binary([]byte{0, 0xff}))
	c.Expect(t, ratchet.Text("enveloped text"))
	c.Expect(t, ratchet.Binary([]byte("\xff\xfe not UTF-8")))
}

func TestPrefix(t *testing.T) {
	addr := redisAddr(t)
	a := newBroker(t, addr, redis.WithPrefix("app-a:"))
	b := newBroker(t, addr, redis.WithPrefix("app-b:"))
	topic := brokertest.Topic(t)
	ca, cb := brokertest.NewCollector(4), brokertest.NewCollector(4)
	brokertest.Subscribe(t, a, topic, ca)
	brokertest.Subscribe(t, b, topic, cb)
	brokertest.Publish(t, a, topic, ratchet.Text("for a"))
	ca.Expect(t, ratchet.Text("for a"))
	brokertest.Publish(t, b, topic, ratchet.Text("for b"))
	cb.Expect(t, ratchet.Text("for b"))
	ca.None(t)
	if got := a.Channel("x"); got != "app-a:x" {
		t.Fatalf("Channel = %q", got)
	}
}

// The node SUBSCRIBEs a channel only while it has local subscribers, all on
// one connection.
func TestSubscribesOnlyWhileNeeded(t *testing.T) {
	addr := redisAddr(t)
	b := newBroker(t, addr)
	admin := newClient(t, addr)
	ctx := context.Background()
	t1, t2 := brokertest.Topic(t), brokertest.Topic(t)
	numsub := func(topic string) int64 {
		n, err := admin.PubSubNumSub(ctx, b.Channel(topic)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[b.Channel(topic)]
	}
	s1 := brokertest.Subscribe(t, b, t1, brokertest.NewCollector(1))
	s2 := brokertest.Subscribe(t, b, t1, brokertest.NewCollector(1))
	s3 := brokertest.Subscribe(t, b, t2, brokertest.NewCollector(1))
	if n := numsub(t1); n != 1 {
		t.Fatalf("%d Redis subscribers for a topic with two local subscriptions, want 1", n)
	}
	if n := numsub(t2); n != 1 {
		t.Fatalf("%d Redis subscribers for t2, want 1", n)
	}
	_ = s1.Unsubscribe(ctx)
	if n := numsub(t1); n != 1 {
		t.Fatalf("%d Redis subscribers with one local subscription left, want 1", n)
	}
	_ = s2.Unsubscribe(ctx)
	_ = s3.Unsubscribe(ctx)
	// UNSUBSCRIBE is acknowledged asynchronously: poll.
	deadline := time.Now().Add(5 * time.Second)
	for numsub(t1)+numsub(t2) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("channels still subscribed after the last local subscription left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill Redis under a node, check that publishing fails within its context
// and the outage is reported, restart Redis on the same port, and check that
// the subscription still in place receives again.
func TestKillAndRestart(t *testing.T) {
	port := brokertest.FreePort(t)
	srv := brokertest.StartProcess(t, redisServer, port,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	var (
		mu         sync.Mutex
		errs       []error
		reconnects atomic.Int32
	)
	reconnected := make(chan struct{}, 1)
	opts := []redis.Option{
		redis.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		redis.WithHealthInterval(500 * time.Millisecond),
		redis.WithOnError(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }),
		redis.WithOnReconnect(func() {
			reconnects.Add(1)
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	}
	a := newBroker(t, addr, opts...)
	b := newBroker(t, addr, opts...)
	topic := brokertest.Topic(t)
	c := brokertest.NewCollector(64)
	brokertest.Subscribe(t, b, topic, c)
	brokertest.Publish(t, a, topic, ratchet.Text("before"))
	c.Expect(t, ratchet.Text("before"))

	srv.Kill()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	err := a.Publish(ctx, topic, ratchet.Text("during"))
	cancel()
	if err == nil {
		t.Fatal("Publish succeeded with Redis down")
	}
	if d := time.Since(start); d > 2*time.Second+brokertest.Slack {
		t.Fatalf("Publish took %v, past its 2s context", d)
	}
	t.Logf("Publish while down: %v after %v", err, time.Since(start).Round(time.Millisecond))

	// A short context bounds Publish even when every attempt would wait.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	start = time.Now()
	err = a.Publish(ctx, topic, ratchet.Text("during"))
	cancel()
	if err == nil || time.Since(start) > 50*time.Millisecond+brokertest.Slack {
		t.Fatalf("Publish with a 50ms context: %v after %v", err, time.Since(start))
	}

	brokertest.WaitFor(t, "outage reported", func() bool { return b.Outages() == 1 && a.Outages() == 1 })
	if b.Connected() {
		t.Fatal("Connected() true with Redis down")
	}
	mu.Lock()
	if len(errs) == 0 || !errors.Is(errs[0], redis.ErrUnavailable) {
		t.Fatalf("OnError got %v, want errors wrapping ErrUnavailable", errs)
	}
	mu.Unlock()

	// A subscription made during the outage is registered and subscribed on
	// reconnection.
	during := brokertest.NewCollector(8)
	brokertest.Subscribe(t, b, topic+"-during", during)

	srv.Start()
	brokertest.WaitFor(t, "both reconnected", func() bool { return a.Connected() && b.Connected() })
	brokertest.WaitFor(t, "OnReconnect", func() bool { return reconnects.Load() == 2 })

	// The resubscription may land a moment after Connected: publish until
	// one arrives, then check the rest arrive in order.
	brokertest.WaitFor(t, "publishes flow again", func() bool {
		brokertest.Publish(t, a, topic, ratchet.Text("probe"))
		time.Sleep(50 * time.Millisecond)
		return c.Count() > 1
	})
	for i := range 10 {
		brokertest.Publish(t, a, topic, ratchet.Text(fmt.Sprint("after-", i)))
	}
	next := 0
	for next < 10 {
		m := c.Next(t).String()
		if m == "probe" {
			continue
		}
		if m != fmt.Sprint("after-", next) {
			t.Fatalf("got %q, want after-%d", m, next)
		}
		next++
	}
	brokertest.Publish(t, a, topic+"-during", ratchet.Text("subscribed while down"))
	during.Expect(t, ratchet.Text("subscribed while down"))
	if n := b.Outages(); n != 1 {
		t.Fatalf("Outages() = %d, want 1", n)
	}
}

// A Redis that stops answering without closing its sockets (SIGSTOP) is
// detected by the PING health check.
func TestSilentRedis(t *testing.T) {
	port := brokertest.FreePort(t)
	srv := brokertest.StartProcess(t, redisServer, port,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	b := newBroker(t, addr, redis.WithHealthInterval(200*time.Millisecond),
		redis.WithBackoff(20*time.Millisecond, 100*time.Millisecond), redis.WithDialTimeout(200*time.Millisecond))
	brokertest.Subscribe(t, b, brokertest.Topic(t), brokertest.NewCollector(1))
	srv.Stop()
	brokertest.WaitFor(t, "silent Redis detected", func() bool { return b.Outages() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Publish(ctx, "x", ratchet.Text("x")); err == nil {
		t.Fatal("Publish to a stopped Redis succeeded")
	}
	if d := time.Since(start); d > 100*time.Millisecond+brokertest.Slack {
		t.Fatalf("Publish took %v with a 100ms context", d)
	}
	srv.Continue()
	brokertest.WaitFor(t, "reconnected", b.Connected)
	// Close waits for the publish still in flight on the stopped Redis.
}

// Two Apps, each with a Hub on its own Redis broker: a WebSocket client on
// node B gets what node A publishes.
func TestTwoApps(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunApps(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) })
}
