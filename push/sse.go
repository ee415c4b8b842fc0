package push

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/lifecycle"
)

// SSE is an http.Handler streaming Hub topics as Server-Sent Events, for the
// browser's EventSource:
//
//	hub := ratchet.NewHub()
//	events := push.NewSSE(hub)
//	app.Handle("/events", events) // no method: it answers the others itself
//
//	// in the browser
//	const es = new EventSource("/events?topic=news&topic=weather");
//	es.onmessage = e => console.log(e.data);
//
// Register it without a method in the pattern, as above: it answers
// methods other than GET with a JSON 405 itself, where a "GET /events"
// pattern would leave a POST to the mux's plain-text 405.
//
// Each stream is a ratchet.Conn added to the Hub, so Publish, Broadcast and
// PublishToUser reach it like any WebSocket connection. See the package
// documentation for the event format.
//
// net/http's Server.Shutdown waits for running handlers, and a stream runs
// until its client leaves: call SSE.Shutdown first. App.Shutdown does so for
// an SSE given to App.Handle.
type SSE struct {
	hub *ratchet.Hub
	cfg config
	obs ratchet.RouteObserver // WithObserver; nil: not observed

	streams ratchet.ConnSet
	life    lifecycle.Group // streams whose handler has not returned
}

// maxLastEventID is the largest Last-Event-ID a stream counts on from; a
// larger one starts over at 1. It is the largest integer JavaScript numbers
// hold exactly, and leaves room for more events than a stream can carry:
// ids never wrap.
const maxLastEventID = 1<<53 - 1

// NewSSE returns an SSE handler for the topics of hub.
func NewSSE(hub *ratchet.Hub, opts ...Option) *SSE {
	s := &SSE{hub: hub, cfg: newConfig(opts)}
	if s.cfg.observer != nil {
		s.obs = s.cfg.observer.Route(s.cfg.route, TransportSSE)
	}
	return s
}

// reject reports a refused request.
func (s *SSE) reject(reason ratchet.RejectReason) {
	if s.obs != nil {
		s.obs.HandshakeRejected(reason)
	}
}

// ServeHTTP serves one stream. Refusals are JSON errors sent before the
// stream starts (see the package documentation): 405 for methods other than
// GET, 401 from the authentication hook, 400 for an invalid topic or too
// many, 403 from the Authorizer, 503 after Shutdown or when the Hub fails.
//
// The stream's first bytes (the retry: field, or a comment) are sent once
// its subscriptions are in effect. It ends when the client goes away, when
// its queue overflows (ratchet.ErrSlowConsumer), when a write takes longer
// than the write timeout, on Conn.Close (after what is queued), or on
// Shutdown.
func (s *SSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET", nil)
		return
	}
	var user string
	if s.cfg.authenticate != nil {
		u, err := s.cfg.authenticate(r)
		if err != nil {
			s.reject(ratchet.RejectAuth)
			writeReject(w, err, http.StatusUnauthorized)
			return
		}
		user = u
	}
	topics := r.URL.Query()["topic"]
	if len(topics) > s.cfg.maxTopics {
		s.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusBadRequest, CodeTooManyTopics, "too many topic parameters", nil)
		return
	}
	for _, t := range topics {
		if !ratchet.ValidTopic(t) {
			t = echoTopic(t)
			s.reject(ratchet.RejectMalformed)
			writeError(w, http.StatusBadRequest, CodeInvalidTopic, "invalid topic name", &t)
			return
		}
	}

	c := newStream(r, user, s.cfg.sendQueue)
	c.obs = s.obs
	defer c.cancel()
	if s.cfg.authorize != nil {
		for _, t := range topics {
			if err := s.cfg.authorize(c, t); err != nil {
				s.reject(ratchet.RejectAuth)
				writeReject(w, err, http.StatusForbidden, t)
				return
			}
		}
	}
	if !s.life.Enter(func() { s.streams.Add(c) }) {
		s.reject(ratchet.RejectShutdown)
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "server shutting down", nil)
		return
	}
	defer s.remove(c)
	since, err := s.resumeFrom(r, c)
	if err != nil {
		s.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusBadRequest, CodeInvalidSince, err.Error(), nil)
		return
	}
	recovery, err := s.subscribe(c, since)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "cannot subscribe", nil)
		return
	}
	if recovery != "" {
		w.Header().Set(RecoveryHeader, recovery)
	}
	if c.cursor == nil {
		if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id <= maxLastEventID {
			c.lastID = id // ids go on from where the client's previous stream stopped
		}
	}
	if s.obs != nil {
		s.obs.ConnOpened()
		defer c.observeEnd()
	}
	s.stream(w, c)
}

