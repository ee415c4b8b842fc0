package ratchet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fast path of App.Serve on a plain listener: the App accepts each
// connection itself and reads its request head; a WebSocket upgrade to a
// route goes straight to the route, without net/http's per-connection
// machinery (its buffers, contexts, background read and serve goroutine),
// and every other connection is handed to the App's http.Server with the
// bytes already read, so that net/http answers it exactly as it would have.

// headBufSize is what the head of a fast-path upgrade must fit in; a larger
// head goes to net/http, whose limit (MaxHeaderBytes + 4096) is never below
// it.
const headBufSize = 4096

// headBuf reads one connection's request head: br over the socket, and pr,
// which parses a copy of the head, so that br still holds every byte read
// when net/http has to be given them.
type headBuf struct {
	br  *bufio.Reader
	pr  *bufio.Reader
	src bytes.Reader
}

var headPool = sync.Pool{New: func() any {
	return &headBuf{br: bufio.NewReaderSize(nil, headBufSize), pr: bufio.NewReaderSize(nil, headBufSize)}
}}

func (h *headBuf) release() {
	h.br.Reset(nil)
	h.pr.Reset(nil)
	h.src.Reset(nil)
	headPool.Put(h)
}

// fastServer is one call of Serve on a plain listener.
type fastServer struct {
	a       *App
	l       net.Listener
	handoff *handoff
	timeout time.Duration   // of the head read, as net/http's header timeout
	ctx     context.Context // the requests' base: ServerContextKey, LocalAddrContextKey when shared
	oneAddr bool            // every connection has the listener's address as its local one
	workers sync.WaitGroup  // goroutines reading heads (work)

	heads map[net.Conn]time.Time // under a.mu: accepted, head not read yet; when accepted

	mu      sync.Mutex
	idle    []*worker // waiting for a connection, the longest idle first
	stopped bool      // no worker waits any more

	// The reaper times heads and idle workers out: one ticker instead of a
	// deadline and a timer reset per connection. It ticks only while there
	// is something to time, so that an idle server does not wake.
	tick   time.Duration
	asleep atomic.Bool
	wake   chan struct{} // to the reaper, once asleep is swapped off
	quit   chan struct{}
	reaped chan struct{}
}

// A worker that has served a connection waits a while for the next one
// instead of ending: a new goroutine would start on a small stack and grow
// it again during the upgrade. The latest idle is reused first (its stack
// is warm), and the reaper ends those idle for workerLinger, so that a
// burst of handshakes leaves no stacks behind for long. maxWaiting covers
// 64 handshakes at a time (8 let 7 in 10 start a goroutine); each idle
// worker holds a few KiB of stack.
const (
	maxWaiting   = 64
	workerLinger = time.Second
)

type worker struct {
	next  chan net.Conn // buffered; nil ends the worker
	since time.Time     // idle since
}

// serveFast serves l with the fast path and hs for the rest, until hs shuts
// down or l fails.
func (a *App) serveFast(hs *http.Server, l net.Listener) error {
	f := &fastServer{a: a, l: l, handoff: newHandoff(l), timeout: hs.ReadHeaderTimeout,
		heads: make(map[net.Conn]time.Time), tick: workerLinger / 4,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), reaped: make(chan struct{})}
	if f.timeout == 0 {
		f.timeout = hs.ReadTimeout // net/http's rule
	}
	if f.timeout > 0 {
		f.tick = min(f.tick, f.timeout/8) // a head is closed within timeout + timeout/8
	}
	f.ctx = context.WithValue(context.Background(), http.ServerContextKey, hs)
	if tcp, ok := l.Addr().(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		f.oneAddr = true
		f.ctx = context.WithValue(f.ctx, http.LocalAddrContextKey, l.Addr())
	}
	f.asleep.Store(true)
	go f.reap()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(f.handoff) }() // closes the handoff, and so l, when it returns
	err := f.accept()
	_ = f.handoff.Close()
	f.stopIdle()
	f.workers.Wait() // heads still being read end by closeFresh or the reaper
	close(f.quit)
	<-f.reaped
	if serr := <-served; err == nil {
		err = serr
	}
	return err
}

