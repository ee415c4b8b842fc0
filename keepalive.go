package ratchet

import (
	"sync"
	"time"
)

// keepaliveSweep runs the keepalive of a WsServer's connections from one
// timer instead of a timer per connection: each connection keeps only the
// time its next keepalive step is due (conn.kaDue), and the sweep, every
// quarter of the shorter of the interval and the timeout, takes the steps
// that are due. A timer would cost an idle connection about 150 bytes of
// heap and each handshake a lock on the runtime's timer heap; the sweep
// costs a pass over the connections a few times a minute with the default
// settings. The timer runs only while the server has connections.
type keepaliveSweep struct {
	mu    sync.Mutex
	timer *time.Timer
	armed bool
}

// epoch is the origin of the monotonic times in conn.kaDue.
var epoch = time.Now()

// monoNow is the time since epoch, on the monotonic clock.
func monoNow() int64 { return int64(time.Since(epoch)) }

// sweepTick is how often the keepalive sweep of cfg runs: a step is taken
// at most a quarter of its delay late.
func sweepTick(cfg *wsConfig) time.Duration {
	d := cfg.keepaliveInterval
	if t := cfg.keepaliveTimeout; t > 0 && t < d {
		d = t
	}
	return max(d/4, time.Millisecond)
}

// startSweep makes sure the sweep runs, now that s has a connection that
// has armed its keepalive.
func (s *WsServer) startSweep() {
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.armed {
		return
	}
	k.armed = true
	if k.timer == nil {
		k.timer = time.AfterFunc(sweepTick(&s.cfg), s.sweep)
	} else {
		k.timer.Reset(sweepTick(&s.cfg))
	}
}

// sweep takes the keepalive steps that are due, then runs again after a
// tick unless s has no connection left (startSweep restarts it: a
// connection joins s.conns before it arms its keepalive).
func (s *WsServer) sweep() {
	now := monoNow()
	s.conns.Each(func(c Conn) {
		if cc, ok := c.(*conn); ok {
			if due := cc.kaDue.Load(); due != 0 && now >= due {
				cc.keepalive(now)
			}
		}
	})
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.conns.Len() == 0 {
		k.armed = false
		return
	}
	k.timer.Reset(sweepTick(&s.cfg))
}
