package ratchet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
)

// Transport carries a connection's messages over something other than the
// WebSocket connections of WsServer: an Engine.IO session (long polling,
// then WebSocket), an event stream. NewTransportConn turns it into a Conn,
// so the Hub, ConnSet and components need not know which transport a Conn
// rides on; the transport only moves bytes.
//
// Two optional interfaces extend it: PublicationWriter, for a transport
// that writes a topic's messages with their topic and position, and
// Interrupter, for one that can cut a write short.
type Transport interface {
	// WriteMessages delivers msgs to the peer, in order. The Conn calls it
	// from one goroutine at a time and only while messages are queued, so it
	// may wait until the peer can take them (a long poll arrives), bounded
	// by the transport's own timeouts; meanwhile Send keeps queueing, up to
	// the send queue. An error ends the connection (OnError receives it).
	// After TransportConn.End it must return promptly.
	WriteMessages(msgs []Message) error
	// Close ends the transport and frees what it holds. The Conn calls it
	// exactly once, when the connection ends for whatever reason, after the
	// last WriteMessages and before OnClose. code and reason are those of
	// Conn.Close, or of the CloseError given to End (StatusGoingAway when
	// the transport otherwise ended), for the peer if the protocol can
	// carry them.
	Close(code StatusCode, reason string) error
}

// PublicationWriter is implemented by a Transport that writes a topic's
// messages with their topic and position: an SSE stream makes the position
// part of each event's id, so that a reconnecting client resumes from it.
// The TransportConn of such a transport is a PublicationSender: the Hub
// hands it each message of a subscribed topic as a Publication
// (SubscribeOptions.Envelope does not apply), and WritePublications takes
// the place of WriteMessages, with its contract. A message given to Send
// arrives as a Publication without Topic.
//
// A Publication whose Message has the zero Type is not a message but a
// note of the transport's own, queued with SendPublication so that it is
// written in order with the messages around it: an SSE stream notes this
// way where a topic starts once its recovery is sent. A note is not
// counted as a message sent; what its fields mean is the transport's.
type PublicationWriter interface {
	// WritePublications is WriteMessages with each message's topic and
	// position. pubs is the Conn's again once it returns (the payloads
	// may be kept).
	WritePublications(pubs []Publication) error
}

// Interrupter is implemented by a Transport that can cut a write short.
// When the send queue overflows, the TransportConn drops what is queued,
// closes with StatusPolicyViolation and calls Interrupt: the messages
// under way are dropped too, as a WebSocket connection stops after the
// frame it is writing, so that a peer that stopped reading does not hold
// its connection until a write timeout. WriteMessages (or
// WritePublications) should then return promptly; Close follows.
// Interrupt runs on the goroutine that called Send: it must not block.
type Interrupter interface {
	Interrupt()
}

// TransportConn is the Conn of a Transport, with the guarantees of a
// WebSocket connection: callbacks in order (OnOpen, each OnMessage, OnError
// for an abnormal end, OnClose exactly once and last), a Send that never
// blocks and fails with ErrSlowConsumer when the send queue is full
// (closing with StatusPolicyViolation), Close with a code, User, Context
// and values.
//
// The transport drives it: Open once, Receive for each message from the
// peer, End when the peer is gone.
type TransportConn struct {
	id        uint64
	component MessageComponent
	t         Transport
	req       keptRequest
	sendQueue int
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed after OnClose
	obs       RouteObserver // Observe; nil: not observed

	// in serializes the callbacks; opened tells Receive that OnOpen ran.
	in     sync.Mutex
	opened bool

	mu          sync.Mutex
	user        string
	queue       []Publication // Send's messages have no Topic
	spare       []Publication // the writer's written batch, reused
	writing     bool          // a writer goroutine owns the transport's write side
	taken       drainSignal   // sendWait waits for the writer to take the queue
	closing     bool          // Close, a failure or End: Send refuses
	finishing   bool          // finish has started (once)
	closeCode   StatusCode
	closeReason string
	cause       error    // for OnError
	hooks       endHooks // Hub memberships, left when the connection ends

	connValues // Set and Get
}

var (
	_ userSetter        = (*TransportConn)(nil)
	_ PublicationSender = (*TransportConn)(nil)
)

