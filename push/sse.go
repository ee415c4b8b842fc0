package push

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
// Each stream is a ratchet.TransportConn added to the Hub, so Publish,
// Broadcast and PublishToUser reach it like any WebSocket connection, with
// the same send queue and slow-consumer rule. See the package
// documentation for the event format.
//
// net/http's Server.Shutdown waits for running handlers, and a stream runs
// until its client leaves: call SSE.Shutdown first. App.Shutdown does so for
// an SSE given to App.Handle.
type SSE struct {
	hub *ratchet.Hub
	cfg config
	obs ratchet.RouteObserver // WithObserver; nil: not observed

	mu      sync.Mutex
	streams map[*stream]struct{}
	life    lifecycle.Group // streams whose handler has not returned
}

// maxLastEventID is the largest Last-Event-ID a stream counts on from; a
// larger one starts over at 1. It is the largest integer JavaScript numbers
// hold exactly, and leaves room for more events than a stream can carry:
// ids never wrap.
const maxLastEventID = 1<<53 - 1

// NewSSE returns an SSE handler for the topics of hub.
func NewSSE(hub *ratchet.Hub, opts ...Option) *SSE {
	s := &SSE{hub: hub, cfg: newConfig(opts), streams: make(map[*stream]struct{})}
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

	st := newStream(s, w, r, topics)
	defer st.cancel()
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, st, r, user, s.cfg.sendQueue)
	st.conn = c
	if s.cfg.authorize != nil {
		for _, t := range topics {
			if err := s.cfg.authorize(c, t); err != nil {
				s.reject(ratchet.RejectAuth)
				writeReject(w, err, http.StatusForbidden, t)
				return
			}
		}
	}
	if !s.life.Enter(func() { s.add(st) }) {
		s.reject(ratchet.RejectShutdown)
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "server shutting down", nil)
		return
	}
	defer s.remove(st)
	since, err := s.resumeFrom(r, st)
	if err != nil {
		s.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusBadRequest, CodeInvalidSince, err.Error(), nil)
		return
	}
	if st.cursor == nil {
		if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id <= maxLastEventID {
			st.lastID = id // ids go on from where the client's previous stream stopped
		}
	}
	if s.obs != nil {
		c.Observe(s.obs)
	}
	c.Open()
	recovery, err := s.subscribe(st, since)
	if err != nil {
		c.End(fmt.Errorf("push: subscribing the stream: %w", err))
		<-c.Done() // the transport is done with w
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "cannot subscribe", nil)
		return
	}
	if recovery != "" {
		w.Header().Set(RecoveryHeader, recovery)
	}
	st.serve(r)
}

// resumeFrom sets up c's cursor when one of its topics keeps history, and
// returns the position of each topic the client resumes from: from the
// Last-Event-ID header of a reconnecting EventSource, else from ?since=.
// A Last-Event-ID that is not a cursor of these topics (an id of another
// stream) resumes nothing and makes every history topic report a reset;
// a malformed ?since= is an error.
func (s *SSE) resumeFrom(r *http.Request, st *stream) ([]ratchet.Position, error) {
	history := false
	for _, t := range st.topics {
		if _, ok := s.hub.HistoryPolicy(t); ok {
			history = true
		}
	}
	if !history {
		return nil, nil
	}
	st.cursor = make([]ratchet.Position, len(st.topics))
	if id, ok := r.Header["Last-Event-Id"]; ok && len(id) > 0 {
		since, err := parseCursor(id[0], len(st.topics))
		if err != nil {
			since = make([]ratchet.Position, len(st.topics))
			for i, t := range st.topics {
				if _, ok := s.hub.HistoryPolicy(t); ok {
					since[i] = unknownPosition
				}
			}
		} else {
			copy(st.cursor, since) // what the client has, until events move it on
		}
		return since, nil
	}
	if q := r.URL.Query().Get("since"); q != "" {
		since, err := parseCursor(q, len(st.topics))
		if err != nil {
			return nil, errors.New("since is not a position of these topics")
		}
		copy(st.cursor, since) // what the client has, until events move it on
		return since, nil
	}
	return nil, nil
}

