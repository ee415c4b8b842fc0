package ratchet_test

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// BenchmarkIdleMemory is the heap an idle WebSocket connection holds: it
// opens idleConns connections through App.Serve on loopback (no Hub) and
// reports (HeapAlloc after − before) / idleConns as B/conn after a forced
// GC. The raw clients live in the same process: their sockets (a few
// hundred bytes each) are in the figure. "minimal" sends the request of the
// harness's load generator, "browser" a browser's headers and a cookie.
// Run with -benchtime=1x.
func BenchmarkIdleMemory(b *testing.B) {
	const minimal = "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	const browser = minimal +
		"Pragma: no-cache\r\nCache-Control: no-cache\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
		"Origin: http://localhost:8080\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n" +
		"Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\nCookie: session=3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAA; theme=dark\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	for _, tc := range []struct{ name, target, head string }{
		{"minimal", "/ws", minimal},
		{"browser", "/rooms/lobby?token=abc123&v=2", browser},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(idleBytes(b, tc.target, tc.head), "B/conn")
			}
		})
	}
}

const idleConns = 2000

func idleBytes(b *testing.B, target, head string) float64 {
	var opened atomic.Int64
	app := ratchet.NewApp("", 0)
	h := ratchet.ComponentFuncs{Open: func(ratchet.Conn) { opened.Add(1) }}
	app.Route("/ws", h, []string{"*"})
	app.Route("/rooms/{room}", h, []string{"*"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Serve(l) }()
	req := []byte("GET " + target + " HTTP/1.1\r\nHost: " + l.Addr().String() + "\r\n" + head + "\r\n")
	conns := make([]net.Conn, 0, idleConns+1)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
	}()
	buf := make([]byte, 512)
	dial := func() { conns = append(conns, upgradeRaw(b, l.Addr().String(), req, buf)) }
	wait := func(n int64) {
		for opened.Load() < n {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // net/http's handler goroutines return
	}
	dial() // first-use allocations (pools, the poller) out of the figure
	wait(1)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for range idleConns {
		dial()
	}
	wait(idleConns + 1)
	after := heap()
	runtime.KeepAlive(conns)
	return float64(int64(after)-int64(before)) / idleConns
}
