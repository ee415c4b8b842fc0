//go:build unix

package brokertest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

// BenchAppFanOut measures cross-node fan-out end to end: n WebSocket clients
// of node B's App subscribe to a topic of its Hub, and node A's Hub publishes
// b.N messages to it, keeping at most window messages not yet read by every
// client (so that no client falls behind into a slow-consumer close). It
// reports deliveries/s (messages read by clients) and the latency from
// Publish to the n-th client's read, p50 and p99. The clients run in the
// same process, so their reading shares the CPU with the servers.
func BenchAppFanOut(b *testing.B, pub, sub ratchet.Broker, n, window int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hubA, _ := benchNode(b, pub)
	_, urlB := benchNode(b, sub)
	topic := Topic(b)

	var (
		done      = make([]atomic.Int32, b.N)
		lat       = make([]time.Duration, b.N)
		complete  = make(chan int, b.N)
		readers   sync.WaitGroup
		delivered atomic.Int64
		live      atomic.Int32
	)
	for range n {
		c, resp, err := websocket.Dial(ctx, urlB+"?topic="+topic, nil)
		if err != nil {
			b.Fatal(err)
		}
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if _, m, err := c.Read(ctx); err != nil || string(m) != "ready" {
			b.Fatalf("first message %q %v", m, err)
		}
		readers.Add(1)
		live.Add(1)
		go func() {
			defer readers.Done()
			defer live.Add(-1)
			defer c.CloseNow()
			for {
				_, m, err := c.Read(ctx)
				if err != nil {
					if ctx.Err() == nil {
						b.Logf("client: %v", err)
					}
					return
				}
				seq, ts, ok := strings.Cut(string(m), ":")
				if !ok {
					continue
				}
				i, _ := strconv.Atoi(seq)
				ns, _ := strconv.ParseInt(ts, 10, 64)
				delivered.Add(1)
				if done[i].Add(1) == int32(n) {
					lat[i] = time.Duration(time.Now().UnixNano() - ns)
					complete <- i
				}
			}
		}()
	}

	b.ResetTimer()
	start := time.Now()
	inflight := 0
	for i := range b.N {
		for inflight >= window {
			select {
			case <-complete:
				inflight--
			case <-time.After(time.Minute):
				b.Fatalf("message not read by all %d clients within a minute (%d deliveries, %d readers left)", n, delivered.Load(), live.Load())
			}
		}
		msg := ratchet.Text(fmt.Sprintf("%d:%d", i, time.Now().UnixNano()))
		if _, err := hubA.Publish(ctx, topic, msg); err != nil {
			b.Fatal(err)
		}
		inflight++
	}
	for ; inflight > 0; inflight-- {
		select {
		case <-complete:
		case <-time.After(time.Minute):
			b.Fatalf("messages not read by all %d clients within a minute", n)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	readers.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// benchNode is the node of a benchmark: appNode with its errors quiet.
func benchNode(b *testing.B, br ratchet.Broker) (*ratchet.Hub, string) {
	return appNode(b, br, true)
}
