package ratchet

import (
	"context"
	"sync"
)

// drainSignal lets goroutines wait until a connection's writer next takes
// its send queue. Its methods are called with the connection's lock held.
type drainSignal struct {
	ch chan struct{} // closed when the writer takes the queue; nil: nobody waits
}

// channel returns the channel the next take closes; every waiter shares it.
func (d *drainSignal) channel() chan struct{} {
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// wake lets every waiter look again.
func (d *drainSignal) wake() {
	if d.ch != nil {
		close(d.ch)
		d.ch = nil
	}
}

// sendWhenRoom calls send once full (checked with mu held) is false,
// waiting on d meanwhile, up to ctx or until the connection ends (done).
// The Hub sends a recovery this way (see waitSender), so that a history
// larger than a connection's queue slows the sender down instead of failing
// the connection.
func sendWhenRoom(ctx context.Context, done <-chan struct{}, mu *sync.Mutex, d *drainSignal, full func() bool, send func() error) error {
	mu.Lock()
	for full() {
		ch := d.channel()
		mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		}
		mu.Lock()
	}
	mu.Unlock()
	return send()
}
