package ratchet_test

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// idleBench joins each connection to its Hub in OnOpen, as
// examples/benchserver does: hub nil for none, topic "" for Hub.Add; with
// users, as a user of its own (Hub.SetUser).
type idleBench struct {
	hub    *ratchet.Hub
	topic  string
	users  bool
	opened sync.WaitGroup
}

func (b *idleBench) OnOpen(c ratchet.Conn) {
	defer b.opened.Done()
	switch {
	case b.hub == nil:
	case b.topic == "":
		_ = b.hub.Add(context.Background(), c)
	default:
		_ = b.hub.Subscribe(context.Background(), c, b.topic)
	}
	if b.users {
		_ = b.hub.SetUser(context.Background(), c, "user"+strconv.FormatUint(c.ID(), 10))
	}
}
func (*idleBench) OnMessage(ratchet.Conn, ratchet.Message) {}
func (*idleBench) OnClose(ratchet.Conn)                    {}
func (*idleBench) OnError(ratchet.Conn, error)             {}

// BenchmarkIdleConnMemory reports the heap each idle WebSocket connection
// holds (B/conn: HeapAlloc after a GC, with n connections open, less before
// them), served by App.Serve on loopback, with no Hub, with Hub.Add, with
// Hub.Subscribe to one topic, and with Hub.Add and a user of its own each.
// The clients are raw sockets in this process that only did the handshake:
// their few hundred bytes each are the same in every case. Run with
// -benchtime=1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, tc := range []struct {
		name  string
		hub   bool
		topic string
		users bool
	}{
		{"hub=none", false, "", false},
		{"hub=add", true, "", false},
		{"hub=subscribe", true, "bench", false},
		{"hub=add+user", true, "", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				comp := &idleBench{topic: tc.topic, users: tc.users}
				if tc.hub {
					comp.hub = ratchet.NewHub()
				}
				b.ReportMetric(idleConnBytes(b, comp, 2000), "B/conn")
			}
		})
	}
}

// idleConnBytes opens n idle connections to comp and returns the heap
// each one holds.
func idleConnBytes(b *testing.B, comp *idleBench, n int) float64 {
	app := ratchet.NewApp("", 0)
	app.Route("/ws", comp, []string{"*"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := app.Shutdown(ctx); err != nil {
			b.Error(err)
		}
		<-served
		if comp.hub != nil {
			_ = comp.hub.Close(ctx)
		}
	}()
	addr := l.Addr().String()
	req := []byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	before := heapAlloc()
	comp.opened.Add(n)
	buf := make([]byte, 512)
	for range n {
		clients = append(clients, benchUpgrade(b, addr, req, buf))
	}
	comp.opened.Wait()
	time.Sleep(100 * time.Millisecond) // readers park
	after := heapAlloc()
	return float64(int64(after)-int64(before)) / float64(n)
}

// heapAlloc is the live heap after a full collection.
func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
