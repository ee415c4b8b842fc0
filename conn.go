package ratchet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/ratchetgo/ratchet/internal/wire"
)

// Conn is one WebSocket connection, as the component sees it (Ratchet's
// ConnectionInterface). All methods are safe for concurrent use.
type Conn interface {
	// ID is unique among the connections of this process (Ratchet's
	// resourceId).
	ID() uint64
	// Send queues msg for the peer and returns at once; it never blocks on
	// the network. It returns ErrClosed once the connection is closing, and
	// ErrSlowConsumer when the send queue is full (the connection is then
	// closed with 1008). Send does not copy msg.Data.
	Send(msg Message) error
	// Close sends what is already queued, then closes with code and reason
	// (cut to maxCloseReason bytes). OnClose follows once the peer has answered or a
	// timeout passed. Close never blocks on the network.
	Close(code StatusCode, reason string) error
	// Request is the HTTP upgrade request: headers, cookies, query, and
	// PathValue for wildcards of the route pattern. Its Context is done; use
	// Conn.Context instead.
	Request() *http.Request
	// RemoteAddr is the peer's network address, as in http.Request.
	RemoteAddr() string
	// Subprotocol is the negotiated subprotocol, "" if none.
	Subprotocol() string
	// User is the identity set by the Authenticator or Hub.SetUser, "" if none.
	User() string
	// Context is done when the connection has ended, just before OnClose.
	Context() context.Context
	// Set stores a value on the connection for the component's use.
	Set(key string, value any)
	// Get returns a value stored with Set.
	Get(key string) (any, bool)
}

var lastConnID atomic.Uint64

// NewConnID returns a connection ID unique in this process, for other
// implementations of Conn (an SSE stream, say) that share a Hub with
// WebSocket connections.
func NewConnID() uint64 { return lastConnID.Add(1) }

// failingCloseWait is how long a peer whose connection is failed (slow
// consumer, invalid data, panic) has to answer the close frame; a clean close
// waits up to coder/websocket's 5 s.
const failingCloseWait = time.Second

// maxCloseReason is the longest close reason, in bytes: a control frame's
// payload is at most 125 bytes (RFC 6455 §5.5), two of them the close code.
const maxCloseReason = 123

// conn is the connection behind Conn. Its run goroutine owns the life cycle:
// it reads, calls every callback, and ends the connection. A writer goroutine
// exists only while there is something to write, and a ping goroutine only
// while a ping awaits its pong.
type conn struct {
	id   uint64
	srv  *WsServer
	ws   *websocket.Conn
	wire *wire.Conn
	req  *http.Request
	// deflate: permessage-deflate was negotiated (without context
	// takeover, see WithCompression). Data frames are encoded here either way
	// (wire.Conn.AppendFrame); coder/websocket writes only control frames.
	deflate bool
	user    atomic.Pointer[string]
	ctx     context.Context
	cancel  context.CancelFunc

	// helpers counts the writer and ping goroutines; Add only under mu while
	// !ended, so the Wait in finish cannot race with it.
	helpers sync.WaitGroup
	ping    *time.Timer

	mu          sync.Mutex
	queue       []outMsg
	spare       []outMsg // the writer's drained slice, reused
	writing     bool     // an inline write or a writer goroutine owns the write side
	inCallback  bool     // the run goroutine is inside OnOpen or OnMessage
	closing     bool     // Close was called or the server failed the conn
	ended       bool     // the run goroutine is finishing: no new helpers
	closeCode   StatusCode
	closeReason string
	cause       error // an explicit failure (slow consumer, panic, ...)
	writeErr    error // the first write error
	readErr     error // why reading stopped, nil for a clean close
	peerClosed  bool  // the peer sent a normal close frame
	values      map[string]any

	rate *rate.Limiter // WithMessageRate; nil: no limit
}

func newConn(s *WsServer, ws *websocket.Conn, wc *wire.Conn, r *http.Request, user string, deflate bool) *conn {
	c := &conn{id: NewConnID(), srv: s, ws: ws, wire: wc, req: r, deflate: deflate}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if user != "" {
		c.user.Store(&user)
	}
	ws.SetReadLimit(s.cfg.readLimit)
	if s.cfg.messageRate > 0 {
		c.rate = rate.NewLimiter(s.cfg.messageRate, s.cfg.messageBurst)
	}
	return c
}