// resumeFrom sets up c's cursor when one of its topics keeps history, and
// returns the position of each topic the client resumes from: from the
// Last-Event-ID header of a reconnecting EventSource, else from ?since=.
// A Last-Event-ID that is not a cursor of these topics (an id of another
// stream) resumes nothing and makes every history topic report a reset;
// a malformed ?since= is an error.
func (s *SSE) resumeFrom(r *http.Request, c *stream) ([]ratchet.Position, error) {
	history := false
	for _, t := range c.topics {
		if _, ok := s.hub.HistoryPolicy(t); ok {
			history = true
		}
	}
	if !history {
		return nil, nil
	}
	c.cursor = make([]ratchet.Position, len(c.topics))
	if id, ok := r.Header["Last-Event-Id"]; ok && len(id) > 0 {
		since, err := parseCursor(id[0], len(c.topics))
		if err != nil {
			since = make([]ratchet.Position, len(c.topics))
			for i, t := range c.topics {
				if _, ok := s.hub.HistoryPolicy(t); ok {
					since[i] = unknownPosition
				}
			}
		} else {
			copy(c.cursor, since) // what the client has, until events move it on
		}
		return since, nil
	}
	if q := r.URL.Query().Get("since"); q != "" {
		since, err := parseCursor(q, len(c.topics))
		if err != nil {
			return nil, errors.New("since is not a position of these topics")
		}
		copy(c.cursor, since) // what the client has, until events move it on
		return since, nil
	}
	return nil, nil
}

// unknownPosition stands for a position the client had but the server cannot
// read: no history matches it, so the topic reports a reset.
var unknownPosition = ratchet.Position{Epoch: "-", Offset: 0}

// subscribe adds c to the Hub and its topics, recovering from since, and
// returns the value of the RecoveryHeader ("" when nothing was asked).
func (s *SSE) subscribe(c *stream, since []ratchet.Position) (string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, hubTimeout)
	defer cancel()
	if err := s.hub.Add(ctx, c); err != nil {
		return "", err
	}
	c.recovering(true)
	defer c.recovering(false)
	recovery := ""
	for i, t := range c.topics {
		var from ratchet.Position
		if since != nil {
			from = since[i]
		}
		rec, err := s.hub.SubscribeWith(ctx, c, t, ratchet.SubscribeOptions{
			Since: from,
			Ready: func(rec ratchet.Recovery) { c.mark(i, rec) },
		})
		if err != nil {
			return "", err
		}
		switch {
		case from.IsZero():
		case !rec.Recovered:
			recovery = RecoveryReset
		case recovery == "":
			recovery = RecoveryRecovered
		}
	}
	return recovery, nil
}

// stream writes the queued messages as events until the stream ends.
func (s *SSE) stream(w http.ResponseWriter, c *stream) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	buf := make([]byte, 0, 512)
	if s.cfg.retry > 0 {
		buf = append(buf, "retry: "...)
		buf = strconv.AppendInt(buf, s.cfg.retry.Milliseconds(), 10)
		buf = append(buf, "\n\n"...)
	} else {
		buf = append(buf, ": ok\n\n"...)
	}
	// A stream cut off (slow consumer, Shutdown's deadline) or left by its
	// client must not stay blocked in a write: move the deadline to the past.
	// Once started, it must finish before the handler returns: net/http may
	// reuse the connection.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(c.ctx, func() {
		_ = rc.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
		}
	}()
	if !s.write(c, rc, w, buf) {
		return
	}

	var heartbeat <-chan time.Time
	var timer *time.Timer
	if s.cfg.heartbeat > 0 {
		timer = time.NewTimer(s.cfg.heartbeat)
		defer timer.Stop()
		heartbeat = timer.C
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-heartbeat:
			if !s.write(c, rc, w, []byte(": heartbeat\n\n")) {
				return
			}
			timer.Reset(s.cfg.heartbeat)
		case <-c.notify:
			batch, closing := c.take()
			if !s.setDeadline(c, rc) {
				return
			}
			for _, it := range batch {
				buf = c.appendItem(buf[:0], it)
				if len(buf) == 0 {
					continue
				}
				if _, err := w.Write(buf); err != nil {
					c.writeFailed(err)
					return
				}
			}
			c.done(batch)
			if cap(buf) > 64<<10 {
				buf = make([]byte, 0, 512)
			}
			if err := rc.Flush(); err != nil {
				c.writeFailed(err)
				return
			}
			if closing {
				return
			}
			if timer != nil {
				timer.Reset(s.cfg.heartbeat)
			}
		}
	}
}