// unknownPosition stands for a position the client had but the server cannot
// read: no history matches it, so the topic reports a reset.
var unknownPosition = ratchet.Position{Epoch: "-", Offset: 0}

// subscribe adds c to the Hub and its topics, recovering from since, and
// returns the value of the RecoveryHeader ("" when nothing was asked).
func (s *SSE) subscribe(st *stream, since []ratchet.Position) (string, error) {
	ctx, cancel := context.WithTimeout(st.ctx, hubTimeout)
	defer cancel()
	if err := s.hub.Add(ctx, st.conn); err != nil {
		return "", err
	}
	recovery := ""
	for i, t := range st.topics {
		var from ratchet.Position
		if since != nil {
			from = since[i]
		}
		rec, err := s.hub.SubscribeWith(ctx, st.conn, t, ratchet.SubscribeOptions{
			Since: from,
			Ready: func(rec ratchet.Recovery) { st.mark(i, rec) },
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

// Len returns the number of open streams.
func (s *SSE) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Shutdown refuses new streams (503), ends every open one after what is
// queued for it has been written, and waits until their handlers have
// returned or ctx is done: then the remaining streams are cut off and ctx's
// error is returned.
func (s *SSE) Shutdown(ctx context.Context) error {
	return s.life.Shutdown(ctx,
		func() {
			s.each(func(st *stream) { _ = st.conn.Close(ratchet.StatusGoingAway, "server shutting down") })
		},
		func() { s.each(func(st *stream) { st.cancel(); st.conn.End(nil) }) },
		true) // the handlers return at once once cut off
}

// each calls f for every open stream, without holding s.mu.
func (s *SSE) each(f func(*stream)) {
	s.mu.Lock()
	all := make([]*stream, 0, len(s.streams))
	for st := range s.streams {
		all = append(all, st)
	}
	s.mu.Unlock()
	for _, st := range all {
		f(st)
	}
}

func (s *SSE) add(st *stream) {
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
}

func (s *SSE) remove(st *stream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
	s.life.Leave()
}

// stream is one SSE client: the ratchet.Transport of its TransportConn.
// The TransportConn queues (Send never blocks) and calls WritePublications
// from its writer goroutine; the handler goroutine writes the stream's
// first bytes and the heartbeats, and ends the Conn when the client leaves.
type stream struct {
	sse    *SSE
	conn   *ratchet.TransportConn
	w      http.ResponseWriter
	rc     *http.ResponseController
	topics []string // of the request, in order: the cursor's order
	// ctx is canceled when the stream is cut off (the client left, its
	// queue overflowed, Shutdown's deadline passed): its writes then fail
	// at once.
	ctx    context.Context
	cancel context.CancelFunc

	// wmu is held by whoever writes to w, and guards what follows.
	wmu       sync.Mutex
	started   bool   // the first bytes are written; before, events go to pending
	pending   []byte // events rendered while the stream subscribed
	closed    bool   // Close was called: no more heartbeats
	lastWrite time.Time
	buf       []byte
	// The id of the last event written, a counter, or, when a topic keeps
	// history, the position of each topic.
	lastID uint64
	cursor []ratchet.Position
}

var (
	_ ratchet.Transport         = (*stream)(nil)
	_ ratchet.PublicationWriter = (*stream)(nil)
	_ ratchet.Interrupter       = (*stream)(nil)
)

func newStream(s *SSE, w http.ResponseWriter, r *http.Request, topics []string) *stream {
	st := &stream{sse: s, w: w, rc: http.NewResponseController(w), topics: topics, buf: make([]byte, 0, 512)}
	st.ctx, st.cancel = context.WithCancel(r.Context())
	return st
}

// errCutOff is what a write of a stream that was cut off returns, rather
// than the deadline error that cut it (not a write timeout of its own).
var errCutOff = errors.New("push: stream cut off")

// serve writes the stream's first bytes and what was rendered while it
// subscribed, then the heartbeats, until the Conn has closed.
func (st *stream) serve(r *http.Request) {
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	st.w.WriteHeader(http.StatusOK)

	// A stream cut off must not stay blocked in a write: move the deadline
	// to the past. Once started, it must finish before the handler returns:
	// net/http may reuse the connection.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(st.ctx, func() {
		_ = st.rc.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
		}
	}()
	// However the stream ends, the Conn ends (End does nothing once it has)
	// and the handler returns after OnClose: by then the TransportConn no
	// longer calls the stream, so nothing writes to w.
	defer func() { st.conn.End(nil); <-st.conn.Done() }()
	if err := st.start(); err != nil {
		st.conn.End(err)
		return
	}

	var heartbeat <-chan time.Time // nil: no heartbeats
	var timer *time.Timer
	if every := st.sse.cfg.heartbeat; every > 0 {
		timer = time.NewTimer(every)
		defer timer.Stop()
		heartbeat = timer.C
	}
	for {
		select {
		case <-st.conn.Done():
			return
		case <-r.Context().Done():
			st.conn.End(&ratchet.CloseError{Code: ratchet.StatusNoStatusRcvd}) // the client left
			return
		case <-heartbeat:
			timer.Reset(st.heartbeat())
		}
	}
}

// start writes the stream's first bytes (the retry: field, or a comment)
// and the events rendered while it subscribed; later events are written
// as they come.
func (st *stream) start() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	b := st.buf[:0]
	if st.sse.cfg.retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, st.sse.cfg.retry.Milliseconds(), 10)
		b = append(b, "\n\n"...)
	} else {
		b = append(b, ": ok\n\n"...)
	}
	st.started = true
	err := st.writeLocked(b, st.pending)
	st.pending = nil
	return err
}

