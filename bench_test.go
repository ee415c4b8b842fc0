package ratchet_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

func benchServer(b *testing.B, c ratchet.MessageComponent) (string, func()) {
	s := ratchet.NewWsServer(c, ratchet.WithSendQueue(1<<14))
	srv := httptest.NewServer(s)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		srv.Close()
	}
}

func benchDial(b *testing.B, url string) *websocket.Conn {
	c, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadLimit(-1)
	return c
}

// BenchmarkEcho is a closed loop over loopback: 8 messages in flight on one
// connection, each echoed by the server.
func BenchmarkEcho(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			url, stop := benchServer(b, echo)
			defer stop()
			c := benchDial(b, url)
			defer c.CloseNow()
			msg := make([]byte, size)
			ctx := context.Background()
			const inFlight = 8
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			window := make(chan struct{}, inFlight) // unanswered messages
			errc := make(chan error, 1)
			go func() {
				for i := 0; i < b.N; i++ {
					if _, _, err := c.Read(ctx); err != nil {
						errc <- err
						return
					}
					<-window
				}
				errc <- nil
			}()
			for i := 0; i < b.N; i++ {
				window <- struct{}{}
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSend measures Conn.Send on a connection whose peer drains it: the
// enqueue, the batched write and the frame encoding, with allocations.
func BenchmarkSend(b *testing.B) {
	opened := make(chan ratchet.Conn, 1)
	url, stop := benchServer(b, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { opened <- c }})
	defer stop()
	c := benchDial(b, url)
	defer c.CloseNow()
	conn := <-opened
	msg := ratchet.Text(strings.Repeat("x", 64))
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			if _, _, err := c.Read(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	for i := 0; i < b.N; i++ {
		for conn.Send(msg) == ratchet.ErrSlowConsumer {
			b.Fatal("queue overflow")
		}
		if i%1024 == 1023 {
			time.Sleep(50 * time.Microsecond) // let the writer keep up with the queue bound
		}
	}
	<-done
}

// BenchmarkHubFanout publishes timestamped messages to N subscribers over
// loopback and reports deliveries/s and the delivery latency p50/p99.
// (10,000 subscribers need 20,000 descriptors in one process, beyond this
// sandbox's limit: the harness in ../shared/bench measures that case with the
// clients in another process.)
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	hub := ratchet.NewHub()
	var joined sync.WaitGroup
	joined.Add(n)
	url, stop := benchServer(b, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		_ = hub.Subscribe(context.Background(), c, "bench")
		joined.Done()
	}})
	defer stop()
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i] = benchDial(b, url)
	}
	joined.Wait()

	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, b.N)
			for range b.N {
				_, p, err := c.Read(context.Background())
				if err != nil {
					b.Error(err)
					return
				}
				l = append(l, time.Since(time.Unix(0, int64(binary.LittleEndian.Uint64(p)))))
			}
			lat[i] = l
		}()
	}
	payload := make([]byte, 64)
	for i := 0; i < b.N; i++ {
		p := slices.Clone(payload) // the hub shares it with every queue
		binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		if _, err := hub.Publish(context.Background(), "bench", ratchet.Binary(p)); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // a paced publisher, as in a push service
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
	for _, c := range clients {
		c.CloseNow()
	}
}

// BenchmarkCompressedFanout sends a 5.6 KB text to 200 clients that
// negotiated permessage-deflate: ConnSet.Broadcast compresses it once;
// Send in a loop compresses it once per client.
func BenchmarkCompressedFanout(b *testing.B) {
	for _, mode := range []string{"broadcast", "send-each"} {
		b.Run(mode, func(b *testing.B) {
			const n = 200
			var set ratchet.ConnSet
			var joined sync.WaitGroup
			joined.Add(n)
			s := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
				set.Add(c)
				joined.Done()
			}}, ratchet.WithCompression(true), ratchet.WithSendQueue(1<<14))
			srv := httptest.NewServer(s)
			defer srv.Close()
			defer s.Shutdown(context.Background())
			url := "ws" + strings.TrimPrefix(srv.URL, "http")
			var readers sync.WaitGroup
			for range n {
				c, _, err := websocket.Dial(context.Background(), url,
					&websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
				if err != nil {
					b.Fatal(err)
				}
				defer c.CloseNow()
				readers.Add(1)
				go func() {
					defer readers.Done()
					for range b.N {
						if _, _, err := c.Read(context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			joined.Wait()
			msg := ratchet.Text(strings.Repeat("the same news for everyone; ", 200))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if mode == "broadcast" {
					set.Broadcast(msg)
				} else {
					set.Each(func(c ratchet.Conn) { _ = c.Send(msg) })
				}
			}
			readers.Wait()
		})
	}
}
