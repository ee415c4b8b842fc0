// Package lifecycle holds what a handler of long-lived requests (WebSocket
// connections, event streams) needs to shut down: refuse new ones, end the
// open ones, wait for them within a deadline.
package lifecycle

import (
	"context"
	"sync"
)

// Group counts the live members of a handler. The zero value is open.
type Group struct {
	mu     sync.Mutex
	closed bool
	active sync.WaitGroup
}

// Enter admits a member unless the group is shut down; register runs under
// the group's lock, so a member Shutdown ends is always registered.
func (g *Group) Enter(register func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active.Add(1)
	register()
	return true
}

// Leave marks the end of a member admitted by Enter.
func (g *Group) Leave() { g.active.Done() }

// Closed reports whether Shutdown was called.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Shutdown refuses new members, calls end to end the open ones gracefully,
// and waits until every member has left. If ctx is done first it calls
// abort, waits again only if waitAfterAbort (for members that leave at once
// when aborted), and returns ctx's error.
func (g *Group) Shutdown(ctx context.Context, end, abort func(), waitAfterAbort bool) error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	end()
	done := make(chan struct{})
	go func() { g.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		abort()
		if waitAfterAbort {
			<-done
		}
		return ctx.Err()
	}
}
