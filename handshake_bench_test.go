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
	addr, req := benchServe(b)
	var open openConns
	defer open.close()
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		open.add(benchUpgrade(b, addr, req, buf), 512) // well under the descriptor limit
	}
}

// BenchmarkUpgradeBurst is BenchmarkUpgrade with 64 clients at a time, as
// the harness's handshake burst; goroutines/op counts the goroutines the
// server starts per handshake (its workers, mostly: each starts on a small
// stack and grows it).
func BenchmarkUpgradeBurst(b *testing.B) {
	addr, req := benchServe(b)
	created := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(created)
	before := created[0].Value.Uint64()
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var open openConns
		defer open.close()
		buf := make([]byte, 512)
		for pb.Next() {
			open.add(benchUpgrade(b, addr, req, buf), 8) // 512 open at a time in all
		}
	})
	metrics.Read(created)
	b.ReportMetric(float64(created[0].Value.Uint64()-before)/float64(b.N), "goroutines/op")
}

// benchServe serves a route through App.Serve until the benchmark ends,
// and returns its address and an upgrade request to it.
func benchServe(b *testing.B) (addr string, req []byte) {
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{}, []string{"*"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Serve(l) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
	})
	addr = l.Addr().String()
	return addr, []byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

// openConns keeps connections open, up to a number at a time.
type openConns []net.Conn

func (o *openConns) add(c net.Conn, keep int) {
	if *o = append(*o, c); len(*o) == keep {
		o.close()
	}
}

func (o *openConns) close() {
	for _, c := range *o {
		c.Close()
	}
	*o = (*o)[:0]
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
