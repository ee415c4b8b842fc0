// Package longpoll holds what HTTP long-polling and streaming sessions
// have in common, whatever protocol frames their bytes (Engine.IO polling,
// pusher-js's xhr_polling and xhr_streaming): the session's bounded queue
// of outgoing items handed to the client's requests, one pending request
// at a time, waiting for items with a deadline, the rule that items taken
// by a response that failed end the session with an error, the session's
// idle timeout, the registry of sessions by id, and the HTTP chores
// (Cache-Control, body size). The protocol decides what an item is, how a
// batch is written, and what a second pending request means.
package longpoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrBusy is what Poll and Stream return under Refuse when another request
// of the session is pending: nothing was taken.
var ErrBusy = errors.New("longpoll: another request of the session is pending")

// ErrUndelivered wraps the error that ends a session when a response that
// had taken items failed: those items did not reach the client, and are
// not silently lost.
var ErrUndelivered = errors.New("longpoll: items taken by a failed response")

// ErrTooLarge is what ReadBody returns for a body over its limit.
var ErrTooLarge = errors.New("longpoll: request body too large")

// Overlap says what a second pending request of a session does.
type Overlap int

const (
	// Refuse: the second request gets ErrBusy and the first one goes on
	// (the protocol then decides, Engine.IO ends the session).
	Refuse Overlap = iota
	// Replace: the second request takes over, the first one returns with
	// nothing taken (a client that aborted a request and made a new one
	// before the server noticed, as pusher-js does to renew its stream).
	Replace
)

// Config is what a protocol chooses for its sessions.
type Config struct {
	Overlap Overlap
	// Idle ends the session with IdleErr when no request of the client is
	// pending for that long (from the session's start, then from the end
	// of each request); 0: never (the protocol has its own keepalive).
	Idle    time.Duration
	IdleErr error
	// OnEnd runs once, outside the session's lock, when the session ends,
	// with the error it ended with (nil for a normal end).
	OnEnd func(err error)
}

// Session is the outgoing side of one session: items of type T wait in it
// until a request of the client takes them.
type Session[T any] struct {
	cfg Config

	mu        sync.Mutex
	out       []T
	added     uint64        // items pushed so far
	taken     uint64        // items taken so far
	changed   chan struct{} // closed and replaced on every change
	pending   uint64        // the pending request's number, 0 for none
	requests  uint64        // requests begun so far
	immediate bool          // requests answer at once (SetImmediate)
	closed    bool
	err       error // what End was given
	idle      *time.Timer
}

// NewSession returns an open session; its idle timeout, if any, runs from
// now.
func NewSession[T any](cfg Config) *Session[T] {
	s := &Session[T]{cfg: cfg, changed: make(chan struct{})}
	if cfg.Idle > 0 {
		s.mu.Lock() // the timer may fire before the assignment
		s.idle = time.AfterFunc(cfg.Idle, func() { s.End(cfg.IdleErr) })
		s.mu.Unlock()
	}
	return s
}

func (s *Session[T]) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitLocked releases the lock until the next change, ctx's end or the
// timer's (nil: none); false when ctx or the timer ended it.
func (s *Session[T]) waitLocked(ctx context.Context, timer <-chan time.Time) bool {
	ch := s.changed
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	case <-timer:
		return false
	}
}

// Push queues items for the client and returns the number the last one
// has (for WaitTaken); false once the session has ended. The bound of the
// queue is the protocol's: its ratchet.TransportConn's send queue feeds it
// only while WaitTaken waits.
func (s *Session[T]) Push(items ...T) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	s.out = append(s.out, items...)
	s.added += uint64(len(items))
	s.notifyLocked()
	return s.added, true
}

// WaitTaken waits until the items up to number n have been taken by a
// request of the client; false if the session ended or ctx was done first.
func (s *Session[T]) WaitTaken(ctx context.Context, n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.taken < n && !s.closed && s.waitLocked(ctx, nil) {
	}
	return s.taken >= n
}

func (s *Session[T]) takeLocked() []T {
	batch := s.out
	s.out = nil
	s.taken += uint64(len(batch))
	s.notifyLocked()
	return batch
}

// Take waits until items wait or the session has ended, and takes them,
// for a writer that owns the session's output (Engine.IO's WebSocket after
// the upgrade). After the end it returns what is left, then nil and true.
func (s *Session[T]) Take(ctx context.Context) ([]T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.out) == 0 && !s.closed && s.waitLocked(ctx, nil) {
	}
	if len(s.out) == 0 {
		return nil, s.closed
	}
	return s.takeLocked(), false
}

// Waiting returns how many items wait to be taken.
func (s *Session[T]) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.out)
}

// SetImmediate makes the pending request, and those to come while on,
// answer at once with what waits, even nothing (Engine.IO releases its
// poll so that the client can upgrade).
func (s *Session[T]) SetImmediate(on bool) {
	s.mu.Lock()
	s.immediate = on
	s.notifyLocked()
	s.mu.Unlock()
}