func (c *conn) ID() uint64               { return c.id }
func (c *conn) Request() *http.Request   { return c.req }
func (c *conn) RemoteAddr() string       { return c.req.RemoteAddr }
func (c *conn) Subprotocol() string      { return c.ws.Subprotocol() }
func (c *conn) Context() context.Context { return c.ctx }

func (c *conn) User() string {
	if u := c.user.Load(); u != nil {
		return *u
	}
	return ""
}

// SetUser implements UserSetter.
func (c *conn) SetUser(u string) { c.user.Store(&u) }

func (c *conn) Set(key string, value any) {
	c.mu.Lock()
	if c.values == nil {
		c.values = make(map[string]any)
	}
	c.values[key] = value
	c.mu.Unlock()
}

func (c *conn) Get(key string) (any, bool) {
	c.mu.Lock()
	v, ok := c.values[key]
	c.mu.Unlock()
	return v, ok
}

func (c *conn) String() string { return fmt.Sprintf("conn#%d(%s)", c.id, c.req.RemoteAddr) }

// Send implements Conn.
//
// On an idle plain-TCP connection the message is encoded and written right
// here, without blocking: no goroutine is started per message, which is what
// makes a broadcast cheap. What the socket does not take at once, and
// everything sent while a write is under way or while the connection's own
// callback runs (its replies then leave together), goes through the queue
// and a writer goroutine that lives only while there is a backlog.
func (c *conn) Send(msg Message) error {
	err := c.send(outMsg{msg: msg})
	c.observeSend(len(msg.Data), err)
	return err
}

// outMsg is a message on its way out. shared is set for a broadcast, so
// that its recipients share one compressed payload.
type outMsg struct {
	msg    Message
	shared *sharedPayload
}

// sharedPayload is one broadcast message, compressed at most once, by the
// first recipient that negotiated permessage-deflate.
type sharedPayload struct {
	msg      Message
	once     sync.Once
	deflated []byte
}

func (p *sharedPayload) deflate() []byte {
	p.once.Do(func() { p.deflated = wire.Deflate(p.msg.Data) })
	return p.deflated
}

