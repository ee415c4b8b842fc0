package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// served is a request this node serves for another node (the front).
type served struct {
	n      *Node
	front  string
	id     string
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	body     []byte
	complete chan struct{} // closed when the last body frame came
	acks     chan frame    // the owner waits for one ack at a time
}

// start takes a request from the inbox and serves it on a goroutine of its
// own, which ends when the handler has returned.
func (n *Node) start(f frame) {
	key := f.From + "/" + f.ID
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &served{n: n, front: f.From, id: f.ID, ctx: ctx, cancel: cancel,
		complete: make(chan struct{}), acks: make(chan frame, 1)}
	n.mu.Lock()
	if n.closed || len(n.serving) >= MaxServing || n.serving[key] != nil {
		n.mu.Unlock()
		cancel(nil)
		return // not accepted: the front says so after AcceptTimeout
	}
	n.serving[key] = s
	n.wg.Add(1)
	n.mu.Unlock()
	s.addBody(f)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			delete(n.serving, key)
			n.mu.Unlock()
			cancel(nil)
		}()
		s.serve(f)
	}()
}

func (s *served) addBody(f frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.complete:
		return // a body frame after the last one: ignored
	default:
	}
	if room := s.n.cfg.MaxBody + 1 - int64(len(s.body)); room > 0 {
		s.body = append(s.body, f.Body[:min(int64(len(f.Body)), room)]...)
	}
	if !f.More {
		close(s.complete)
	}
}

// put takes a frame of the front for this request, never blocking.
func (s *served) put(f frame) {
	switch f.Kind {
	case kindBody:
		s.addBody(f)
	case kindCancel:
		s.cancel(errClientGone)
	case kindAck:
		select {
		case s.acks <- f:
		default: // an ack nobody asked for
		}
	}
}

// serve accepts the request, waits for its body, runs the handler and ends
// the answer.
func (s *served) serve(head frame) {
	if err := s.n.publish(s.ctx, s.front, &frame{Kind: kindAccept, ID: s.id}); err != nil {
		return // the front answers 502 when no accept comes
	}
	stop := s.keepalive()
	defer stop()
	// A front gives up on an answer that does not begin within Timeout: the
	// request ends here too, should its cancel frame be lost.
	noAnswer := time.AfterFunc(s.n.cfg.Timeout, func() { s.cancel(errNoAnswer) })
	defer noAnswer.Stop()
	select {
	case <-s.complete:
	case <-s.ctx.Done():
		return // the front went away, or gave up on the rest of the body
	}
	s.mu.Lock()
	body := s.body
	s.mu.Unlock()
	r, err := http.NewRequestWithContext(s.ctx, head.Method, head.URL, bytes.NewReader(body))
	if err != nil {
		_ = s.n.publish(s.ctx, s.front, &frame{Kind: kindAnswer, ID: s.id, End: true, Err: fmt.Sprintf("request: %v", err)})
		return
	}
	r.RequestURI = head.URL
	r.Host = head.Host
	r.RemoteAddr = head.RemoteAddr
	r.Header = head.Header
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	w := &answer{s: s, header: make(http.Header), begun: noAnswer.Stop}
	defer w.end()
	s.n.cfg.Handler.ServeHTTP(w, r)
}

// keepalive tells the front every Config.Keepalive that the request is
// being served, until stop is called (it returns once the goroutine that
// does it has ended).
func (s *served) keepalive() (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(s.n.cfg.Keepalive)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-s.ctx.Done():
				return
			case <-t.C:
				_ = s.n.publish(s.ctx, s.front, &frame{Kind: kindAlive, ID: s.id})
			}
		}
	}()
	return func() { close(done); <-ended }
}

// answer is the ResponseWriter of a served request: it publishes what the
// handler writes to the front, in frames.
type answer struct {
	s        *served
	header   http.Header
	status   int // 0 until WriteHeader
	seq      uint64
	deadline time.Time // SetWriteDeadline's
	err      error     // the first failure: every later Write returns it
	ended    bool
	begun    func() bool // called with the first frame
}

