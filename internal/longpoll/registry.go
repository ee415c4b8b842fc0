package longpoll

import (
	"context"
	"sync"

	"github.com/ratchetgo/ratchet/internal/lifecycle"
)

// Registry finds a handler's sessions by id and shuts them down. The zero
// value is not usable: set NewID for Create.
type Registry[S any] struct {
	// NewID returns a fresh, unguessable session id (the protocol's
	// format); Create calls it.
	NewID func() string

	mu   sync.Mutex
	m    map[string]S
	life lifecycle.Group // sessions not yet through their end
}

// Create registers the session make returns for a new id, unless the
// registry is shut down (false). The session counts as live until Leave.
func (r *Registry[S]) Create(make func(id string) S) (S, bool) {
	id := r.NewID()
	s := make(id)
	return s, r.life.Enter(func() { r.put(id, s) })
}

// CreateAt is Create for an id the client chose (pusher-js names its
// sessions): it returns the session registered under id if there is one
// (created false), even after Shutdown, so that a closing session's last
// words reach its client; else it registers the one make returns, called
// under the registry's lock (make must not block), unless the registry is
// shut down (ok false).
func (r *Registry[S]) CreateAt(id string, make func(id string) S) (s S, created, ok bool) {
	if old, found := r.Get(id); found {
		return old, false, true
	}
	ok = r.life.Enter(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if old, found := r.m[id]; found {
			s = old // created meanwhile by a concurrent request
			return
		}
		s, created = make(id), true
		r.putLocked(id, s)
	})
	if ok && !created {
		r.life.Leave() // Enter counted a session that was already there
	}
	return s, created, ok
}

func (r *Registry[S]) put(id string, s S) {
	r.mu.Lock()
	r.putLocked(id, s)
	r.mu.Unlock()
}

func (r *Registry[S]) putLocked(id string, s S) {
	if r.m == nil {
		r.m = make(map[string]S)
	}
	r.m[id] = s
}

// Get returns the session registered under id.
func (r *Registry[S]) Get(id string) (S, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.m[id]
	return s, ok
}

// Remove forgets the session under id (its end has begun); Leave follows
// once it is through.
func (r *Registry[S]) Remove(id string) {
	r.mu.Lock()
	delete(r.m, id)
	r.mu.Unlock()
}

// Leave marks the end of a session that Create or CreateAt registered.
func (r *Registry[S]) Leave() { r.life.Leave() }

// Len returns the number of registered sessions.
func (r *Registry[S]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// Each calls f for every registered session, outside the registry's lock.
func (r *Registry[S]) Each(f func(S)) {
	r.mu.Lock()
	all := make([]S, 0, len(r.m))
	for _, s := range r.m {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		f(s)
	}
}

// Shutdown refuses new sessions, calls end to end the registered ones
// gracefully, and waits until each has left or ctx is done: then abort
// ends them at once and ctx's error is returned.
func (r *Registry[S]) Shutdown(ctx context.Context, end, abort func()) error {
	return r.life.Shutdown(ctx, end, abort, false)
}