func (c *conn) send(o outMsg) error {
	c.mu.Lock()
	if c.closing || c.ended {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.writing || c.inCallback || !c.wire.CanTryFlush() {
		if len(c.queue) >= c.srv.cfg.sendQueue {
			c.failLocked(ErrSlowConsumer, StatusPolicyViolation, "slow consumer")
			c.queue = nil // cannot be delivered in time; OnError tells
			c.mu.Unlock()
			return ErrSlowConsumer
		}
		c.queue = append(c.queue, o)
		c.startWriterLocked()
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	c.mu.Unlock()
	c.writeInline(o)
	return nil
}

// writeInline writes msg on the caller's goroutine with one non-blocking
// write, handing any rest to a writer goroutine.
func (c *conn) writeInline(o outMsg) {
	c.wire.HoldNonBlocking()
	done, err := false, c.writeMessage(o)
	if err == nil {
		done, err = c.wire.TryFlush()
	}
	c.mu.Lock()
	if err != nil {
		c.writeFailedLocked(err)
		c.mu.Unlock()
		c.abort(nil)
		return
	}
	if done && len(c.queue) == 0 && !c.closing {
		c.writing = false
		c.mu.Unlock()
		return
	}
	c.writing = false
	c.startWriterLocked() // the rest of the batch, the queue, or the close
	c.mu.Unlock()
}

// Close implements Conn.
func (c *conn) Close(code StatusCode, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.ended {
		return ErrClosed
	}
	c.closeLocked(code, reason)
	return nil
}

func (c *conn) closeLocked(code StatusCode, reason string) {
	if len(reason) > maxCloseReason {
		// cut on a character boundary: a close reason must be UTF-8
		n := maxCloseReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	c.closing, c.closeCode, c.closeReason = true, code, reason
	c.startWriterLocked()
}

// fail closes the connection because of err, which OnError will receive.
func (c *conn) fail(err error, code StatusCode, reason string) {
	c.mu.Lock()
	c.failLocked(err, code, reason)
	c.mu.Unlock()
}

func (c *conn) failLocked(err error, code StatusCode, reason string) {
	if c.cause == nil {
		c.cause = err
	}
	if !c.closing && !c.ended {
		c.closeLocked(code, reason)
	}
}

func (c *conn) startWriterLocked() {
	if c.writing || c.ended {
		return
	}
	c.writing = true
	c.helpers.Add(1)
	go c.writeLoop()
}

// writeLoop drains the queue, a whole batch per socket write, then closes
// the connection if that was asked for. It exits as soon as nothing is left,
// so an idle connection has no writer goroutine.
func (c *conn) writeLoop() {
	defer c.helpers.Done()
	for {
		err := c.wire.Flush() // what an inline write left behind goes first
		c.mu.Lock()
		if err == nil && len(c.queue) == 0 {
			if c.closing {
				code, reason := c.closeCode, c.closeReason
				failing := c.cause != nil
				c.mu.Unlock()
				if failing {
					// A misbehaving peer gets less time to answer our close.
					_ = c.wire.SetReadDeadline(time.Now().Add(failingCloseWait))
				}
				// The handshake waits for the peer's close frame (coder
				// bounds it at 5 s); writing stays true so no writer restarts.
				_ = c.ws.Close(websocket.StatusCode(code), reason)
				return
			}
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue = c.spare[:0]
		c.mu.Unlock()

		if err == nil {
			err = c.writeBatch(batch)
		}
		clear(batch)
		c.mu.Lock()
		c.spare = batch[:0]
		if err != nil {
			c.writeFailedLocked(err)
		}
		c.mu.Unlock()
		if err != nil {
			c.abort(nil) // the socket is unusable; the reader ends
			return
		}
	}
}

func (c *conn) writeFailedLocked(err error) {
	c.writing = false
	if c.writeErr == nil {
		c.observeWriteErr(err)
		c.writeErr = fmt.Errorf("ratchet: write: %w", err)
	}
}

func (c *conn) writeBatch(batch []outMsg) error {
	c.wire.Hold()
	for _, o := range batch {
		if err := c.writeMessage(o); err != nil {
			_ = c.wire.Flush()
			return err
		}
	}
	return c.wire.Flush()
}

// writeMessage puts one message in the held batch, its frame encoded
// straight into it. With permessage-deflate, payloads of DeflateMin bytes
// and more go compressed; a broadcast's payload is compressed once for all.
func (c *conn) writeMessage(o outMsg) error {
	m := o.msg
	if !c.deflate || len(m.Data) < wire.DeflateMin {
		return c.wire.AppendFrame(byte(m.Type), false, m.Data)
	}
	var payload []byte
	if o.shared != nil {
		payload = o.shared.deflate()
	} else {
		payload = wire.Deflate(m.Data)
	}
	return c.wire.AppendFrame(byte(m.Type), true, payload)
}

// abort ends the connection at once, without a close handshake: for peers
// that are gone or stuck. err, if not nil, goes to OnError.
func (c *conn) abort(err error) {
	c.mu.Lock()
	if err != nil && c.cause == nil {
		c.cause = err
	}
	c.closing = true
	c.mu.Unlock()
	_ = c.wire.Close()
}

func (c *conn) armKeepalive() {
	if c.srv.cfg.keepaliveInterval <= 0 {
		return
	}
	c.mu.Lock()
	c.ping = time.AfterFunc(c.srv.cfg.keepaliveInterval, c.keepalive)
	c.mu.Unlock()
}

// keepalive runs on the ping timer's own goroutine: one ping, then re-arm.
func (c *conn) keepalive() {
	c.mu.Lock()
	if c.ended || c.closing {
		c.mu.Unlock()
		return
	}
	c.helpers.Add(1)
	c.mu.Unlock()
	defer c.helpers.Done()

	ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.keepaliveTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			if o := c.srv.obs; o != nil {
				o.KeepaliveTimeout()
			}
			c.abort(ErrKeepaliveTimeout)
		}
		return
	}
	c.mu.Lock()
	if !c.ended {
		c.ping.Reset(c.srv.cfg.keepaliveInterval)
	}
	c.mu.Unlock()
}

// run is the connection's life: OnOpen, the read loop, then the end.
func (c *conn) run() {
	defer c.srv.remove(c)
	c.armKeepalive()
	if c.callInput(func() { c.srv.component.OnOpen(c) }) {
		c.readLoop()
	}
	c.finish()
}

func (c *conn) readLoop() {
	ctx := context.Background() // no cancel: coder arms no timer per read
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err != nil {
			c.readFailed(err)
			return
		}
		data, err := readMessage(r)
		if err != nil {
			c.readFailed(err)
			return
		}
		if typ == websocket.MessageText && !utf8.Valid(data) {
			c.fail(ErrInvalidUTF8, StatusInvalidPayload, "invalid UTF-8")
			return
		}
		if o := c.srv.obs; o != nil {
			o.MessageIn(len(data))
		}
		if c.rate != nil && !c.rate.Allow() {
			c.fail(ErrMessageRate, StatusPolicyViolation, "message rate exceeded")
			return
		}
		msg := Message{Type: MessageType(typ), Data: data}
		if !c.callInput(func() { c.srv.component.OnMessage(c, msg) }) {
			return
		}
	}
}

var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// readMessage reads one message into a pooled buffer and returns an exact
// copy, the one allocation per message, owned by the component.
func readMessage(r io.Reader) ([]byte, error) {
	bp := readPool.Get().(*[]byte)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	data := make([]byte, len(b))
	copy(data, b)
	if cap(b) <= 1<<20 {
		*bp = b[:0]
		readPool.Put(bp)
	}
	return data, nil
}

// readFailed records why reading stopped; finish decides whether it is the
// cause to report or a consequence of another one.
func (c *conn) readFailed(err error) {
	var readErr error
	switch code := StatusCode(websocket.CloseStatus(err)); {
	case code == StatusNormalClosure || code == StatusGoingAway || code == StatusNoStatusRcvd:
		readErr = nil
	case errors.Is(err, websocket.ErrMessageTooBig):
		readErr = &CloseError{Code: StatusMessageTooBig, Reason: "message over the read limit"}
	case code != -1:
		var ce websocket.CloseError
		errors.As(err, &ce)
		readErr = &CloseError{Code: code, Reason: ce.Reason}
	default:
		readErr = fmt.Errorf("ratchet: connection lost: %w", err)
	}
	c.mu.Lock()
	c.readErr, c.peerClosed = readErr, readErr == nil
	c.mu.Unlock()
}

// callInput runs OnOpen or OnMessage. Sends made meanwhile go to the queue
// and a writer goroutine instead of being written inline, so that the
// replies to a burst of input tend to leave in one write.
func (c *conn) callInput(f func()) bool {
	c.mu.Lock()
	c.inCallback = true
	c.mu.Unlock()
	ok := c.call(f)
	c.mu.Lock()
	c.inCallback = false
	c.mu.Unlock()
	return ok
}

// call runs a callback, turning a panic into a 1011 close and OnError.
func (c *conn) call(f func()) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if o := c.srv.obs; o != nil {
				o.Panic()
			}
			c.fail(&PanicError{Value: v, Stack: debug.Stack()}, StatusInternalError, "internal error")
			ok = false
		}
	}()
	f()
	return true
}