// NewTransportConn returns the Conn of t for component. r is the request
// that started the connection (Conn.Request returns copies of it), user its identity ("" for
// anonymous), sendQueue how many messages may wait for the transport
// (DefaultSendQueue if not positive). Call Open next.
func NewTransportConn(component MessageComponent, t Transport, r *http.Request, user string, sendQueue int) *TransportConn {
	if sendQueue <= 0 {
		sendQueue = DefaultSendQueue
	}
	c := &TransportConn{id: newConnID(), component: component, t: t, user: user,
		sendQueue: sendQueue, done: make(chan struct{})}
	c.req.keep(r)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Observe makes the Conn report to o as a WebSocket connection reports to
// its route's RouteObserver: opened, messages in and out, slow consumer,
// panics, write and keepalive timeouts (an End or write error wrapping
// ErrKeepaliveTimeout or a timeout net.Error) and the close code. The
// transport calls it before Open, with the RouteObserver it resolved once
// for all its connections (Observer.Route with its own transport label).
func (c *TransportConn) Observe(o RouteObserver) { c.obs = o }

// Open calls OnOpen. The transport calls it once, before any Receive.
func (c *TransportConn) Open() {
	c.in.Lock()
	defer c.in.Unlock()
	c.opened = true
	if c.obs != nil {
		c.obs.ConnOpened()
	}
	c.call(func() { c.component.OnOpen(c) })
}

// Receive hands one message from the peer to OnMessage, after the ones
// received before it. It returns ErrClosed, without calling OnMessage, once
// the connection is closing or before Open.
func (c *TransportConn) Receive(msg Message) error {
	c.in.Lock()
	defer c.in.Unlock()
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing || !c.opened {
		return ErrClosed
	}
	if c.obs != nil {
		c.obs.MessageIn(len(msg.Data))
	}
	c.call(func() { c.component.OnMessage(c, msg) })
	return nil
}

// End tells the Conn that the transport is gone (the peer left, timed out
// or broke the protocol). What is queued is dropped; err, if not nil, goes
// to OnError; then Transport.Close and OnClose follow, once. Calling End
// again, or after the Conn has closed, does nothing.
//
// A *CloseError is the peer's own close, as a WebSocket peer's close frame:
// its code and reason become the connection's (the close code observed and
// given to Transport.Close), and it goes to OnError only for a code other
// than StatusNormalClosure, StatusGoingAway and StatusNoStatusRcvd. Any
// other error is a broken transport: StatusAbnormalClosure is observed.
func (c *TransportConn) End(err error) {
	code, reason := StatusGoingAway, ""
	var ce *CloseError
	if errors.As(err, &ce) {
		code, reason = ce.Code, ce.Reason
		switch code {
		case StatusNormalClosure, StatusGoingAway, StatusNoStatusRcvd:
			err = nil
		}
	}
	c.mu.Lock()
	if err != nil && c.cause == nil {
		c.cause = err
	}
	if !c.closing {
		c.closing, c.closeCode, c.closeReason = true, code, reason
	}
	c.queue = nil
	start := !c.writing && !c.finishing
	c.finishing = c.finishing || start
	c.mu.Unlock()
	if start {
		go c.finish() // End may run inside a callback; finish waits for it
	}
}

// Done is closed once OnClose has returned.
func (c *TransportConn) Done() <-chan struct{} { return c.done }

// ID implements Conn.
func (c *TransportConn) ID() uint64 { return c.id }

// Request implements Conn: a copy of the request that started the
// connection, rebuilt on each call.
func (c *TransportConn) Request() *http.Request { return c.req.request() }

// RemoteAddr implements Conn.
func (c *TransportConn) RemoteAddr() string { return c.req.remoteAddr() }

// Subprotocol implements Conn; a Transport has none.
func (c *TransportConn) Subprotocol() string { return "" }

// Context implements Conn.
func (c *TransportConn) Context() context.Context { return c.ctx }

func (c *TransportConn) String() string { return fmt.Sprintf("conn#%d(%s)", c.id, c.req.remoteAddr()) }

// User implements Conn.
func (c *TransportConn) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// setUser implements userSetter, for Hub.SetUser.
func (c *TransportConn) setUser(u string) {
	c.mu.Lock()
	c.user = u
	c.mu.Unlock()
}

// Send implements Conn: it queues msg and returns at once.
func (c *TransportConn) Send(msg Message) error { return c.enqueue(Publication{Message: msg}) }

// SendPublication implements PublicationSender: it queues p, with its topic
// and position for a PublicationWriter (see there for notes), and returns
// at once. For any other Transport it is Send(p.Message); the Hub then
// uses Send, honouring SubscribeOptions.Envelope.
func (c *TransportConn) SendPublication(p Publication) error { return c.enqueue(p) }

func (c *TransportConn) enqueue(p Publication) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(c.queue) >= c.sendQueue {
		c.failLocked(ErrSlowConsumer, StatusPolicyViolation, "slow consumer")
		c.queue = nil // cannot be delivered in time; OnError tells
		c.mu.Unlock()
		if c.obs != nil {
			c.obs.SlowConsumer()
		}
		if i, ok := c.t.(Interrupter); ok {
			i.Interrupt()
		}
		return ErrSlowConsumer
	}
	c.queue = append(c.queue, p)
	if c.obs != nil && p.Message.Type != 0 { // not a note (PublicationWriter)
		c.obs.MessageOut(len(p.Message.Data))
	}
	c.startWriterLocked()
	c.mu.Unlock()
	return nil
}

