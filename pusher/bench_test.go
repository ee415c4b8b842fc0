package pusher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/pusher"
)

// BenchmarkFanoutCPU publishes to N subscribers whose clients run in a
// child process, and reports the server process's CPU time per delivery:
// a plain Hub topic (native) next to a Pusher channel (pusher), where every
// recipient gets the one frame encoded per publish.
//
//	go test -run '^$' -bench FanoutCPU -benchtime 300x ./pusher
func BenchmarkFanoutCPU(b *testing.B) {
	for _, n := range []int{1000, 5000, 10000} {
		for _, mode := range []string{"native", "pusher"} {
			b.Run(fmt.Sprintf("%s/subs=%d", mode, n), func(b *testing.B) { benchFanoutCPU(b, mode, n) })
		}
	}
}

func benchFanoutCPU(b *testing.B, mode string, n int) {
	hub := ratchet.NewHub()
	ctx := context.Background()
	var handler interface {
		ServeHTTP(http.ResponseWriter, *http.Request)
	}
	var publish func(payload string) error
	var shutdown func(context.Context) error
	switch mode {
	case "native":
		ws := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
			_ = hub.Subscribe(ctx, c, "bench")
			_ = c.Send(ratchet.Text("subscribed"))
		}}, ratchet.WithSendQueue(1<<14), ratchet.WithKeepalive(0, 0))
		handler, shutdown = ws, ws.Shutdown
		publish = func(p string) error { _, err := hub.Publish(ctx, "bench", ratchet.Text(p)); return err }
	case "pusher":
		srv, err := pusher.NewServer(hub, []pusher.App{testApp}, pusher.WithWsOptions(ratchet.WithSendQueue(1<<14)),
			pusher.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		handler, shutdown = srv, srv.Shutdown
		publish = func(p string) error { return srv.Trigger(ctx, []string{"bench"}, "tick", p) }
	}
	expect, stop := startClients(b, serve(b, handler, shutdown, hub), mode, n, b.N)
	defer stop()
	expect("ready")
	payload := `{"price":` + strings.Repeat("1", 40) + `}`
	before := cpu()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := publish(payload); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond) // a paced publisher
	}
	expect("done")
	b.StopTimer()
	used := cpu() - before
	b.ReportMetric(float64(used.Microseconds())/float64(b.N*n), "µs-cpu/delivery")
}

// serve serves handler on loopback until the end of the benchmark, and
// returns its URL.
func serve(b *testing.B, handler http.Handler, shutdown func(context.Context) error, hub *ratchet.Hub) string {
	hs := httptest.NewServer(handler)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = shutdown(ctx)
		hs.Close()
		_ = hub.Close(ctx)
	})
	return hs.URL
}

// startClients starts the child process: n clients of mode on the server
// at url, each reading msgs messages (0: holding the connections idle until
// stop). expect waits for a line of the child ("ready", "done").
func startClients(b *testing.B, url, mode string, n, msgs int) (expect func(string), stop func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFanoutClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PUSHER_BENCH_URL=ws"+strings.TrimPrefix(url, "http"),
		"PUSHER_BENCH_MODE="+mode, "PUSHER_BENCH_N="+strconv.Itoa(n), "PUSHER_BENCH_MSGS="+strconv.Itoa(msgs))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	expect = func(want string) {
		for lines.Scan() {
			if lines.Text() == want {
				return
			}
		}
		b.Fatalf("the clients ended before %q", want)
	}
	return expect, func() { stdin.Close(); _ = cmd.Wait() }
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestFanoutClients is the child process of BenchmarkFanoutCPU; it does
// nothing in a normal test run.
func TestFanoutClients(t *testing.T) {
	url := os.Getenv("PUSHER_BENCH_URL")
	if url == "" {
		t.Skip("the clients of BenchmarkFanoutCPU")
	}
	mode := os.Getenv("PUSHER_BENCH_MODE")
	n, _ := strconv.Atoi(os.Getenv("PUSHER_BENCH_N"))
	msgs, _ := strconv.Atoi(os.Getenv("PUSHER_BENCH_MSGS"))
	// A lost message fails the run instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			path := "/"
			if mode == "pusher" {
				path = "/app/" + testApp.Key + "?protocol=7"
			}
			c, _, err := websocket.Dial(ctx, url+path, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if mode == "pusher" {
				_, _, _ = c.Read(ctx) // connection_established
				sub, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": "bench"}})
				_ = c.Write(ctx, websocket.MessageText, sub)
			}
			if _, _, err := c.Read(ctx); err != nil { // subscribed
				t.Error(err)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	fmt.Println("ready")
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range msgs {
				if _, _, err := c.Read(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Println("done")
	if msgs == 0 { // idle: hold the connections until the parent is done
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	for _, c := range conns {
		c.CloseNow()
	}
}

// BenchmarkIdleMemory holds N idle connections from a child process and
// reports the server process's resident memory per connection: plain
// WebSocket connections of a WsServer next to Pusher connections
// subscribed to one channel.
//
//	go test -run '^$' -bench IdleMemory -benchtime 1x ./pusher
func BenchmarkIdleMemory(b *testing.B) {
	const n = 5000
	for _, mode := range []string{"native", "pusher"} {
		b.Run(mode, func(b *testing.B) {
			hub := ratchet.NewHub()
			var handler http.Handler
			var shutdown func(context.Context) error
			if mode == "native" {
				ws := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { _ = c.Send(ratchet.Text("hello")) }})
				handler, shutdown = ws, ws.Shutdown
			} else {
				srv, err := pusher.NewServer(hub, []pusher.App{testApp}, pusher.WithLogger(slog.New(slog.DiscardHandler)))
				if err != nil {
					b.Fatal(err)
				}
				handler, shutdown = srv, srv.Shutdown
			}
			url := serve(b, handler, shutdown, hub)
			before := rss()
			expect, stop := startClients(b, url, mode, n, 0)
			defer stop()
			expect("done")
			b.ReportMetric(float64(rss()-before)/1024/n, "KiB/conn")
		})
	}
}

// rss returns the resident memory of this process, in bytes, after a
// garbage collection.
func rss() int64 {
	for range 4 { // stacks shrink by half per collection
		runtime.GC()
	}
	debug.FreeOSMemory()
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
