package engineio_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
)

// The shape of BenchmarkEcho: benchConns connections (sessions), each
// keeping benchWindow messages of benchSize bytes in flight, every one
// echoed by the server (a closed loop).
const (
	benchConns  = 50
	benchWindow = 8
	benchSize   = 64
	benchWarmup = 200 // messages per connection echoed before the measurement
)

// benchModes are the transports compared: an Engine.IO session on HTTP
// long polling, an Engine.IO session upgraded to WebSocket (polling
// handshake, 2probe/3probe, 5), and a plain WebSocket of ratchet.WsServer.
var benchModes = []string{"polling", "upgraded", "plain"}

var benchEcho = ratchet.ComponentFuncs{Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }}

// BenchmarkEcho measures one echoed message per op, the server in this
// process and its clients in a child process (this test binary, running
// TestBenchClients), so that the server's CPU time (getrusage of this
// process, over the measured window) is apart from the clients' (the
// child's own getrusage, reported as cli-µs-cpu/msg). Each sub-benchmark
// starts a fresh server and a fresh child. Run the modes interleaved, several
// times, on a machine others share:
//
//	go test -c -o /tmp/eio.test ./engineio
//	for i in 1 2 3 4 5; do /tmp/eio.test -test.run '^$' -test.bench 'Echo/' -test.benchtime 200000x; done
func BenchmarkEcho(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			url := benchServe(b, mode)
			child := startBenchClients(b, url, mode, "echo", benchConns, b.N)
			defer child.stop()
			child.expect("ready")
			before, start := cpuTime(), time.Now()
			b.ResetTimer()
			child.send("go")
			fields := child.expect("done")
			elapsed := time.Since(start)
			b.StopTimer()
			server := cpuTime() - before
			clientNS, _ := strconv.ParseInt(fields[1], 10, 64)
			requests, _ := strconv.ParseInt(fields[2], 10, 64)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(server.Nanoseconds())/1e3/float64(b.N), "srv-µs-cpu/msg")
			b.ReportMetric(float64(clientNS)/1e3/float64(b.N), "cli-µs-cpu/msg")
			if mode == "polling" {
				b.ReportMetric(float64(requests)/float64(b.N), "http-req/msg")
			}
		})
	}
}

// BenchmarkIdleMemory holds 5,000 idle sessions (connections) from a
// child process and reports what each costs the server: resident memory
// (VmRSS), Go heap in use and goroutine stacks, after garbage collection,
// divided by the count. A polling session is idle with one GET pending, as
// engine.io-client keeps it; an upgraded session is idle on its WebSocket.
//
//	go test -run '^$' -bench IdleMemory -benchtime 1x ./engineio
func BenchmarkIdleMemory(b *testing.B) {
	const n = 5000
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			url := benchServe(b, mode)
			rss0, heap0, stack0 := memInUse()
			child := startBenchClients(b, url, mode, "idle", n, 0)
			defer child.stop()
			child.expect("ready")
			time.Sleep(time.Second) // the last requests reach their handlers
			rss1, heap1, stack1 := memInUse()
			b.ReportMetric(float64(rss1-rss0)/1024/n, "rss-KiB/session")
			b.ReportMetric(float64(heap1-heap0)/1024/n, "heap-KiB/session")
			b.ReportMetric(float64(stack1-stack0)/1024/n, "stack-KiB/session")
		})
	}
}

// benchServe serves the echo component for mode on loopback until the end
// of the benchmark and returns its base URL.
func benchServe(b *testing.B, mode string) string {
	var h http.Handler
	var shutdown func(context.Context) error
	if mode == "plain" {
		ws := ratchet.NewWsServer(benchEcho)
		h, shutdown = ws, ws.Shutdown
	} else {
		eh := engineio.NewHandler(benchEcho)
		h, shutdown = eh, eh.Shutdown
	}
	srv := httptest.NewServer(h)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return srv.URL
}

// benchChild is the child process of a benchmark, talked to in lines.
type benchChild struct {
	b     *testing.B
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func startBenchClients(b *testing.B, url, mode, job string, conns, msgs int) *benchChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EIO_BENCH_URL="+url, "EIO_BENCH_MODE="+mode, "EIO_BENCH_JOB="+job,
		"EIO_BENCH_CONNS="+strconv.Itoa(conns), "EIO_BENCH_MSGS="+strconv.Itoa(msgs))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
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
	return &benchChild{b: b, cmd: cmd, in: in, lines: bufio.NewScanner(out)}
}