// write writes b and flushes it, within the write timeout.
func (s *SSE) write(c *stream, rc *http.ResponseController, w http.ResponseWriter, b []byte) bool {
	if !s.setDeadline(c, rc) {
		return false
	}
	if _, err := w.Write(b); err != nil {
		c.writeFailed(err)
		return false
	}
	if err := rc.Flush(); err != nil {
		c.writeFailed(err)
		return false
	}
	return true
}

// setDeadline arms the write timeout for the next writes, and reports
// whether the stream is still on. Checking after arming means a concurrent
// end of the stream is never overwritten by a new deadline: either this
// sees it, or the AfterFunc in stream runs later.
func (s *SSE) setDeadline(c *stream, rc *http.ResponseController) bool {
	if s.cfg.writeTimeout > 0 {
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout)) // unsupported: no deadline
	}
	return c.ctx.Err() == nil
}

// Len returns the number of open streams.
func (s *SSE) Len() int { return s.streams.Len() }

// Shutdown refuses new streams (503), ends every open one after what is
// queued for it has been written, and waits until their handlers have
// returned or ctx is done: then the remaining streams are cut off and ctx's
// error is returned.
func (s *SSE) Shutdown(ctx context.Context) error {
	return s.life.Shutdown(ctx,
		func() {
			s.streams.Each(func(c ratchet.Conn) { _ = c.Close(ratchet.StatusGoingAway, "server shutting down") })
		},
		func() { s.streams.Each(func(c ratchet.Conn) { c.(*stream).cancel() }) },
		true) // the handlers return at once once canceled
}

func (s *SSE) remove(c *stream) {
	s.streams.Remove(c)
	s.life.Leave()
}

// appendItem appends what the stream writes for it, moving the stream's
// cursor (or counter) on: an event for a message, an event of type reset
// for a topic that could not be recovered, an event of type position for a
// topic's starting position. Only the handler goroutine calls it.
//
// The starting position is an event with data, not an id-only block: a
// browser's EventSource takes the id of either, but clients built on the
// npm package eventsource(-parser) keep only the ids of events with data,
// and would reconnect without Last-Event-ID, missing what was published
// meanwhile. Only listeners of type position see the event.
func (c *stream) appendItem(b []byte, it sseItem) []byte {
	if c.cursor == nil {
		c.lastID++
		b = append(b, "id: "...)
		b = strconv.AppendUint(b, c.lastID, 10)
		return appendEvent(b, it.msg)
	}
	if it.topic >= 0 && !it.pos.IsZero() {
		c.cursor[it.topic] = it.pos
	}
	b = append(b, "id: "...)
	b = appendCursor(b, c.cursor)
	switch it.kind {
	case itemMark, itemReset:
		b = append(b, "\nevent: "...)
		b = append(b, it.kind.eventType()...)
		b = append(b, "\ndata: {\"topic\":"...)
		b = appendJSONString(b, c.topics[it.topic])
		b = append(b, `,"position":"`...)
		b, _ = it.pos.AppendText(b)
		return append(b, "\"}\n\n"...)
	}
	return appendEvent(b, it.msg)
}