// Header implements http.ResponseWriter.
func (a *answer) Header() http.Header { return a.header }

// WriteHeader implements http.ResponseWriter; the status goes out with the
// first frame.
func (a *answer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

// Write implements http.ResponseWriter: it returns once the front has
// written p to the client, or with the reason why not.
func (a *answer) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	a.WriteHeader(http.StatusOK)
	written := 0
	for len(p) > 0 || written == 0 {
		chunk := p[:min(len(p), ChunkSize)]
		p = p[len(chunk):]
		ack := len(p) == 0 || (a.seq+1)%Window == 0
		if err := a.send(chunk, ack, false); err != nil {
			return written, err
		}
		written += len(chunk)
		if len(p) == 0 {
			break
		}
	}
	return written, nil
}

// Flush implements http.Flusher: a Write is flushed already.
func (a *answer) Flush() {}

// FlushError is Flush for http.ResponseController.
func (a *answer) FlushError() error { return a.err }

// SetWriteDeadline bounds the wait for the front to have written, as it
// bounds a write to a client's connection (http.ResponseController).
func (a *answer) SetWriteDeadline(t time.Time) error {
	a.deadline = t
	return nil
}

// send publishes one frame of the answer, then with ack waits until the
// front has written it.
func (a *answer) send(body []byte, ack, end bool) error {
	f := &frame{Kind: kindAnswer, ID: a.s.id, Seq: a.seq, Body: body, Ack: ack, End: end}
	if a.seq == 0 {
		f.Status, f.Header = a.status, a.header.Clone()
		a.begun()
	}
	a.seq++
	wait := a.s.n.cfg.Timeout
	if !a.deadline.IsZero() {
		wait = time.Until(a.deadline)
	}
	if ack {
		f.WriteFor = max(wait.Milliseconds(), 1)
	}
	if err := a.s.n.publish(a.s.ctx, a.s.front, f); err != nil {
		a.err = err
		if a.s.ctx.Err() != nil {
			a.err = a.wentAway()
		}
		return a.err
	}
	if !ack {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case got := <-a.s.acks:
		if got.Seq != f.Seq {
			a.err = fmt.Errorf("forward: node %s acknowledged frame %d, want %d", a.s.front, got.Seq, f.Seq)
		} else if got.Err != "" {
			a.err = fmt.Errorf("forward: node %s: %s", a.s.front, got.Err)
		}
	case <-a.s.ctx.Done():
		a.err = a.wentAway()
	case <-timer.C:
		a.err = fmt.Errorf("forward: node %s did not write the answer to its client within %v: %w",
			a.s.front, wait, errWriteTimeout)
	}
	return a.err
}

// wentAway is the error of a Write after the request's context ended.
func (a *answer) wentAway() error {
	return fmt.Errorf("forward: node %s: %w", a.s.front, context.Cause(a.s.ctx))
}

// The causes of a served request's end.
var (
	errClientGone = errors.New("the client's request went away")
	errNoAnswer   = errors.New("no answer began in time: the front gave up")
)

// errWriteTimeout is what a Write past its deadline wraps.
var errWriteTimeout = errors.New("i/o timeout")

// end publishes the last frame once the handler returned. A handler that
// panicked is recovered here, as net/http recovers the handlers it runs:
// the front answers 502 saying so, and this node goes on.
func (a *answer) end() {
	p := recover()
	if a.ended {
		return
	}
	a.ended = true
	f := &frame{Kind: kindAnswer, ID: a.s.id, Seq: a.seq, End: true}
	switch {
	case p != nil && p != http.ErrAbortHandler:
		f.Err = "the handler panicked" // its value stays on its node: not for clients
	case p != nil:
		f.Err = "the handler aborted"
	case a.err != nil:
		f.Err = a.err.Error()
	}
	if a.seq == 0 {
		f.Status, f.Header = cmpOr(a.status, http.StatusOK), a.header.Clone()
	}
	_ = a.s.n.publish(a.s.ctx, a.s.front, f)
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}