// expect waits for a line of the child starting with want, and returns its
// fields.
func (c *benchChild) expect(want string) []string {
	for c.lines.Scan() {
		if f := strings.Fields(c.lines.Text()); len(f) > 0 && f[0] == want {
			return f
		}
	}
	c.b.Fatalf("the clients ended before %q", want)
	return nil
}

func (c *benchChild) send(line string) { _, _ = fmt.Fprintln(c.in, line) }

// stop lets the child close its connections and exit.
func (c *benchChild) stop() {
	_ = c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		c.b.Errorf("the clients: %v", err)
	}
}

// cpuTime is the CPU time of this process, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memInUse returns this process's resident memory, its Go heap in use and
// its goroutine stacks, in bytes, after garbage collection.
func memInUse() (rss, heap, stacks int64) {
	for range 4 { // stacks shrink by half per collection
		runtime.GC()
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return rss, int64(ms.HeapInuse), int64(ms.StackInuse)
}

// TestBenchClients is the child process of BenchmarkEcho and
// BenchmarkIdleMemory; it does nothing in a normal test run. It exits
// with os.Exit once its parent closes its input, leaving the server to
// clean up connections it did not close.
func TestBenchClients(t *testing.T) {
	base := os.Getenv("EIO_BENCH_URL")
	if base == "" {
		t.Skip("the clients of BenchmarkEcho and BenchmarkIdleMemory")
	}
	mode, job := os.Getenv("EIO_BENCH_MODE"), os.Getenv("EIO_BENCH_JOB")
	conns, _ := strconv.Atoi(os.Getenv("EIO_BENCH_CONNS"))
	msgs, _ := strconv.Atoi(os.Getenv("EIO_BENCH_MSGS"))
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "bench clients:", err)
		os.Exit(1)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2*conns + 16, DisableCompression: true}}
	cs := make([]benchConn, conns)
	errs := make(chan error, conns)
	sem := make(chan struct{}, 64) // handshakes at once
	var wg sync.WaitGroup
	for i := range cs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialBench(hc, base, mode, job == "idle")
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			cs[i] = c
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		fail(err)
	default:
	}
	if mode == "upgraded" {
		hc.CloseIdleConnections() // the handshakes' connections: an upgraded session needs only its WebSocket
	}
	in := bufio.NewScanner(os.Stdin)
	if job == "idle" {
		fmt.Println("ready")
		for in.Scan() {
		}
		os.Exit(0)
	}
	// echo: a warm-up, then msgs messages over all connections.
	phase := func(total int) (requests int64) {
		for i, c := range cs {
			n := total / conns
			if i < total%conns {
				n++
			}
			wg.Go(func() {
				if err := c.echo(n); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		select {
		case err := <-errs:
			fail(err)
		default:
		}
		for _, c := range cs {
			requests += c.requests()
		}
		return requests
	}
	phase(benchWarmup * conns)
	fmt.Println("ready")
	if !in.Scan() || in.Text() != "go" {
		fail(errors.New("no go from the parent"))
	}
	cpu0 := cpuTime()
	before := phase(0) // the requests of the warm-up
	requests := phase(msgs) - before
	fmt.Println("done", (cpuTime() - cpu0).Nanoseconds(), requests)
	for in.Scan() {
	}
	for _, c := range cs {
		c.close()
	}
	os.Exit(0)
}

// benchConn is one client connection of the benchmark.
type benchConn interface {
	// echo sends n messages, keeping benchWindow in flight, and returns
	// once n echoes came back.
	echo(n int) error
	// requests is the number of HTTP requests made so far (polling).
	requests() int64
	close()
}

var benchPayload = bytes.Repeat([]byte("x"), benchSize)

func dialBench(hc *http.Client, base, mode string, idle bool) (benchConn, error) {
	ctx := context.Background()
	if mode == "plain" {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http"), nil)
		if err != nil {
			return nil, err
		}
		return &wsBench{c: c}, nil
	}
	p := &pollBench{hc: hc}
	body, err := p.request(http.MethodGet, base+"/?EIO=4&transport=polling", nil, nil)
	if err != nil {
		return nil, err
	}
	var hs struct{ Sid string }
	if len(body) == 0 || body[0] != '0' || json.Unmarshal(body[1:], &hs) != nil {
		return nil, fmt.Errorf("handshake: %q", body)
	}
	p.url = base + "/?EIO=4&transport=polling&sid=" + hs.Sid
	if mode == "upgraded" {
		return upgradeBench(ctx, "ws"+strings.TrimPrefix(base, "http")+"/?EIO=4&transport=websocket&sid="+hs.Sid)
	}
	if idle { // one GET pending, until the process ends
		wrote := make(chan struct{})
		var once sync.Once // a request retried on a new connection is written twice
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) }}
		go func() { _, _ = p.request(http.MethodGet, p.url, nil, trace) }()
		<-wrote
	}
	return p, nil
}