// heartbeat writes a comment if nothing was written for a heartbeat
// interval, and returns when to look again. A write under way makes one
// needless.
func (st *stream) heartbeat() time.Duration {
	every := st.sse.cfg.heartbeat
	if !st.wmu.TryLock() {
		return every
	}
	defer st.wmu.Unlock()
	if st.closed {
		return every
	}
	if idle := time.Since(st.lastWrite); idle < every {
		return every - idle
	}
	if err := st.writeLocked([]byte(": heartbeat\n\n")); err != nil {
		st.conn.End(err)
	}
	return every
}

// writeLocked writes bs and flushes them, within the write timeout.
func (st *stream) writeLocked(bs ...[]byte) error {
	if !st.setDeadline() {
		return errCutOff
	}
	for _, b := range bs {
		if _, err := st.w.Write(b); err != nil {
			return st.writeError(err)
		}
	}
	if err := st.rc.Flush(); err != nil {
		return st.writeError(err)
	}
	st.lastWrite = time.Now()
	return nil
}

// setDeadline arms the write timeout for the next writes, and reports
// whether the stream is still on. Checking after arming means a concurrent
// cut-off is never overwritten by a new deadline: either this sees it, or
// the AfterFunc in serve runs later.
func (st *stream) setDeadline() bool {
	if t := st.sse.cfg.writeTimeout; t > 0 {
		_ = st.rc.SetWriteDeadline(time.Now().Add(t)) // unsupported: no deadline
	}
	return st.ctx.Err() == nil
}

// writeError is err, unless the stream was cut off meanwhile: cutting it
// off moves the deadline to the past, which is no write timeout.
func (st *stream) writeError(err error) error {
	if st.ctx.Err() != nil {
		return errCutOff
	}
	return fmt.Errorf("push: writing the stream: %w", err)
}

