package redis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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
	brokertest.RunPrefix(t, func(t *testing.T, prefix string) ratchet.Broker {
		return newBroker(t, addr, redis.WithPrefix(prefix))
	}, "app-a:", "app-b:")
	if got := newBroker(t, addr, redis.WithPrefix("app-a:")).Channel("x"); got != "app-a:x" {
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
	brokertest.WaitFor(t, "channels unsubscribed after the last local subscription left",
		func() bool { return numsub(t1)+numsub(t2) == 0 })
}

func TestKillAndRestart(t *testing.T) {
	brokertest.RunKillAndRestart(t, outage)
}

func TestSubscribeWhileDown(t *testing.T) {
	brokertest.RunSubscribeWhileDown(t, outage)
}

// outage runs the outage suites on Redis servers of the test's own.
var outage = brokertest.Outage{
	Server: startRedis,
	NewNode: func(t *testing.T, srv *brokertest.Process, c brokertest.NodeConfig) brokertest.OutageNode {
		return newBroker(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()),
			redis.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
			redis.WithHealthInterval(c.HealthInterval), redis.WithDialTimeout(c.HealthInterval),
			redis.WithOnError(c.OnError), redis.WithOnReconnect(c.OnReconnect))
	},
	Unavailable: redis.ErrUnavailable,
}

// startRedis starts a Redis of the test's own, without persistence.
func startRedis(t *testing.T) *brokertest.Process {
	port := brokertest.FreePort(t)
	return brokertest.StartProcess(t, redisServer, port,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
}

// A Redis that stops answering without closing its sockets (SIGSTOP) is
// detected by the PING health check, and Publish stays within its context.
func TestSilentRedis(t *testing.T) { brokertest.RunSilentServer(t, outage) }

// Two Apps, each with a Hub on its own Redis broker: a WebSocket client on
// node B gets what node A publishes.
func TestTwoApps(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunApps(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) })
}

// A payload that is not UTF-8, PUBLISHed by another program (redis-cli,
// PHP), reaches browsers as binary and is reported; no one is cut off.
func TestInvalidTextFromOutside(t *testing.T) {
	addr := redisAddr(t)
	raw := newClient(t, addr)
	brokertest.RunInvalidText(t,
		func(t *testing.T, onError func(error)) ratchet.Broker {
			return newBroker(t, addr, redis.WithOnError(onError))
		},
		func(t *testing.T, b ratchet.Broker, topic string, data []byte) {
			if err := raw.Publish(context.Background(), b.(*redis.Broker).Channel(topic), data).Err(); err != nil {
				t.Fatal(err)
			}
		})
}