// upgradeBench upgrades a polling session as engine.io-client does: 2probe,
// 3probe, then the upgrade packet.
func upgradeBench(ctx context.Context, url string) (benchConn, error) {
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("2probe")); err != nil {
		return nil, err
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != "3probe" {
		return nil, fmt.Errorf("probe: %q %v", b, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("5")); err != nil {
		return nil, err
	}
	return &wsBench{c: c, eio: true}, nil
}

// wsBench is a plain WebSocket client, or, with eio, one speaking
// Engine.IO packets on it: "4" before each message, and a "3" for each "2".
type wsBench struct {
	c   *websocket.Conn
	eio bool
	msg []byte
}

func (w *wsBench) echo(n int) error {
	if w.msg == nil {
		w.msg = benchPayload
		if w.eio {
			w.msg = append([]byte{'4'}, benchPayload...)
		}
	}
	ctx := context.Background()
	sent, got := 0, 0
	for ; sent < min(n, benchWindow); sent++ {
		if err := w.c.Write(ctx, websocket.MessageText, w.msg); err != nil {
			return err
		}
	}
	for got < n {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			return err
		}
		if w.eio && len(b) == 1 && b[0] == '2' { // ping
			if err := w.c.Write(ctx, websocket.MessageText, []byte("3")); err != nil {
				return err
			}
			continue
		}
		if len(b) != len(w.msg) {
			return fmt.Errorf("echo %q", b)
		}
		got++
		if sent < n {
			sent++
			if err := w.c.Write(ctx, websocket.MessageText, w.msg); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *wsBench) requests() int64 { return 0 }

func (w *wsBench) close() {
	if w.eio {
		_ = w.c.Write(context.Background(), websocket.MessageText, []byte("1"))
	}
	_ = w.c.Close(websocket.StatusNormalClosure, "")
}

// pollBench is an Engine.IO polling client as engine.io-client runs one: a
// GET always pending, and a POST of every packet waiting whenever no POST
// is under way.
type pollBench struct {
	hc  *http.Client
	url string
	n   atomic.Int64 // requests made
}

func (p *pollBench) request(method, url string, body []byte, trace *httptrace.ClientTrace) ([]byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if trace != nil {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	p.n.Add(1)
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %d %q", method, resp.StatusCode, b)
	}
	return b, err
}

func (p *pollBench) echo(n int) error {
	if n == 0 {
		return nil
	}
	freed := make(chan int, n+1) // echoes received by the GETs
	pings := make(chan struct{}, 1)
	getErr := make(chan error, 1)
	go func() {
		got := 0
		for got < n {
			b, err := p.request(http.MethodGet, p.url, nil, nil)
			if err != nil {
				getErr <- err
				return
			}
			k := 0
			for pk := range bytes.SplitSeq(b, []byte{'\x1e'}) {
				switch {
				case len(pk) == 1+benchSize && pk[0] == '4':
					k++
				case len(pk) == 1 && pk[0] == '2':
					select {
					case pings <- struct{}{}:
					default:
					}
				case len(pk) == 1 && pk[0] == '6':
				default:
					getErr <- fmt.Errorf("poll: %q", b)
					return
				}
			}
			got += k
			freed <- k
		}
		getErr <- nil
	}()
	credit, sent, got, getDone := benchWindow, 0, 0, false
	var body []byte
	for got < n {
		body = body[:0]
		for ; credit > 0 && sent < n; credit, sent = credit-1, sent+1 {
			if len(body) > 0 {
				body = append(body, '\x1e')
			}
			body = append(append(body, '4'), benchPayload...)
		}
		select {
		case <-pings:
			if len(body) > 0 {
				body = append(body, '\x1e')
			}
			body = append(body, '3')
		default:
		}
		if len(body) > 0 {
			if _, err := p.request(http.MethodPost, p.url, body, nil); err != nil {
				return err
			}
		}
		select {
		case k := <-freed:
			credit, got = credit+k, got+k
		case <-pings:
			if _, err := p.request(http.MethodPost, p.url, []byte("3"), nil); err != nil {
				return err
			}
		case err := <-getErr:
			if err != nil {
				return err
			}
			getDone = true
		}
	}
	if !getDone {
		return <-getErr
	}
	return nil
}

func (p *pollBench) requests() int64 { return p.n.Load() }

func (p *pollBench) close() { _, _ = p.request(http.MethodPost, p.url, []byte("1"), nil) }
