package ratchet_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// BenchmarkUpgrade is one handshake over loopback, as the harness's idle
// scenario makes them: a raw client sends the upgrade request, reads the
// 101 answer and keeps the connection open, through App.Serve as in
// examples/benchserver. allocs/op counts both sides; the client's share is
// the dial (a few allocations).
func BenchmarkUpgrade(b *testing.B) {
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{}, []string{"*"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
	}()
	req := []byte("GET /ws HTTP/1.1\r\nHost: " + l.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	const keep = 512 // open connections at a time, well under the descriptor limit
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		open = append(open, benchUpgrade(b, l.Addr().String(), req, buf))
		if len(open) == keep {
			for _, c := range open {
				c.Close()
			}
			open = open[:0]
		}
	}
}

// BenchmarkUpgradeBurst is BenchmarkUpgrade with 64 clients at a time, as
// the harness's handshake burst; goroutines/op counts the goroutines the
// server starts per handshake (its workers, mostly: each starts on a small
// stack and grows it).
func BenchmarkUpgradeBurst(b *testing.B) {
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{}, []string{"*"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
	}()
	req := []byte("GET /ws HTTP/1.1\r\nHost: " + l.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	created := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(created)
	before := created[0].Value.Uint64()
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		const keep = 8 // per client: 512 open at a time
		var open []net.Conn
		buf := make([]byte, 512)
		for pb.Next() {
			open = append(open, benchUpgrade(b, l.Addr().String(), req, buf))
			if len(open) == keep {
				for _, c := range open {
					c.Close()
				}
				open = open[:0]
			}
		}
		for _, c := range open {
			c.Close()
		}
	})
	metrics.Read(created)
	b.ReportMetric(float64(created[0].Value.Uint64()-before)/float64(b.N), "goroutines/op")
}

// benchUpgrade dials addr, sends the upgrade request req and reads the 101
// answer into buf, the client's only allocations being the dial's.
func benchUpgrade(b *testing.B, addr string, req, buf []byte) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		m, err := c.Read(buf[n:])
		if err != nil {
			b.Fatal(err)
		}
		n += m
	}
	if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101 ")) {
		resp, _ := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
		b.Fatalf("no upgrade: %v", resp)
	}
	return c
}
