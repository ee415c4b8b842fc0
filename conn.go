package ratchet

import (
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
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
	// (cut to maxCloseReason bytes). OnClose follows once the peer has
	// answered or a timeout passed; messages that arrive meanwhile do not
	// reach OnMessage. Close never blocks on the network.
	Close(code StatusCode, reason string) error
	// Request is the HTTP upgrade request as the handler got it (its
	// URL.Path stripped by http.StripPrefix, say): headers, cookies, query,
	// RemoteAddr, TLS, and PathValue for wildcards of the route pattern.
	// Each call returns a new copy, rebuilt from a compact form that the
	// connection keeps instead of the request (a few microseconds: read what
	// OnMessage needs once, in OnOpen): changes to it are not seen by later
	// calls, its Body is empty and its Form unparsed. Its Context has the
	// values of the request's context (set by middleware, say) but is done;
	// use Conn.Context instead.
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

// connValues holds the values of Conn.Set and Conn.Get, for every
// implementation of Conn in this package.
type connValues struct {
	valuesMu sync.Mutex
	values   map[string]any
}

// Set implements Conn.
func (v *connValues) Set(key string, value any) {
	v.valuesMu.Lock()
	if v.values == nil {
		v.values = make(map[string]any)
	}
	v.values[key] = value
	v.valuesMu.Unlock()
}

// Get implements Conn.
func (v *connValues) Get(key string) (any, bool) {
	v.valuesMu.Lock()
	val, ok := v.values[key]
	v.valuesMu.Unlock()
	return val, ok
}

var lastConnID atomic.Uint64

// newConnID returns a connection ID unique in this process, for every
// implementation of Conn in this package (WebSocket connections and
// TransportConns share one sequence).
func newConnID() uint64 { return lastConnID.Add(1) }

// How long the peer has to answer the close frame: a clean close waits as
// long as coder/websocket's own close handshake; a peer whose connection is
// failed (slow consumer, invalid data, panic) gets less.
const (
	closeWait        = 5 * time.Second
	failingCloseWait = time.Second
)

// maxCloseReason is the longest close reason, in bytes: a control frame's
// payload is at most 125 bytes (RFC 6455 §5.5), two of them the close code.
const maxCloseReason = 123

// conn is the connection behind Conn. Its run goroutine owns the life cycle:
// it reads, calls every callback, and ends the connection. A writer goroutine
// exists only while there is something to write.
//
// Every frame but the close frame is written here: data frames, and the
// pings and pongs that coder/websocket would otherwise write itself,
// blocking its reader (and, through the socket, anyone else) on a peer that
// does not read. A pong is owed like a message: written inline when the
// write side is free, else by the writer, ahead of the queue.
type conn struct {
	id   uint64
	srv  *WsServer
	ws   *websocket.Conn
	wire *wire.Conn
	req  keptRequest
	user atomic.Pointer[string]

	// dropping: the send queue overflowed. The writer drops the messages it
	// has not written yet, so that the close frame goes right after the one
	// under way.
	dropping atomic.Bool
	// deflate: permessage-deflate was negotiated (without context
	// takeover, see WithCompression). Frames are encoded here either way
	// (wire.Conn.AppendFrame); coder/websocket writes only close frames.
	// Next to dropping, in its padding: conn fits the 416-byte size class.
	deflate bool
	// parks: the socket can wait in the poller between messages (Linux,
	// plain TCP), so run returns once the connection is idle.
	parks bool

	// helpers counts the writer goroutine and a keepalive timer writing a
	// ping; Add only under mu while !ended, so the Wait in finish cannot race
	// with it.
	helpers sync.WaitGroup
	kaDue   atomic.Int64 // monoNow when the keepalive sweep sends a ping or ends a conn whose pong is overdue; 0: none

	mu          sync.Mutex
	queue       []outMsg
	spare       []outMsg    // the writer's drained slice, reused
	writing     bool        // an inline write or a writer goroutine owns the write side
	drained     drainSignal // the reader (and sendWait) wait for the writer to take the queue
	inCallback  bool        // the run goroutine is inside OnOpen or OnMessage
	closing     bool        // Close was called or the server failed the conn
	ended       bool        // the run goroutine is finishing: no new helpers
	closeCode   StatusCode
	closeReason string
	cause       error              // an explicit failure (slow consumer, panic, ...)
	writeErr    error              // the first write error
	readErr     error              // why reading stopped, nil for a clean close
	peerClosed  bool               // the peer sent a normal close frame
	ctxDone     bool               // finish has canceled ctx, or will cancel it when made (next to a bool: no padding)
	ctx         context.Context    // Context, made on first use
	cancel      context.CancelFunc // nil until ctx is made
	connValues                     // Set and Get
	hooks       endHooks           // Hub memberships, left when the connection ends

	// Control frames owed to the peer, written ahead of the queue.
	pong     []byte // payload of the peer's latest ping: one pong answers them all (RFC 6455 §5.5.3)
	pongDue  bool
	pingDue  bool   // a keepalive ping is to be written
	awaiting bool   // that ping's pong has not come yet (next to the bools: no padding)
	pingSeq  uint64 // payload of the last keepalive ping

	out control // taken by the owner of the write side, not under mu

	rate *rate.Limiter // WithMessageRate; nil: no limit

	// release frees the connection's slots of WithMaxConns and
	// WithMaxConnsPerIP; set before run starts, called by finish.
	release func()
}

// acceptOptions are s's options for coder/websocket's Accept, with the
// hooks that hand c the peer's pings and pongs.
func (c *conn) acceptOptions(s *WsServer) *websocket.AcceptOptions {
	o := s.accept
	o.OnPingReceived, o.OnPongReceived = c.onPing, c.onPong
	return &o
}

// start completes c once the handshake is done.
func (c *conn) start(s *WsServer, ws *websocket.Conn, wc *wire.Conn, r *http.Request, user string, deflate bool) {
	c.id, c.srv, c.ws, c.wire, c.deflate = newConnID(), s, ws, wc, deflate
	c.req.keep(r)
	if user != "" {
		c.user.Store(&user)
	}
	ws.SetReadLimit(s.cfg.readLimit)
	c.parks = wc.Watch(c.resume) // before anyone else can close the socket
	if s.cfg.messageRate > 0 {
		c.rate = rate.NewLimiter(s.cfg.messageRate, s.cfg.messageBurst)
	}
}

func (c *conn) ID() uint64             { return c.id }
func (c *conn) Request() *http.Request { return c.req.request() }
func (c *conn) RemoteAddr() string     { return c.req.remoteAddr() }
func (c *conn) Subprotocol() string    { return c.ws.Subprotocol() }

// Context is made on first use: most connections never ask for it, and it
// costs an idle connection a quarter of a kilobyte.
func (c *conn) Context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
		if c.ctxDone {
			c.cancel()
		}
	}
	return c.ctx
}

