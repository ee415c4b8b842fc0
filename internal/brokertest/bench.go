//go:build unix

package brokertest

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// BenchFanOut measures cross-node fan-out: b.N messages published on pub by
// publishers goroutines, each message delivered to n subscriptions of one
// topic on sub. It reports deliveries/s over the whole run, and the latency
// from Publish to the n-th (last) delivery of a message, p50 and p99. With
// one publisher, each Publish waits for the previous one, so the rate is
// bound by the broker's round trip; more publishers load the fan-out.
func BenchFanOut(b *testing.B, pub, sub ratchet.Broker, n, publishers int) {
	benchFanOut(b, pub.Publish, sub, n, publishers)
}

// BenchFanOutHistory is BenchFanOut with every message published with
// history (PublishHistory with policy), to compare the cost of keeping it.
func BenchFanOutHistory(b *testing.B, pub ratchet.HistoryBroker, sub ratchet.Broker, n, publishers int, policy ratchet.HistoryPolicy) {
	benchFanOut(b, func(ctx context.Context, topic string, msg ratchet.Message) error {
		_, err := pub.PublishHistory(ctx, topic, msg, policy)
		return err
	}, sub, n, publishers)
}

func benchFanOut(b *testing.B, publish func(context.Context, string, ratchet.Message) error, sub ratchet.Broker, n, publishers int) {
	ctx := context.Background()
	topic := Topic(b)
	var delivered atomic.Int64
	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	for i := range n {
		deliver := func(ratchet.Message) { delivered.Add(1) }
		if i == n-1 {
			deliver = func(m ratchet.Message) {
				delivered.Add(1)
				ns, err := strconv.ParseInt(string(m.Data), 10, 64)
				if err != nil {
					return // a warm-up message
				}
				lat = append(lat, time.Duration(time.Now().UnixNano()-ns))
				if len(lat) == b.N {
					close(done)
				}
			}
		}
		s, err := sub.Subscribe(ctx, topic, deliver)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Unsubscribe(context.Background()) })
	}
	// Warm up, and make sure the subscription is live across nodes.
	for delivered.Load() < int64(n) {
		if err := publish(ctx, topic, ratchet.Text("warm-up")); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	delivered.Store(0)

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range publishers {
		count := b.N / publishers
		if p < b.N%publishers {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range count {
				if err := publish(ctx, topic, ratchet.Text(strconv.FormatInt(time.Now().UnixNano(), 10))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d deliveries within a minute", delivered.Load(), b.N*n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