// appendEvent appends msg as the rest of an event whose id line is written.
// Text is split into one data: field per line (a line ends at CRLF, LF or
// CR, as the SSE parser reads it); binary is one data: field of standard
// base64 in an event of type "binary".
func appendEvent(b []byte, msg ratchet.Message) []byte {
	if msg.Type == ratchet.MessageBinary {
		b = append(b, "\nevent: binary\ndata: "...)
		b = base64.StdEncoding.AppendEncode(b, msg.Data)
		return append(b, "\n\n"...)
	}
	b = append(b, '\n')
	data := msg.Data
	for {
		b = append(b, "data: "...)
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			b = append(b, data...)
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, "\n\n"...)
}

// stream is one SSE client as a ratchet.Conn. Send queues without blocking;
// the handler goroutine writes.
type stream struct {
	id     uint64
	req    *http.Request
	ctx    context.Context
	cancel context.CancelFunc
	limit  int
	notify chan struct{} // one pending wake-up for the handler
	topics []string      // of the request, in order: the cursor's order

	// The handler's: the id of the last event written, a counter, or, when
	// a topic keeps history, the position of each topic.
	lastID uint64
	cursor []ratchet.Position

	obs ratchet.RouteObserver // the SSE's; nil: not observed
	// The handler's: a write failed; with a timeout of its own (not the
	// stream being cut off).
	failed, timedOut bool

	mu      sync.Mutex
	code    ratchet.StatusCode // of Close
	queue   []sseItem
	spare   []sseItem
	unbound bool  // subscribing: recovered messages may exceed limit
	closing bool  // Close was called: write what is queued, then end
	cause   error // why the stream was cut off (ErrSlowConsumer)
	user    string
	values  map[string]any
}

// sseItem is one queued item of a stream.
type sseItem struct {
	kind  itemKind
	msg   ratchet.Message
	topic int // index in stream.topics; -1 for none (Broadcast, a user send)
	pos   ratchet.Position
}

type itemKind uint8

const (
	itemMessage itemKind = iota
	itemMark             // a topic's position when it went live
	itemReset            // a topic whose missed messages could not be recovered
)

// The event types of a topic's position: where it starts when nothing was
// recovered, or where it goes on after a gap that could not be filled. The
// data of both is {"topic":"news","position":"k3x9:17"}.
const (
	eventPosition = "position"
	eventReset    = "reset"
)

func (k itemKind) eventType() string {
	if k == itemReset {
		return eventReset
	}
	return eventPosition
}

var (
	_ ratchet.Conn              = (*stream)(nil)
	_ ratchet.UserSetter        = (*stream)(nil)
	_ ratchet.PublicationSender = (*stream)(nil)
)

func newStream(r *http.Request, user string, limit int) *stream {
	c := &stream{
		id:     ratchet.NewConnID(),
		req:    r,
		user:   user,
		limit:  limit,
		notify: make(chan struct{}, 1),
		topics: r.URL.Query()["topic"],
	}
	c.ctx, c.cancel = context.WithCancel(r.Context())
	return c
}

// ID returns an ID unique among the connections of this process, WebSocket
// ones included.
func (c *stream) ID() uint64 { return c.id }

// Send queues msg for the stream. It returns ratchet.ErrClosed once the
// stream is ending and ratchet.ErrSlowConsumer when the queue is full: the
// stream then ends at once and what was queued is dropped.
func (c *stream) Send(msg ratchet.Message) error {
	return c.push(sseItem{msg: msg, topic: -1})
}

// SendPublication queues a message of one of the stream's topics with its
// position, which becomes part of the event ids (ratchet.PublicationSender).
func (c *stream) SendPublication(p ratchet.Publication) error {
	return c.push(sseItem{msg: p.Message, topic: c.topicIndex(p.Topic), pos: p.Position})
}

// mark queues the outcome of topic i's subscription: its starting position,
// or a reset when its missed messages could not be recovered.
func (c *stream) mark(i int, rec ratchet.Recovery) {
	it := sseItem{kind: itemMark, topic: i, pos: rec.Position}
	if !rec.Recovered {
		it.kind = itemReset
	}
	if c.cursor == nil || (it.kind == itemMark && (rec.Sent > 0 || rec.Position.IsZero())) {
		return // no history, or the recovered events carry the position
	}
	_ = c.push(it)
}

func (c *stream) topicIndex(topic string) int {
	for i, t := range c.topics {
		if t == topic {
			return i
		}
	}
	return -1
}