// finish ends the connection: let a close handshake under way complete, free
// the socket, wait for the helper goroutines, then OnError and OnClose.
func (c *conn) finish() {
	c.mu.Lock()
	c.ended = true
	closing := c.closing
	ping := c.ping
	c.mu.Unlock()
	if ping != nil {
		ping.Stop()
	}
	if !closing {
		_ = c.wire.Close() // the peer ended it: nothing more can be delivered
	}
	c.helpers.Wait() // a closing writer finishes its handshake, bounded by timeouts
	_ = c.ws.CloseNow()
	c.cancel()

	c.mu.Lock()
	cause := c.endCauseLocked()
	c.queue = nil
	c.mu.Unlock()
	comp := c.srv.component
	if cause != nil && !c.call(func() { comp.OnError(c, cause) }) {
		c.srv.cfg.log().Error("ratchet: panic in OnError", "conn", c.id)
	}
	if !c.call(func() { comp.OnClose(c) }) {
		c.srv.cfg.log().Error("ratchet: panic in OnClose", "conn", c.id)
	}
}

// endCauseLocked picks what OnError hears: an explicit failure first, then a
// write error (unless the peer had closed cleanly), then a read error unless
// the server itself was closing.
func (c *conn) endCauseLocked() error {
	switch {
	case c.cause != nil:
		return c.cause
	case c.peerClosed:
		return nil
	case c.writeErr != nil:
		return c.writeErr
	case c.closing:
		return nil
	}
	return c.readErr
}