// accept runs the accept loop; nil once the handoff is closed (Shutdown),
// else l's error.
func (f *fastServer) accept() error {
	var delay time.Duration
	for {
		c, err := f.l.Accept()
		if err != nil {
			if f.handoff.closed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { // net/http's test (EMFILE and the like)
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.a.log().Error("ratchet: accept error; retrying", "err", err, "in", delay)
				select {
				case <-time.After(delay):
				case <-f.handoff.done:
				}
				continue
			}
			return err
		}
		delay = 0
		if !f.trackHead(c) {
			_ = c.Close()
			continue
		}
		if w := f.takeIdle(); w != nil {
			w.next <- c
		} else {
			f.workers.Add(1)
			go f.work(c)
		}
	}
}

// work serves c, then the connections the accept loop hands it while it
// waits (see workerLinger).
func (f *fastServer) work(c net.Conn) {
	defer f.workers.Done()
	w := &worker{next: make(chan net.Conn, 1)}
	for c != nil {
		f.serveConn(c)
		if !f.park(w) {
			return
		}
		c = <-w.next
	}
}

// park puts w among the idle workers, unless enough wait or the server
// has stopped.
func (f *fastServer) park(w *worker) bool {
	f.mu.Lock()
	if f.stopped || len(f.idle) >= maxWaiting {
		f.mu.Unlock()
		return false
	}
	w.since = time.Now()
	f.idle = append(f.idle, w)
	f.mu.Unlock()
	f.rouse()
	return true
}

// takeIdle removes and returns the latest idle worker, or nil.
func (f *fastServer) takeIdle() *worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.idle)
	if n == 0 {
		return nil
	}
	w := f.idle[n-1]
	f.idle[n-1] = nil
	f.idle = f.idle[:n-1]
	return w
}

// stopIdle ends the idle workers, and keeps the others from waiting.
func (f *fastServer) stopIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	for _, w := range f.idle {
		w.next <- nil
	}
	f.idle = nil
}

// trackHead counts c among the connections that have sent no request
// (closeFresh), unless Shutdown has already closed them, and among the
// heads the reaper times.
func (f *fastServer) trackHead(c net.Conn) bool {
	f.a.mu.Lock()
	if f.handoff.closed() { // closeFresh may have run
		f.a.mu.Unlock()
		return false
	}
	if f.a.fresh == nil {
		f.a.fresh = make(map[net.Conn]struct{})
	}
	f.a.fresh[c] = struct{}{}
	if f.timeout > 0 {
		f.heads[c] = time.Now()
	}
	f.a.mu.Unlock()
	if f.timeout > 0 {
		f.rouse()
	}
	return true
}

// headRead takes c out of the fresh connections (closeFresh must not close
// it now) and of the timed heads, and returns when it was accepted; false
// when the reaper has closed it meanwhile.
func (f *fastServer) headRead(c net.Conn) (accepted time.Time, ok bool) {
	f.a.mu.Lock()
	defer f.a.mu.Unlock()
	delete(f.a.fresh, c)
	accepted, ok = f.heads[c]
	delete(f.heads, c)
	return accepted, ok || f.timeout == 0
}

// rouse wakes the reaper if it sleeps: there is something to time.
func (f *fastServer) rouse() {
	if f.asleep.Load() && f.asleep.CompareAndSwap(true, false) {
		f.wake <- struct{}{}
	}
}

// reap closes the heads not read within the timeout and ends the workers
// idle for workerLinger, every tick while there are any; until quit.
func (f *fastServer) reap() {
	defer close(f.reaped)
	t := time.NewTicker(f.tick)
	defer t.Stop()
	for {
		if f.asleep.Load() {
			t.Stop()
			select {
			case <-f.wake:
			case <-f.quit:
				return
			}
			t.Reset(f.tick)
		}
		select {
		case now := <-t.C:
			if f.reapDue(now) {
				continue
			}
			f.asleep.Store(true)
			// What was tracked before the store did not wake us: look again.
			if f.reapDue(time.Now()) && !f.asleep.CompareAndSwap(true, false) {
				<-f.wake // a tracker swapped it first, and sends
			}
		case <-f.quit:
			return
		}
	}
}