// recovering lifts the queue limit while the stream subscribes, so that
// what history recovers is queued whole; the limit applies again once the
// handler has taken the queue.
func (c *stream) recovering(on bool) {
	c.mu.Lock()
	if on {
		c.unbound = true
	} else if len(c.queue) < c.limit {
		c.unbound = false
	}
	c.mu.Unlock()
}

func (c *stream) push(it sseItem) error {
	c.mu.Lock()
	if c.closing || c.cause != nil || c.ctx.Err() != nil {
		c.mu.Unlock()
		return ratchet.ErrClosed
	}
	if len(c.queue) >= c.limit && !c.unbound {
		c.cause = ratchet.ErrSlowConsumer
		c.queue = nil
		c.mu.Unlock()
		c.cancel()
		if c.obs != nil {
			c.obs.SlowConsumer()
		}
		return ratchet.ErrSlowConsumer
	}
	c.queue = append(c.queue, it)
	c.mu.Unlock()
	if c.obs != nil && it.kind == itemMessage {
		c.obs.MessageOut(len(it.msg.Data))
	}
	c.wake()
	return nil
}

// Close ends the stream once what is queued has been written. SSE has no
// close frame: code and reason are not sent.
func (c *stream) Close(code ratchet.StatusCode, _ string) error {
	c.mu.Lock()
	if c.closing || c.cause != nil || c.ctx.Err() != nil {
		c.mu.Unlock()
		return ratchet.ErrClosed
	}
	c.closing, c.code = true, code
	c.mu.Unlock()
	c.wake()
	return nil
}

// writeFailed notes a failed write of the handler: a timeout of its own
// when the stream was not cut off meanwhile (cutting it off moves the
// deadline to the past).
func (c *stream) writeFailed(err error) {
	var ne net.Error
	c.failed = true
	c.timedOut = c.ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout()
}

// observeEnd reports the end of the stream to its observer, with the close
// code WithObserver documents.
func (c *stream) observeEnd() {
	c.mu.Lock()
	code, slow := c.code, c.cause == ratchet.ErrSlowConsumer
	c.mu.Unlock()
	switch {
	case slow:
		code = ratchet.StatusPolicyViolation
	case c.timedOut:
		c.obs.WriteTimeout()
		code = ratchet.StatusAbnormalClosure
	case code != 0:
	case c.failed:
		code = ratchet.StatusAbnormalClosure
	default:
		code = ratchet.StatusNoStatusRcvd
	}
	c.obs.ConnClosed(code)
}

func (c *stream) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// take hands the queued messages to the handler, and tells whether the
// stream should end after them.
func (c *stream) take() ([]sseItem, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.queue
	c.queue = c.spare[:0]
	c.spare = nil
	if len(batch) > 0 {
		c.unbound = false
	}
	return batch, c.closing
}

// done gives a written batch back for reuse.
func (c *stream) done(batch []sseItem) {
	clear(batch)
	c.mu.Lock()
	if c.spare == nil && cap(batch) <= c.limit {
		c.spare = batch[:0]
	}
	c.mu.Unlock()
}

// Request returns the GET request of the stream. Unlike a WebSocket
// connection's, its Context lives as long as the stream.
func (c *stream) Request() *http.Request { return c.req }

// RemoteAddr returns the client's network address.
func (c *stream) RemoteAddr() string { return c.req.RemoteAddr }

// Subprotocol returns "": SSE has none.
func (c *stream) Subprotocol() string { return "" }

// User returns the identity set by the SSE handler's authentication hook or
// by SetUser.
func (c *stream) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// SetUser changes the stream's identity; it makes streams a
// ratchet.UserSetter, for Hub.SetUser.
func (c *stream) SetUser(user string) {
	c.mu.Lock()
	c.user = user
	c.mu.Unlock()
}

// Context is done when the stream has ended.
func (c *stream) Context() context.Context { return c.ctx }

// Set stores a value on the stream.
func (c *stream) Set(key string, value any) {
	c.mu.Lock()
	if c.values == nil {
		c.values = make(map[string]any)
	}
	c.values[key] = value
	c.mu.Unlock()
}

// Get returns a value stored with Set.
func (c *stream) Get(key string) (any, bool) {
	c.mu.Lock()
	v, ok := c.values[key]
	c.mu.Unlock()
	return v, ok
}
