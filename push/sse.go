package push

import (
	"bytes"
	"context"
	"encoding/base64"
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
	return &SSE{hub: hub, cfg: newConfig(opts)}
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
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET", nil)
		return
	}
	var user string
	if s.cfg.authenticate != nil {
		u, err := s.cfg.authenticate(r)
		if err != nil {
			writeReject(w, err, http.StatusUnauthorized)
			return
		}
		user = u
	}
	topics := r.URL.Query()["topic"]
	if len(topics) > s.cfg.maxTopics {
		writeError(w, http.StatusBadRequest, CodeTooManyTopics, "too many topic parameters", nil)
		return
	}
	for _, t := range topics {
		if !ratchet.ValidTopic(t) {
			t = echoTopic(t)
			writeError(w, http.StatusBadRequest, CodeInvalidTopic, "invalid topic name", &t)
			return
		}
	}

	c := newStream(r, user, s.cfg.sendQueue)
	defer c.cancel()
	if s.cfg.authorize != nil {
		for _, t := range topics {
			if err := s.cfg.authorize(c, t); err != nil {
				writeReject(w, err, http.StatusForbidden, t)
				return
			}
		}
	}
	if !s.life.Enter(func() { s.streams.Add(c) }) {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "server shutting down", nil)
		return
	}
	defer s.remove(c)
	if err := s.subscribe(c, topics); err != nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "cannot subscribe", nil)
		return
	}
	if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id <= maxLastEventID {
		c.lastID = id // ids go on from where the client's previous stream stopped
	}
	s.stream(w, c)
}

func (s *SSE) subscribe(c *stream, topics []string) error {
	ctx, cancel := context.WithTimeout(c.ctx, hubTimeout)
	defer cancel()
	if err := s.hub.Add(ctx, c); err != nil {
		return err
	}
	for _, t := range topics {
		if err := s.hub.Subscribe(ctx, c, t); err != nil {
			return err
		}
	}
	return nil
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
			for _, m := range batch {
				c.lastID++
				buf = appendEvent(buf[:0], c.lastID, m)
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
			c.done(batch)
			if cap(buf) > 64<<10 {
				buf = make([]byte, 0, 512)
			}
			if err := rc.Flush(); err != nil {
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
		return false
	}
	return rc.Flush() == nil
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

// appendEvent appends msg as one event with the given id. Text is split
// into one data: field per line (a line ends at CRLF, LF or CR, as the SSE
// parser reads it); binary is one data: field of standard base64 in an
// event of type "binary".
func appendEvent(b []byte, id uint64, msg ratchet.Message) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
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
	lastID uint64        // the handler's: id of the last event written

	mu      sync.Mutex
	queue   []ratchet.Message
	spare   []ratchet.Message
	closing bool  // Close was called: write what is queued, then end
	cause   error // why the stream was cut off (ErrSlowConsumer)
	user    string
	values  map[string]any
}

var (
	_ ratchet.Conn       = (*stream)(nil)
	_ ratchet.UserSetter = (*stream)(nil)
)

func newStream(r *http.Request, user string, limit int) *stream {
	c := &stream{
		id:     ratchet.NewConnID(),
		req:    r,
		user:   user,
		limit:  limit,
		notify: make(chan struct{}, 1),
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
	c.mu.Lock()
	if c.closing || c.cause != nil || c.ctx.Err() != nil {
		c.mu.Unlock()
		return ratchet.ErrClosed
	}
	if len(c.queue) >= c.limit {
		c.cause = ratchet.ErrSlowConsumer
		c.queue = nil
		c.mu.Unlock()
		c.cancel()
		return ratchet.ErrSlowConsumer
	}
	c.queue = append(c.queue, msg)
	c.mu.Unlock()
	c.wake()
	return nil
}

// Close ends the stream once what is queued has been written. SSE has no
// close frame: code and reason are not sent.
func (c *stream) Close(ratchet.StatusCode, string) error {
	c.mu.Lock()
	if c.closing || c.cause != nil || c.ctx.Err() != nil {
		c.mu.Unlock()
		return ratchet.ErrClosed
	}
	c.closing = true
	c.mu.Unlock()
	c.wake()
	return nil
}

func (c *stream) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// take hands the queued messages to the handler, and tells whether the
// stream should end after them.
func (c *stream) take() ([]ratchet.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.queue
	c.queue = c.spare[:0]
	c.spare = nil
	return batch, c.closing
}

// done gives a written batch back for reuse.
func (c *stream) done(batch []ratchet.Message) {
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