// reapDue closes the heads and ends the workers that are due at now, and
// reports whether any are left to time.
func (f *fastServer) reapDue(now time.Time) bool {
	f.a.mu.Lock()
	for c, at := range f.heads {
		if now.Sub(at) >= f.timeout { // nothing came in time: net/http would close it without a word
			_ = c.Close()
			delete(f.heads, c)
			delete(f.a.fresh, c)
		}
	}
	left := len(f.heads) > 0
	f.a.mu.Unlock()
	f.mu.Lock()
	n := 0
	for n < len(f.idle) && now.Sub(f.idle[n].since) >= workerLinger {
		f.idle[n].next <- nil
		n++
	}
	if n > 0 {
		f.idle = append(f.idle[:0], f.idle[n:]...)
		clear(f.idle[len(f.idle) : len(f.idle)+n])
	}
	left = left || len(f.idle) > 0
	f.mu.Unlock()
	return left
}

// serveConn reads c's request head and serves it, or hands c to net/http.
func (f *fastServer) serveConn(c net.Conn) {
	if _, ok := c.(*tls.Conn); ok { // a TLS listener of the caller's: net/http knows what to do
		f.headRead(c)
		f.handoff.give(c)
		return
	}
	h := headPool.Get().(*headBuf)
	h.br.Reset(c)
	end, err := readHead(h.br) // the reaper closes c if the head does not come in time
	accepted, ok := f.headRead(c)
	if !ok {
		h.release()
		return
	}
	var deadline time.Time
	if f.timeout > 0 {
		deadline = accepted.Add(f.timeout)
	}
	if end < 0 && (err == nil || errors.Is(err, io.EOF) && h.br.Buffered() > 0) {
		f.fallback(c, h, deadline) // too large, or cut short: net/http answers as it would
		return
	}
	if end < 0 {
		h.release()
		_ = c.Close() // nothing came, or not in time: net/http would close it without a word
		return
	}
	raw, _ := h.br.Peek(end)
	h.src.Reset(raw)
	h.pr.Reset(&h.src)
	req, err := http.ReadRequest(h.pr)
	if err != nil || h.pr.Buffered() != 0 || !f.routable(req) {
		f.fallback(c, h, deadline)
		return
	}
	_, _ = h.br.Discard(end) // what is left came after the head (a first frame)
	f.upgrade(c, h.br, req)
	h.release()
}

// readHead fills br until it holds a whole request head, and returns the
// head's length; -1 when the buffer filled first or a read failed (err).
func readHead(br *bufio.Reader) (end int, err error) {
	from := 0
	for {
		if _, err = br.Peek(br.Buffered() + 1); err != nil {
			b, _ := br.Peek(br.Buffered())
			return headEnd(b, from), err
		}
		b, _ := br.Peek(br.Buffered())
		if end = headEnd(b, from); end >= 0 || len(b) == br.Size() {
			return end, nil
		}
		from = max(len(b)-2, 0) // a line end may be split across reads
	}
}