// begin makes a request the pending one, per the Overlap policy.
func (s *Session[T]) beginLocked() (uint64, error) {
	if s.pending != 0 && s.cfg.Overlap == Refuse {
		return 0, ErrBusy
	}
	s.requests++
	s.pending = s.requests
	if s.idle != nil {
		s.idle.Stop()
	}
	s.notifyLocked() // a replaced request returns
	return s.pending, nil
}

func (s *Session[T]) endRequestLocked(n uint64) {
	if s.pending != n {
		return // replaced
	}
	s.pending = 0
	if s.idle != nil && !s.closed {
		s.idle.Reset(s.cfg.Idle)
	}
}

// next waits, as request n, for items, the end, immediacy, a replacement,
// ctx or wait (0: no deadline); it takes the items. replaced and ctx's end
// take nothing.
func (s *Session[T]) nextLocked(ctx context.Context, n uint64, wait time.Duration) (batch []T, closed bool, err error) {
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	for len(s.out) == 0 && !s.closed && !s.immediate && s.pending == n {
		if !s.waitLocked(ctx, timer) {
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			break // the deadline: nothing to take
		}
	}
	if s.pending != n {
		return nil, false, nil
	}
	if len(s.out) > 0 {
		batch = s.takeLocked()
	}
	return batch, s.closed, nil
}

// Poll answers one long poll: as the session's pending request, it waits
// until items wait, the session has ended, SetImmediate, another request
// replaces it, or wait has passed (0: no deadline), takes what waits and
// hands it to write, with whether the session has ended (the items are
// then the last). write runs after the request has stopped being the
// pending one, so the client may poll again as soon as it has the bytes.
// Poll returns ErrBusy (under Refuse), ctx's error when the client left
// before anything was taken (write is not called), or write's error: when
// that response had taken items, the session ends with ErrUndelivered.
func (s *Session[T]) Poll(ctx context.Context, wait time.Duration, write func(batch []T, closed bool) error) error {
	s.mu.Lock()
	n, err := s.beginLocked()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	batch, closed, err := s.nextLocked(ctx, n, wait)
	s.endRequestLocked(n)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.delivered(len(batch), write(batch, closed))
}

// Stream answers a streaming request: as the session's pending request
// until the session ends, another request replaces it or ctx is done, it
// hands write what waits at once (maybe nothing: the protocol writes its
// preamble), then each batch as it comes, and an empty one after each
// heartbeat of silence (0: none). So once the client has the first bytes,
// the stream is the pending request. It returns nil when the session
// ended (write got closed = true) or the request was replaced, ctx's error
// when the client left, ErrBusy, or write's error (see Poll).
func (s *Session[T]) Stream(ctx context.Context, heartbeat time.Duration, write func(batch []T, closed bool) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.beginLocked()
	if err != nil {
		return err
	}
	defer s.endRequestLocked(n)
	batch, closed := s.takeLocked(), s.closed
	for {
		s.mu.Unlock()
		err = s.delivered(len(batch), write(batch, closed))
		s.mu.Lock()
		if err != nil || closed {
			return err
		}
		if batch, closed, err = s.nextLocked(ctx, n, heartbeat); err != nil {
			return err
		}
		if s.pending != n {
			return nil
		}
	}
}

// delivered ends the session when a response that had taken items failed.
func (s *Session[T]) delivered(items int, err error) error {
	if err != nil && items > 0 {
		s.End(fmt.Errorf("%w (%d): %w", ErrUndelivered, items, err))
	}
	return err
}

// End ends the session once: pending requests return with closed = true
// and what still waits (the protocol's last words, say a close frame),
// Push fails, and Config.OnEnd runs with err. Later calls do nothing.
func (s *Session[T]) End(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed, s.err = true, err
	if s.idle != nil {
		s.idle.Stop()
	}
	s.notifyLocked()
	s.mu.Unlock()
	if s.cfg.OnEnd != nil {
		s.cfg.OnEnd(err)
	}
}

// Closed reports whether the session has ended.
func (s *Session[T]) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// EndErr is what a write that failed because the session ended reports:
// the error End was given (a protocol error, a timeout), or closed when it
// ended without one. The session's Conn may see the failed write before
// the end itself, so a bare "closed" would hide why.
func (s *Session[T]) EndErr(closed error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return closed
}

// NoStore marks a response as one no cache may keep: each poll's answer is
// new.
func NoStore(w http.ResponseWriter) { w.Header().Set("Cache-Control", "no-store") }

// ReadBody reads r's body, at most limit bytes; a larger one fails with an
// error wrapping ErrTooLarge (the connection is then closed after the
// response, as http.MaxBytesReader does).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return b, err
}