// WritePublications implements ratchet.PublicationWriter: each publication
// becomes an event whose id is the stream's cursor (or counter). Before the
// stream has started, the events wait for its first bytes.
func (st *stream) WritePublications(pubs []ratchet.Publication) error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if !st.started {
		for _, p := range pubs {
			st.pending = st.appendItem(st.pending, p)
		}
		return nil
	}
	if !st.setDeadline() {
		return errCutOff
	}
	for _, p := range pubs {
		st.buf = st.appendItem(st.buf[:0], p)
		if len(st.buf) == 0 {
			continue
		}
		if _, err := st.w.Write(st.buf); err != nil {
			return st.writeError(err)
		}
	}
	if cap(st.buf) > 64<<10 {
		st.buf = make([]byte, 0, 512)
	}
	if err := st.rc.Flush(); err != nil {
		return st.writeError(err)
	}
	st.lastWrite = time.Now()
	return nil
}

// WriteMessages implements ratchet.Transport; the TransportConn of a
// PublicationWriter calls WritePublications instead.
func (st *stream) WriteMessages(msgs []ratchet.Message) error {
	pubs := make([]ratchet.Publication, len(msgs))
	for i, m := range msgs {
		pubs[i].Message = m
	}
	return st.WritePublications(pubs)
}

// Interrupt implements ratchet.Interrupter: the queue overflowed, so the
// stream is cut off, even in the middle of a write.
func (st *stream) Interrupt() { st.cancel() }

// Close implements ratchet.Transport. SSE has no close frame: code and
// reason are not sent; the handler ends the response once the Conn has
// closed.
func (st *stream) Close(ratchet.StatusCode, string) error {
	st.wmu.Lock()
	st.closed = true
	st.wmu.Unlock()
	return nil
}

// mark queues the outcome of topic i's subscription, as a note (see
// ratchet.PublicationWriter) in order with its messages: its starting
// position, or a reset when its missed messages could not be recovered.
func (st *stream) mark(i int, rec ratchet.Recovery) {
	kind := eventPosition
	if !rec.Recovered {
		kind = eventReset
	}
	if st.cursor == nil || (kind == eventPosition && (rec.Sent > 0 || rec.Position.IsZero())) {
		return // no history, or the recovered events carry the position
	}
	_ = st.conn.SendPublication(ratchet.Publication{Topic: st.topics[i], Position: rec.Position,
		Message: ratchet.Message{Data: []byte(kind)}})
}

func (st *stream) topicIndex(topic string) int {
	for i, t := range st.topics {
		if t == topic {
			return i
		}
	}
	return -1
}

// The event types of a topic's position: where it starts when nothing was
// recovered, or where it goes on after a gap that could not be filled. The
// data of both is {"topic":"news","position":"k3x9:17"}.
const (
	eventPosition = "position"
	eventReset    = "reset"
)

// appendItem appends the event for p, moving the stream's cursor (or
// counter) on: an event for a message, or, for a note of mark, an event of
// type reset for a topic that could not be recovered or of type position
// for a topic's starting position. It runs under wmu.
//
// The starting position is an event with data, not an id-only block: a
// browser's EventSource takes the id of either, but clients built on the
// npm package eventsource(-parser) keep only the ids of events with data,
// and would reconnect without Last-Event-ID, missing what was published
// meanwhile. Only listeners of type position see the event.
func (st *stream) appendItem(b []byte, p ratchet.Publication) []byte {
	note := p.Message.Type == 0
	if st.cursor == nil {
		if note {
			return b
		}
		st.lastID++
		b = append(b, "id: "...)
		b = strconv.AppendUint(b, st.lastID, 10)
		return appendEvent(b, p.Message)
	}
	topic := st.topicIndex(p.Topic)
	if topic >= 0 && !p.Position.IsZero() {
		st.cursor[topic] = p.Position
	}
	b = append(b, "id: "...)
	b = appendCursor(b, st.cursor)
	if note {
		b = append(b, "\nevent: "...)
		b = append(b, p.Message.Data...)
		b = append(b, "\ndata: {\"topic\":"...)
		b = appendJSONString(b, p.Topic)
		b = append(b, `,"position":"`...)
		b, _ = p.Position.AppendText(b)
		return append(b, "\"}\n\n"...)
	}
	return appendEvent(b, p.Message)
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