// headEnd returns the length of the head in b, up to and including its
// first empty line ("\r\n" or a bare "\n", as net/textproto reads lines),
// searching for line ends from from; -1 when b holds no empty line.
func headEnd(b []byte, from int) int {
	for i := from; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// routable reports whether req is a WebSocket upgrade that net/http would
// pass to the App unchanged and that the App routes to a WsServer. Only
// what is sure passes; the rest goes to net/http, which decides.
func (f *fastServer) routable(req *http.Request) bool {
	if req.Method != http.MethodGet || req.ProtoMajor != 1 || req.ProtoMinor < 1 || req.Body != http.NoBody ||
		!strings.HasPrefix(req.RequestURI, "/") || !plainHost(req.Host) ||
		!hasToken(req.Header, "Upgrade", "websocket") || !hasToken(req.Header, "Connection", "upgrade") {
		return false
	}
	for k := range req.Header {
		if k == "Expect" || strings.ContainsAny(k, " \t") { // net/http answers Expect, refuses spaces
			return false
		}
	}
	req.Host = strings.ToLower(req.Host) // as App.ServeHTTP does
	h, _ := f.a.mux.Handler(req)
	_, ok := h.(*WsServer)
	return ok
}

// plainHost reports whether host is non-empty and made of bytes that
// net/http's Host check (httpguts.ValidHostHeader) accepts, a subset of them.
func plainHost(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-:[]_", c) >= 0) {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated header lists token, in any case.
func hasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upgrade serves req, an upgrade to a route, on c as net/http's server
// would: same request context values, a context canceled when the handler
// returns, panics recovered.
func (f *fastServer) upgrade(c net.Conn, br *bufio.Reader, req *http.Request) {
	w := &headWriter{c: c, br: br, timeout: f.timeout}
	defer func() {
		if err := recover(); err != nil {
			if err != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				f.a.log().Error(fmt.Sprintf("http: panic serving %v: %v\n%s", req.RemoteAddr, err, buf))
			}
			if !w.hijacked {
				_ = c.Close()
			}
		}
	}()
	req.RemoteAddr = c.RemoteAddr().String()
	ctx := f.ctx
	if !f.oneAddr {
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.a.ServeHTTP(w, req.WithContext(ctx))
	if !w.hijacked {
		w.answer()
	}
}

// fallback hands c to net/http with the bytes read so far.
func (f *fastServer) fallback(c net.Conn, h *headBuf, deadline time.Time) {
	b, _ := h.br.Peek(h.br.Buffered())
	rc := &replayConn{Conn: c, pending: bytes.Clone(b), head: deadline}
	rc.clamp.Store(true)
	h.release()
	f.handoff.give(rc)
}

// headWriter is the ResponseWriter of a fast-path upgrade: Hijack gives
// the socket itself (so that internal/netpoll can park it) with the bytes
// read after the head, and a refusal is buffered and sent with
// "Connection: close" once the handler returns.
type headWriter struct {
	c        net.Conn
	br       *bufio.Reader
	timeout  time.Duration
	header   http.Header
	status   int
	body     []byte
	hijacked bool
}

func (w *headWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *headWriter) WriteHeader(code int) {
	if w.status == 0 && !w.hijacked {
		w.status = code
	}
}

func (w *headWriter) Write(b []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, b...)
	return len(b), nil
}

// Hijack has no deadline to clear, unlike net/http: the reaper, not a
// deadline, timed the head. The reader holds what came after the head;
// internal/wire copies it out before the handler returns.
func (w *headWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.c, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.c, 64)), nil
}

// answer sends the buffered response and closes the connection.
func (w *headWriter) answer() {
	h := w.Header()
	code := w.status
	if code == 0 {
		code = http.StatusOK
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	bodyOK := code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	if bodyOK {
		if _, ok := h["Content-Type"]; !ok && len(w.body) > 0 {
			h.Set("Content-Type", http.DetectContentType(w.body))
		}
		h.Set("Content-Length", strconv.Itoa(len(w.body)))
	} else {
		w.body = nil
	}
	h.Set("Connection", "close")
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", code, text)
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body)
	if w.timeout > 0 {
		_ = w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	_, _ = w.c.Write(b.Bytes())
	_ = w.c.Close()
}

// handoff is the listener the App's http.Server serves: the connections
// the fast path does not take. Closing it closes the real listener too.
type handoff struct {
	l    net.Listener
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	err  error
}

func newHandoff(l net.Listener) *handoff {
	return &handoff{l: l, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case <-h.done:
		return nil, net.ErrClosed
	case c := <-h.ch:
		return c, nil
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() {
		close(h.done)
		h.err = h.l.Close()
	})
	return h.err
}

func (h *handoff) Addr() net.Addr { return h.l.Addr() }

func (h *handoff) closed() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// give hands c to the http.Server, or closes it once that has stopped.
func (h *handoff) give(c net.Conn) {
	select {
	case h.ch <- c:
	case <-h.done:
		_ = c.Close()
	}
}

// replayConn is a connection handed to net/http after the fast path read
// from it: Read returns those bytes first. net/http's first read deadline
// (its header timeout) is kept no later than the one the head read began
// with, so that the handshake timeout bounds the whole head.
type replayConn struct {
	net.Conn
	pending []byte
	head    time.Time
	clamp   atomic.Bool // the next SetReadDeadline is net/http's first
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *replayConn) SetReadDeadline(t time.Time) error {
	if c.clamp.Swap(false) && !c.head.IsZero() && (t.IsZero() || t.After(c.head)) {
		t = c.head
	}
	return c.Conn.SetReadDeadline(t)
}

// SyscallConn gives the socket to a connection that net/http upgrades
// (internal/wire's non-blocking writes and epoll parking) once the replayed
// bytes have been read: reads that bypass Read must not skip them.
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok || len(c.pending) > 0 {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// CloseWrite and ReadFrom keep what net/http does with a *net.TCPConn
// (a graceful close, sendfile).
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *replayConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