// sendWait is Send once half the send queue or more is free (sendWhenRoom).
func (c *TransportConn) sendWait(ctx context.Context, msg Message) error {
	return c.enqueueWait(ctx, Publication{Message: msg})
}

// enqueueWait queues p once half the send queue or more is free
// (sendWhenRoom): the Hub sends a recovery this way.
func (c *TransportConn) enqueueWait(ctx context.Context, p Publication) error {
	full := func() bool { return len(c.queue) >= max(1, c.sendQueue/2) && !c.closing }
	return sendWhenRoom(ctx, c.ctx.Done(), &c.mu, &c.taken, full, func() error { return c.enqueue(p) })
}

// writesPublications reports whether the Hub should hand c publications
// (SendPublication) rather than messages: its Transport is a
// PublicationWriter.
func (c *TransportConn) writesPublications() bool {
	_, ok := c.t.(PublicationWriter)
	return ok
}

// Close implements Conn: what is queued is written, then the transport is
// closed with code and reason, then OnClose follows.
func (c *TransportConn) Close(code StatusCode, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrClosed
	}
	c.closing, c.closeCode, c.closeReason = true, code, reason
	c.startWriterLocked()
	return nil
}

func (c *TransportConn) failLocked(err error, code StatusCode, reason string) {
	if c.cause == nil {
		c.cause = err
	}
	if !c.closing {
		c.closing, c.closeCode, c.closeReason = true, code, reason
		c.startWriterLocked()
	}
}

func (c *TransportConn) startWriterLocked() {
	if c.writing || c.finishing {
		return
	}
	c.writing = true
	go c.writeLoop()
}

// writeLoop hands the queue to the transport, a batch at a time, and ends
// the connection once it is closing and nothing is left to write. It exits
// when the queue is empty, so an idle connection has no writer goroutine.
func (c *TransportConn) writeLoop() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.writing = false
			finish := c.closing && !c.finishing
			c.finishing = c.finishing || finish
			c.mu.Unlock()
			if finish {
				c.finish()
			}
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.taken.wake()
		c.mu.Unlock()
		err := c.write(batch)
		clear(batch) // the payloads are the transport's now
		c.mu.Lock()
		if cap(batch) <= c.sendQueue { // not one a recovery grew
			c.spare = batch[:0]
		}
		if err != nil {
			if c.cause == nil && !c.closing {
				c.cause = fmt.Errorf("ratchet: write: %w", err)
			}
			c.closing, c.queue = true, nil
			c.taken.wake()
			if c.closeCode == 0 {
				c.closeCode = StatusGoingAway
			}
		}
		c.mu.Unlock()
	}
}

// write hands batch to the transport: whole to a PublicationWriter, as
// messages to any other.
func (c *TransportConn) write(batch []Publication) error {
	if pw, ok := c.t.(PublicationWriter); ok {
		return pw.WritePublications(batch)
	}
	msgs := make([]Message, len(batch)) // the transport's to keep
	for i, p := range batch {
		msgs[i] = p.Message
	}
	return c.t.WriteMessages(msgs)
}

// finish ends the connection: the transport is closed, then OnError (if
// there is a cause) and OnClose run after any callback under way.
func (c *TransportConn) finish() {
	c.mu.Lock()
	code, reason := c.closeCode, c.closeReason
	c.mu.Unlock()
	_ = c.t.Close(code, reason)
	c.in.Lock()
	defer c.in.Unlock()
	c.cancel()
	c.mu.Lock()
	cause := c.cause
	hubs := c.hooks.endLocked()
	c.mu.Unlock()
	leaveHubs(c, hubs)
	if cause != nil {
		c.call(func() { c.component.OnError(c, cause) })
	}
	c.call(func() { c.component.OnClose(c) })
	if c.obs != nil {
		c.observeEnd(cause, code)
	}
	close(c.done)
}

// call runs a callback, turning a panic into a 1011 close and OnError.
func (c *TransportConn) call(f func()) {
	defer func() {
		if v := recover(); v != nil {
			c.mu.Lock()
			c.failLocked(&PanicError{Value: v, Stack: debug.Stack()}, StatusInternalError, "internal error")
			c.mu.Unlock()
			if c.obs != nil {
				c.obs.Panic()
			}
		}
	}()
	f()
}

// observeEnd reports the end of the connection: its cause, if a timeout,
// then the close code (StatusAbnormalClosure when the transport broke).
func (c *TransportConn) observeEnd(cause error, code StatusCode) {
	var ne net.Error
	switch {
	case errors.Is(cause, ErrKeepaliveTimeout):
		c.obs.KeepaliveTimeout()
	case errors.As(cause, &ne) && ne.Timeout():
		c.obs.WriteTimeout()
	}
	if cause != nil && code == StatusGoingAway { // End with an error: the transport broke
		code = StatusAbnormalClosure
	}
	c.obs.ConnClosed(code)
}
