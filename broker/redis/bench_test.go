package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// BenchmarkFanOut publishes on node A to N subscribers of one topic on node
// B, from one publisher (latency at light load) and from eight (capacity).
//
//	go test -run '^$' -bench FanOut -benchtime 5000x ./broker/redis
func BenchmarkFanOut(b *testing.B) {
	addr := redisAddr(b)
	for _, c := range []struct{ subs, pubs int }{{1, 1}, {1000, 1}, {1000, 8}} {
		b.Run(fmt.Sprintf("subscribers=%d/publishers=%d", c.subs, c.pubs), func(b *testing.B) {
			brokertest.BenchFanOut(b, newBroker(b, addr), newBroker(b, addr), c.subs, c.pubs)
		})
	}
}

// BenchmarkAppFanOut publishes with node A's Hub to 1,000 WebSocket clients
// of node B's App: one message at a time (window=1: the latency of reaching
// every client), and up to 16 in flight (window=16: throughput).
//
//	go test -run '^$' -bench AppFanOut -benchtime 1000x ./broker/redis
func BenchmarkAppFanOut(b *testing.B) {
	addr := redisAddr(b)
	for _, window := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=1000/window=%d", window), func(b *testing.B) {
			brokertest.BenchAppFanOut(b, newBroker(b, addr), newBroker(b, addr), 1000, window)
		})
	}
}

// BenchmarkPublishHistory compares a publish with history (one Lua script:
// XADD with exact trimming, PEXPIRE, PUBLISH of the position envelope) with
// a plain PUBLISH, each message delivered to a subscription on node B, on a
// Redis server of the benchmark's own, whose CPU time per message it
// reports (redis-µs/msg).
//
//	go test -run '^$' -bench PublishHistory -benchtime 20000x ./broker/redis
func BenchmarkPublishHistory(b *testing.B) {
	port := brokertest.FreePort(b)
	brokertest.StartProcess(b, redisServer, port,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	admin := newClient(b, addr)
	policy := ratchet.HistoryPolicy{Size: 100, TTL: time.Minute}
	for _, publishers := range []int{1, 8} {
		for _, history := range []bool{false, true} {
			name := fmt.Sprintf("%s/publishers=%d", map[bool]string{false: "plain", true: "history"}[history], publishers)
			b.Run(name, func(b *testing.B) {
				pub, sub := newBroker(b, addr), newBroker(b, addr)
				before := redisCPU(b, admin)
				if history {
					brokertest.BenchFanOutHistory(b, pub, sub, 1, publishers, policy)
				} else {
					brokertest.BenchFanOut(b, pub, sub, 1, publishers)
				}
				b.ReportMetric(float64((redisCPU(b, admin)-before).Microseconds())/float64(b.N), "redis-µs/msg")
			})
		}
	}
}

// redisCPU returns the CPU time the Redis server used so far.
func redisCPU(b *testing.B, admin *goredis.Client) time.Duration {
	info, err := admin.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkHistoryRecovery reads 1,000 missed messages of 100 bytes back
// from a topic's stream, as a subscriber resuming after them does: one
// History call, one transaction (MULTI SET NX, GET, XRANGE, EXEC: cmds/op) in
// one round trip.
//
//	go test -run '^$' -bench HistoryRecovery -benchtime 200x ./broker/redis
func BenchmarkHistoryRecovery(b *testing.B) {
	br, hook, topic, first := missedThousand(b, ratchet.HistoryPolicy{Size: 2000, TTL: time.Hour})
	b.ResetTimer()
	for range b.N {
		page := brokertest.ReadHistory(b, br, topic, first, 1000)
		if len(page.Publications) != 1000 || page.Lost {
			b.Fatalf("read %d, lost %v", len(page.Publications), page.Lost)
		}
	}
	b.StopTimer()
	names, trips := hook.take()
	b.ReportMetric(float64(len(names))/float64(b.N), "cmds/op")
	b.ReportMetric(float64(trips)/float64(b.N), "round-trips/op")
}
