package ratchet

import (
	"context"
	"sort"
	"sync"
)

// MemoryPresence is a Presence for one process: who is connected to which
// topic on this node, with join and leave events. Use the Presence of
// broker/redis or broker/nats for a cluster. The zero value is ready.
type MemoryPresence struct {
	mu       sync.Mutex
	counts   map[string]map[string]int // topic -> user -> joins
	watchers map[string]map[*presenceWatch]struct{}
	closed   bool
}

type presenceWatch struct {
	mu sync.Mutex // serialises events, and stop with them
	fn func(PresenceEvent)
}

// NewMemoryPresence returns an empty MemoryPresence.
func NewMemoryPresence() *MemoryPresence { return &MemoryPresence{} }

// Join implements Presence.
func (p *MemoryPresence) Join(ctx context.Context, topic, user string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPresenceClosed
	}
	if p.counts == nil {
		p.counts = make(map[string]map[string]int)
	}
	if p.counts[topic] == nil {
		p.counts[topic] = make(map[string]int)
	}
	p.counts[topic][user]++
	first := p.counts[topic][user] == 1
	p.notifyLocked(first, PresenceEvent{Kind: PresenceJoin, Topic: topic, User: user})
	return nil
}

// Leave implements Presence.
func (p *MemoryPresence) Leave(ctx context.Context, topic, user string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	n, ok := p.counts[topic][user]
	if !ok {
		p.mu.Unlock()
		return nil
	}
	if n > 1 {
		p.counts[topic][user] = n - 1
	} else {
		delete(p.counts[topic], user)
		if len(p.counts[topic]) == 0 {
			delete(p.counts, topic)
		}
	}
	p.notifyLocked(n == 1, PresenceEvent{Kind: PresenceLeave, Topic: topic, User: user})
	return nil
}

// notifyLocked unlocks p and, if send, hands ev to the topic's watchers.
// Each watch's own lock keeps its events in order.
func (p *MemoryPresence) notifyLocked(send bool, ev PresenceEvent) {
	var ws []*presenceWatch
	if send {
		for w := range p.watchers[ev.Topic] {
			ws = append(ws, w)
		}
		for _, w := range ws {
			w.mu.Lock()
		}
	}
	p.mu.Unlock()
	for _, w := range ws {
		if w.fn != nil {
			w.fn(ev)
		}
		w.mu.Unlock()
	}
}

// Members implements Presence.
func (p *MemoryPresence) Members(ctx context.Context, topic string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	users := make([]string, 0, len(p.counts[topic]))
	for u := range p.counts[topic] {
		users = append(users, u)
	}
	p.mu.Unlock()
	sort.Strings(users)
	return users, nil
}

// Watch implements Presence.
func (p *MemoryPresence) Watch(ctx context.Context, topic string, fn func(PresenceEvent)) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPresenceClosed
	}
	if p.watchers == nil {
		p.watchers = make(map[string]map[*presenceWatch]struct{})
	}
	if p.watchers[topic] == nil {
		p.watchers[topic] = make(map[*presenceWatch]struct{})
	}
	w := &presenceWatch{fn: fn}
	p.watchers[topic][w] = struct{}{}
	return func() {
		p.mu.Lock()
		delete(p.watchers[topic], w)
		if len(p.watchers[topic]) == 0 {
			delete(p.watchers, topic)
		}
		p.mu.Unlock()
		w.mu.Lock()
		w.fn = nil
		w.mu.Unlock()
	}, nil
}

// Close implements Presence: every watch ends and every member leaves,
// without events.
func (p *MemoryPresence) Close(context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.counts, p.watchers = nil, nil
	p.mu.Unlock()
	return nil
}
