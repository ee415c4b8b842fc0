package push_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/push"
)

// BenchmarkSSEFanout publishes to a topic with 100 SSE streams over
// loopback, in rounds of 256 messages that every stream reads whole before
// the next round: one op is one message delivered to every stream.
func BenchmarkSSEFanout(b *testing.B) {
	const streams, round = 100, 256
	hub := ratchet.NewHub()
	defer hub.Close(context.Background())
	sse := push.NewSSE(hub, push.WithHeartbeat(0), push.WithSendQueue(4*round))
	srv := httptest.NewServer(sse)
	defer srv.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sse.Shutdown(ctx)
	}()

	var got atomic.Int64 // events read by all streams
	var readers sync.WaitGroup
	for range streams {
		resp, err := http.Get(srv.URL + "?topic=news")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := bufio.NewReader(resp.Body)
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if bytes.HasPrefix(line, []byte("data: ")) {
					got.Add(1)
				}
			}
		}()
	}
	for hub.Subscribers("news") < streams {
		time.Sleep(time.Millisecond)
	}
	msg := ratchet.Text("a message of some sixty-four bytes, as a chat line might be....")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(round, b.N-sent)
		for range n {
			if c, err := hub.Publish(ctx, "news", msg); err != nil || c != streams {
				b.Fatalf("published to %d streams: %v", c, err)
			}
		}
		sent += n
		for got.Load() < int64(sent*streams) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*streams)/b.Elapsed().Seconds(), "events/s")
	_ = sse.Shutdown(ctx)
	readers.Wait()
}
