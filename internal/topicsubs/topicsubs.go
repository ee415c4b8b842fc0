// Package topicsubs keeps a broker node's subscriptions to one topic and
// hands them what the broker receives for it, as ratchet.Publication (the
// message with its topic and position): in order, one at a time per
// subscription, never after its Unsubscribe has returned, with a
// panicking deliver function recovered and reported, and never a text
// message that is not valid UTF-8. The Redis and NATS brokers share it.
package topicsubs

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet"
)

// List is the node's subscriptions to one topic. It is copied on write, so
// the broker's receiving goroutine delivers without taking a lock; the
// broker serialises the writers (Add, Remove, Clear) with its own lock. The
// zero value is empty.
type List struct {
	subs atomic.Pointer[[]*Sub]
}

// Sub is one subscription of a List: a ratchet.Subscription.
type Sub struct {
	mu      sync.Mutex // held while delivering
	deliver func(ratchet.Publication)
	leave   func(context.Context, *Sub) error
	once    sync.Once
}

var _ ratchet.Subscription = (*Sub)(nil)

func (l *List) load() []*Sub {
	if p := l.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// Add adds a subscription that hands publications to deliver. Its
// Unsubscribe calls leave, the broker's part (Remove, and unsubscribing the
// topic on the server when it was the last), then stops deliveries.
func (l *List) Add(deliver func(ratchet.Publication), leave func(context.Context, *Sub) error) *Sub {
	s := &Sub{deliver: deliver, leave: leave}
	subs := append(slices.Clip(l.load()), s)
	l.subs.Store(&subs)
	return s
}

// Remove takes s out of the list and returns how many subscriptions are
// left.
func (l *List) Remove(s *Sub) int {
	old := l.load()
	i := slices.Index(old, s)
	if i < 0 {
		return len(old)
	}
	subs := slices.Delete(slices.Clone(old), i, i+1)
	l.subs.Store(&subs)
	return len(subs)
}

// Len returns the number of subscriptions.
func (l *List) Len() int { return len(l.load()) }

// Clear empties the list and returns what it held, for a broker that
// closes: it stops them once its connection is closed.
func (l *List) Clear() []*Sub {
	old := l.load()
	l.subs.Store(nil)
	return old
}

// Deliver hands p to every subscription, one after the other. A deliver
// function that panics is reported as a *ratchet.PanicError; the others
// still get p. Text that is not valid UTF-8 is delivered as binary and
// reported (see Checked).
func (l *List) Deliver(p ratchet.Publication, report func(error)) {
	subs := l.load()
	if len(subs) == 0 {
		return
	}
	var err error
	if p.Message, err = Checked(p.Message); err != nil {
		report(err)
	}
	for _, s := range subs {
		s.handle(p, report)
	}
}

// Plain adapts the deliver function of ratchet.Broker.Subscribe, which
// takes only the message, to a List; nil stays nil.
func Plain(deliver func(ratchet.Message)) func(ratchet.Publication) {
	if deliver == nil {
		return nil
	}
	return func(p ratchet.Publication) { deliver(p.Message) }
}

// Checked returns msg, unless it is text that is not valid UTF-8: then it
// returns the same bytes as a binary message, and an error wrapping
// ratchet.ErrInvalidUTF8. A WebSocket text frame must be UTF-8: a browser
// fails the whole connection on one that is not (and an event stream would
// carry the bytes raw), so one bad message from another publisher would cut
// off every subscriber. As binary it arrives intact, and nothing is lost.
func Checked(msg ratchet.Message) (ratchet.Message, error) {
	if msg.Type != ratchet.MessageText || utf8.Valid(msg.Data) {
		return msg, nil
	}
	msg.Type = ratchet.MessageBinary
	return msg, fmt.Errorf("%w: delivered as binary (%d bytes)", ratchet.ErrInvalidUTF8, len(msg.Data))
}

func (s *Sub) handle(p ratchet.Publication, report func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deliver == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			report(&ratchet.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	s.deliver(p)
}

// Unsubscribe implements ratchet.Subscription: the first call runs the
// broker's leave function and returns its error, then stops deliveries,
// waiting for one in progress; later calls do nothing.
func (s *Sub) Unsubscribe(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		err = s.leave(ctx, s)
		s.Stop()
	})
	return err
}

// Stop stops deliveries to s: it waits for one in progress, and deliver is
// not called again.
func (s *Sub) Stop() {
	s.mu.Lock()
	s.deliver = nil
	s.mu.Unlock()
}
