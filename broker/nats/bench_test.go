package nats_test

import (
	"fmt"
	"testing"

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