func (c *conn) User() string {
	if u := c.user.Load(); u != nil {
		return *u
	}
	return ""
}

// setUser implements userSetter.
func (c *conn) setUser(u string) { c.user.Store(&u) }

func (c *conn) String() string { return fmt.Sprintf("conn#%d(%s)", c.id, c.req.remoteAddr()) }

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
// first recipient that negotiated permessage-deflate, and encoded as a frame
// at most once, by the first that did not: every recipient whose write side
// is free writes that frame straight from it (wire.Conn.TryWriteFrame).
type sharedPayload struct {
	msg      Message
	once     sync.Once
	deflated []byte

	frameOnce sync.Once
	frame     []byte
}

// encoded returns the message as one uncompressed frame.
func (p *sharedPayload) encoded() []byte {
	p.frameOnce.Do(func() {
		f := make([]byte, 0, wire.MaxHeader+len(p.msg.Data))
		f = wire.AppendHeader(f, byte(p.msg.Type), false, len(p.msg.Data))
		p.frame = append(f, p.msg.Data...)
	})
	return p.frame
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
			c.dropping.Store(true)
			c.wakeReaderLocked()
			c.mu.Unlock()
			return ErrSlowConsumer
		}
		c.queue = append(c.queue, o)
		c.startWriterLocked()
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	c.helpers.Add(1) // finish waits for this write, and for the close frame it may hand on
	c.takeControlLocked()
	c.mu.Unlock()
	c.writeInline(&o)
	c.helpers.Done()
	return nil
}

