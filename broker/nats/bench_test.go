package nats_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	natsbroker "github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// BenchmarkFanOut publishes on node A to N subscribers of one topic on node
// B, from one publisher (latency at light load) and from eight (capacity).
//
//	go test -run '^$' -bench FanOut -benchtime 5000x ./broker/nats
func BenchmarkFanOut(b *testing.B) {
	addr := natsURL(b)
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
//	go test -run '^$' -bench AppFanOut -benchtime 1000x ./broker/nats
func BenchmarkAppFanOut(b *testing.B) {
	addr := natsURL(b)
	for _, window := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=1000/window=%d", window), func(b *testing.B) {
			brokertest.BenchAppFanOut(b, newBroker(b, addr), newBroker(b, addr), 1000, window)
		})
	}
}

// BenchmarkPublishHistory compares the cost of a publish without history
// (core NATS, waiting for the server: one round trip) with one with
// history (JetStream: stored in the stream, acknowledged, republished), from
// one publisher and from eight.
//
//	go test -run '^$' -bench PublishHistory -benchtime 5000x ./broker/nats
func BenchmarkPublishHistory(b *testing.B) {
	u := natsURL(b)
	policy := ratchet.HistoryPolicy{Size: 100, TTL: time.Minute}
	for _, pubs := range []int{1, 8} {
		for _, history := range []bool{false, true} {
			b.Run(fmt.Sprintf("history=%v/publishers=%d", history, pubs), func(b *testing.B) {
				br := newBroker(b, u, natsbroker.WithPrefix(freshPrefix(b, u)))
				topic := brokertest.Topic(b)
				msg := ratchet.Text(strings.Repeat("x", 128))
				publish := func() error {
					if history {
						_, err := br.PublishHistory(context.Background(), topic, msg, policy)
						return err
					}
					return br.Publish(context.Background(), topic, msg)
				}
				if err := publish(); err != nil { // the stream exists
					b.Fatal(err)
				}
				b.SetParallelism(pubs)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := publish(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkRecovery reads the 1,000 messages a client missed (History after
// its position): one ranged read, whatever the count. requests/op is how
// many messages the node sent to NATS for it.
//
//	go test -run '^$' -bench Recovery -benchtime 200x ./broker/nats
func BenchmarkRecovery(b *testing.B) {
	u := natsURL(b)
	br := newBroker(b, u, natsbroker.WithPrefix(freshPrefix(b, u)))
	topic := brokertest.Topic(b)
	const missed = 1000
	policy := ratchet.HistoryPolicy{Size: missed, TTL: time.Hour}
	since := brokertest.PublishHistory(b, br, topic, "seen", policy)
	for i := range missed {
		brokertest.PublishHistory(b, br, topic, strconv.Itoa(i), policy)
	}
	ctx := context.Background()
	sent := br.Conn().Stats().OutMsgs
	b.ResetTimer()
	for range b.N {
		page, err := br.History(ctx, topic, since, missed)
		if err != nil || page.Lost || len(page.Publications) != missed {
			b.Fatalf("recovered %d, lost %v: %v", len(page.Publications), page.Lost, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(br.Conn().Stats().OutMsgs-sent)/float64(b.N), "requests/op")
}