// writeInline writes the control frames taken and o (if not nil) on the
// caller's goroutine with one non-blocking write, handing any rest to a
// writer goroutine.
func (c *conn) writeInline(o *outMsg) {
	var done bool
	var err error
	if o != nil && o.shared != nil && !c.out.pongDue && !c.out.ping && !c.compresses(o.msg) {
		// A broadcast to an idle connection: its frame, encoded once for
		// every recipient, goes out as it is.
		done, err = c.wire.TryWriteFrame(o.shared.encoded())
	} else {
		c.wire.HoldNonBlocking()
		err = c.writeControl()
		if err == nil && o != nil {
			err = c.writeMessage(*o)
		}
		if err == nil {
			done, err = c.wire.TryFlush()
		}
	}
	c.mu.Lock()
	if err != nil {
		c.writeFailedLocked(err)
		c.mu.Unlock()
		c.abort(nil)
		return
	}
	if done && len(c.queue) == 0 && !c.closing && !c.controlDueLocked() {
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
	// A close reason must be UTF-8 (and internal/wire takes one that is not
	// for the peer's, echoed).
	reason = strings.ToValidUTF8(reason, "")
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

// startWriterLocked starts a writer goroutine unless one owns the write
// side. Once the connection has ended, only a close frame still owed gets
// one: an inline write that held the write side when the connection failed
// hands it on from here, while finish waits for that write.
func (c *conn) startWriterLocked() {
	if c.writing || (c.ended && !c.closing) {
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
		if err == nil && len(c.queue) == 0 && !c.controlDueLocked() {
			if c.closing {
				code, reason := c.closeCode, c.closeReason
				failing := c.cause != nil
				c.mu.Unlock()
				// writing stays true: nothing may follow the close frame
				c.writeClose(code, reason, failing)
				return
			}
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.takeControlLocked()
		batch := c.queue
		c.queue = c.spare[:0]
		c.wakeReaderLocked()
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

// writeClose writes the close frame, after all that was queued before it,
// and gives the peer a while to answer. The close handshake is not
// coder/websocket's Close: that one reads the answer itself, while the
// connection's reader may be in the middle of a message, and the two
// readers would take each other's bytes. Here the reader alone reads on,
// until the peer's close frame (coder/websocket then ends the connection)
// or the deadline.
func (c *conn) writeClose(code StatusCode, reason string, failing bool) {
	err := c.wire.AppendFrame(wire.OpClose, false, closePayload(code, reason))
	if errors.Is(err, net.ErrClosed) {
		err = nil // coder/websocket has sent one: the peer's echo, or a protocol error
	}
	if err != nil {
		c.mu.Lock()
		c.writeFailedLocked(err)
		c.mu.Unlock()
		c.abort(nil)
		return
	}
	wait := closeWait
	if failing {
		wait = failingCloseWait
	}
	_ = c.wire.SetReadDeadline(time.Now().Add(wait))
	c.wakeReader()
}

// closePayload is the body of a close frame. A code that may not be sent
// becomes 1011 without a reason, as coder/websocket's Close does.
func closePayload(code StatusCode, reason string) []byte {
	if !sendable(code) {
		code, reason = StatusInternalError, ""
	}
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code)), reason...)
}

// Close codes a close frame may carry (RFC 6455 §7.4 and its IANA
// registry): the defined ones but 1004 (reserved) and those only reported
// (1005, 1006, 1015), and the range of libraries and applications.
const (
	statusReserved     StatusCode = 1004
	statusLastDefined  StatusCode = 1014
	statusFirstPrivate StatusCode = 3000
	statusLastPrivate  StatusCode = 4999
)

func sendable(code StatusCode) bool {
	if code >= StatusNormalClosure && code <= statusLastDefined {
		return code != statusReserved && code != StatusNoStatusRcvd && code != StatusAbnormalClosure
	}
	return code >= statusFirstPrivate && code <= statusLastPrivate
}

func (c *conn) writeFailedLocked(err error) {
	c.writing = false
	if c.writeErr == nil {
		c.observeWriteErr(err)
		c.writeErr = fmt.Errorf("ratchet: write: %w", err)
	}
	c.wakeReaderLocked()
}

// wakeReaderLocked lets a reader waiting in holdBackLocked, and senders in
// sendWait, check again.
func (c *conn) wakeReaderLocked() { c.drained.wake() }

// holdBackLocked runs on the reader after each callback. Replies to a
// burst of input must not outrun the peer: while half the send queue or
// more waits to be written, the reader stops, until the writer has taken
// the queue (or the connection failed). A client that writes far ahead of
// what it reads is slowed down, as TCP would, instead of overflowing its
// queue; the queue's other half is for sends from other goroutines.
func (c *conn) holdBackLocked() {
	for c.queueHighLocked() {
		ch := c.drained.channel()
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
}

// queueHighLocked reports whether half the send queue or more waits for a
// writer that can still write it.
func (c *conn) queueHighLocked() bool {
	return len(c.queue) >= max(1, c.srv.cfg.sendQueue/2) && c.writeErr == nil
}

// sendWait is Send once half the send queue or more is free (sendWhenRoom).
func (c *conn) sendWait(ctx context.Context, msg Message) error {
	full := func() bool { return c.queueHighLocked() && !c.closing && !c.ended }
	return sendWhenRoom(ctx, c.Context().Done(), &c.mu, &c.drained, full, func() error { return c.Send(msg) })
}

func (c *conn) writeBatch(batch []outMsg) error {
	c.wire.Hold()
	err := c.writeControl()
	for i := 0; i < len(batch) && err == nil && !c.dropping.Load(); i++ {
		err = c.writeMessage(batch[i])
	}
	if err != nil {
		_ = c.wire.Flush()
		return err
	}
	return c.wire.Flush()
}

// control is the control frames taken for one write.
type control struct {
	pong    []byte
	pongDue bool
	ping    bool
	pingSeq uint64
}

func (c *conn) controlDueLocked() bool { return c.pongDue || c.pingDue }

// takeControlLocked moves the control frames due to c.out, for the
// goroutine that owns the write side (it set writing).
func (c *conn) takeControlLocked() {
	if !c.controlDueLocked() {
		return
	}
	c.out = control{pong: c.pong, pongDue: c.pongDue, ping: c.pingDue, pingSeq: c.pingSeq}
	c.pong, c.pongDue, c.pingDue = nil, false, false
}

// writeControl puts the control frames taken in the held batch. It runs on
// the owner of the write side; c.out passes from owner to owner under mu.
func (c *conn) writeControl() error {
	if !c.out.pongDue && !c.out.ping {
		return nil
	}
	ctl := c.out
	c.out = control{}
	if ctl.pongDue {
		if err := c.wire.AppendFrame(wire.OpPong, false, ctl.pong); err != nil {
			return err
		}
	}
	if ctl.ping {
		var p [8]byte
		binary.BigEndian.PutUint64(p[:], ctl.pingSeq)
		return c.wire.AppendFrame(wire.OpPing, false, p[:])
	}
	return nil
}

// writeControlUnlock has the control frames just made due written: inline
// when the write side is free, else by the writer. It unlocks mu.
func (c *conn) writeControlUnlock() {
	if c.writing || !c.wire.CanTryFlush() {
		c.startWriterLocked()
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.takeControlLocked()
	c.mu.Unlock()
	c.writeInline(nil)
}

// onPing is coder/websocket's OnPingReceived hook, called by the reader: the
// pong is owed like a message instead of written by coder/websocket, so
// that the reader never waits on the socket. Pings that arrive faster than
// the peer takes the pongs share one pong, the latest.
func (c *conn) onPing(_ context.Context, p []byte) bool {
	c.mu.Lock()
	if c.closing || c.ended {
		c.mu.Unlock()
		return false // the close frame is next
	}
	c.pong = append(c.pong[:0], p...)
	c.pongDue = true
	c.writeControlUnlock()
	return false
}

// onPong is coder/websocket's OnPongReceived hook: the answer to the last
// keepalive ping schedules the next one.
func (c *conn) onPong(_ context.Context, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.awaiting || len(p) != 8 || binary.BigEndian.Uint64(p) != c.pingSeq {
		return
	}
	c.awaiting = false
	if !c.ended {
		c.kaDue.Store(monoNow() + int64(c.srv.cfg.keepaliveInterval))
	}
}

// writeMessage puts one message in the held batch, its frame encoded
// straight into it. With permessage-deflate, payloads of DeflateMin bytes
// and more go compressed; a broadcast's payload is compressed once for all.
func (c *conn) writeMessage(o outMsg) error {
	m := o.msg
	if !c.compresses(m) {
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

// compresses reports whether m goes out compressed on c.
func (c *conn) compresses(m Message) bool { return c.deflate && len(m.Data) >= wire.DeflateMin }

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
	if !c.ended {
		c.kaDue.Store(monoNow() + int64(c.srv.cfg.keepaliveInterval))
	}
	c.mu.Unlock()
	c.srv.startSweep()
}

// keepalive runs on the keepalive sweep's goroutine (see keepaliveSweep)
// once kaDue has passed: it ends the connection when the last ping is still
// unanswered, else owes the peer a new ping and gives it the keepalive
// timeout to answer (onPong).
func (c *conn) keepalive(now int64) {
	c.mu.Lock()
	if due := c.kaDue.Load(); c.ended || c.closing || due == 0 || now < due {
		c.mu.Unlock()
		return
	}
	if c.awaiting {
		c.mu.Unlock()
		if o := c.srv.obs; o != nil {
			o.KeepaliveTimeout()
		}
		c.abort(ErrKeepaliveTimeout)
		return
	}
	c.pingSeq++
	c.awaiting, c.pingDue = true, true
	c.kaDue.Store(now + int64(c.srv.cfg.keepaliveTimeout))
	c.helpers.Add(1) // an inline write may follow on this goroutine
	defer c.helpers.Done()
	c.writeControlUnlock()
}

// run is the connection's life: OnOpen, then reading, then the end.
func (c *conn) run() {
	c.armKeepalive()
	if !c.callInput(func() { c.srv.component.OnOpen(c) }, false) {
		c.end()
		return
	}
	c.read(false)
}

// resume is the reader of a parked connection, run by the poller once input
// has arrived (or a close needs a reader).
func (c *conn) resume() { c.read(true) }

// end finishes the connection and takes it off the server: the last thing
// its reader does.
func (c *conn) end() {
	c.finish()
	c.srv.remove(c)
}

// read is the connection's reader: it reads and handles messages, one at a
// time, until no input is buffered, then parks the connection (see
// wire.Conn.Park) and returns, so that an idle connection holds no
// goroutine; the poller runs read again on a new goroutine when input
// arrives. Where parking is not available, it blocks for the next message,
// as the reader goroutine of the connection's whole life. When reading
// stops for good, read ends the connection. woken: input is there (or a
// close needs a reader): read before parking again.
func (c *conn) read(woken bool) {
	ctx := context.Background() // no cancel: coder arms no timer per read
	budget := wireBudget(c.srv.cfg.readLimit)
	linger := time.Duration(0) // none before the first message: most connections stay idle
	for {
		if !woken && c.park(linger) {
			return
		}
		woken, linger = false, parkLinger
		if !c.readOne(ctx, budget) {
			c.end()
			return
		}
	}
}

// parkLinger is how long a reader that has just handled a message waits
// for the next one before parking its connection: a busy connection (an
// echo, a chat in full swing) keeps its reader, at the cost of a goroutine
// for that long after its last message.
const parkLinger = 20 * time.Millisecond

// park parks the connection unless it is closing: then the reader reads
// on, blocking, to the peer's answer or the close deadline. A Close after
// the park wakes a reader (wakeReader); one before it was seen here.
func (c *conn) park(linger time.Duration) bool {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing || !c.wire.ParkAfter(linger) {
		return false
	}
	c.mu.Lock()
	closing = c.closing
	c.mu.Unlock()
	if closing {
		c.wire.Wake() // closing came between the two checks; its wake may have missed the park
	}
	return true
}

// wakeReader makes sure a reader runs, for the close handshake: a parked
// connection has none to read the peer's answer or to notice the deadline.
func (c *conn) wakeReader() { c.wire.Wake() }

// readOne reads one message and hands it to OnMessage; false means reading
// has stopped.
func (c *conn) readOne(ctx context.Context, budget int64) bool {
	typ, r, err := c.ws.Reader(ctx)
	if err != nil {
		c.readFailed(err)
		return false
	}
	c.wire.LimitRead(budget)
	data, err := readMessage(r)
	c.wire.LimitRead(0)
	if err != nil {
		c.readFailed(err)
		return false
	}
	if typ == websocket.MessageText && !utf8.Valid(data) {
		c.fail(ErrInvalidUTF8, StatusInvalidPayload, "invalid UTF-8")
		return false
	}
	if o := c.srv.obs; o != nil {
		o.MessageIn(len(data))
	}
	if c.rate != nil && !c.rate.Allow() {
		c.fail(ErrMessageRate, StatusPolicyViolation, "message rate exceeded")
		return false
	}
	msg := Message{Type: MessageType(typ), Data: data}
	return c.callInput(func() { c.srv.component.OnMessage(c, msg) }, true)
}

// wireSlack is what a message may take on the wire beyond twice the read
// limit: frame headers and control frames between its fragments.
const wireSlack = 4 << 10

// wireBudget is how many bytes one message may take on the wire, frames
// and control frames between its fragments included (0: no bound). Twice
// the read limit lets any sane framing or compression of a message within
// the limit through; it stops a message of a million empty fragments, or
// of megabytes of deflate blocks that inflate to nothing, which the read
// limit alone (on the payload) lets pass.
func wireBudget(readLimit int64) int64 {
	if readLimit < 0 {
		return 0
	}
	return 2*readLimit + wireSlack
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

// readFailed records why reading stopped. A peer that closed or went away
// is recorded for finish, which decides whether it is the cause to report
// or a consequence of another one. A peer that broke the protocol has the
// connection failed with the code that says how, unless it was closing
// already (coder/websocket may have sent that close frame itself).
func (c *conn) readFailed(err error) {
	c.wire.LimitRead(0) // the close handshake reads on
	var readErr, broken error
	var ce websocket.CloseError
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &ce) && !utf8.ValidString(ce.Reason):
		// internal/wire has turned coder's echo of it into a 1007
		broken = &CloseError{Code: StatusInvalidPayload, Reason: "invalid UTF-8 in close reason"}
	case errors.As(err, &ce):
		switch code := StatusCode(ce.Code); code {
		case StatusNormalClosure, StatusGoingAway, StatusNoStatusRcvd:
		default:
			readErr = &CloseError{Code: code, Reason: ce.Reason}
		}
	case errors.Is(err, websocket.ErrMessageTooBig), c.wire.LimitReached():
		broken = &CloseError{Code: StatusMessageTooBig, Reason: "message over the read limit"}
	case c.wire.SocketFailed(), errors.Is(err, net.ErrClosed):
		readErr = fmt.Errorf("ratchet: connection lost: %w", err)
	case errors.As(err, &corrupt):
		broken = fmt.Errorf("%w: %w", &CloseError{Code: StatusInvalidPayload, Reason: "invalid compressed data"}, err)
	default: // a frame coder/websocket refused
		broken = fmt.Errorf("%w: %w", &CloseError{Code: StatusProtocolError, Reason: "invalid frame"}, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if broken != nil && !c.closing {
		var bc *CloseError
		errors.As(broken, &bc)
		c.failLocked(broken, bc.Code, bc.Reason)
		return
	}
	if broken != nil {
		readErr = broken
	}
	c.readErr, c.peerClosed = readErr, readErr == nil
}

// callInput runs OnOpen or OnMessage; with unlessClosing, not once the
// connection is closing (the reader reads on to the peer's close frame, and
// the component is done). Sends made meanwhile go to the queue and a writer
// goroutine instead of being written inline, so that the replies to a
// burst of input tend to leave in one write; then the reader holds back
// while they are many.
func (c *conn) callInput(f func(), unlessClosing bool) bool {
	c.mu.Lock()
	if unlessClosing && c.closing {
		c.mu.Unlock()
		return true
	}
	c.inCallback = true
	c.mu.Unlock()
	ok := c.call(f)
	c.mu.Lock()
	c.inCallback = false
	c.holdBackLocked()
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
	c.kaDue.Store(0)
	c.mu.Unlock()
	if !closing {
		_ = c.wire.Close() // the peer ended it: nothing more can be delivered
	}
	c.helpers.Wait() // a closing writer has written the close frame (or failed)
	if closing {
		// The reader may have stopped before the peer's answer (a failed
		// message, a panic): with no reader left, coder/websocket's Close
		// can read on to it, until the deadline set when the close frame
		// went out, so that the peer is not reset with input unread. Its
		// own close frame is dropped (internal/wire); it returns at once if
		// the handshake is over.
		_ = c.ws.Close(websocket.StatusNormalClosure, "")
	}
	_ = c.ws.CloseNow()
	c.mu.Lock()
	c.ctxDone = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if c.release != nil {
		c.release()
	}

	c.mu.Lock()
	cause := c.endCauseLocked()
	c.queue = nil
	hubs := c.hooks.endLocked()
	c.mu.Unlock()
	leaveHubs(c, hubs)
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
