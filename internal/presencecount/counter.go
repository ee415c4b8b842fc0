// Package presencecount counts, on one node, the joins of (topic, user)
// pairs, so that a cluster-wide ratchet.Presence touches its backend only on
// a pair's first join and last leave. The Redis and NATS presences share it.
package presencecount

import (
	"hash/maphash"
	"sync"
)

// Member is one (topic, user) pair.
type Member struct{ Topic, User string }

// Counter counts joins by Member. Join and Leave of one Member are
// serialised with its backend call; different Members go in parallel.
type Counter struct {
	seed    maphash.Seed
	stripes [64]sync.Mutex

	mu sync.Mutex
	n  map[Member]int
}

// New returns an empty Counter.
func New() *Counter { return &Counter{seed: maphash.MakeSeed(), n: make(map[Member]int)} }

func (c *Counter) stripe(m Member) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(m.Topic)
	h.WriteByte(0)
	h.WriteString(m.User)
	return &c.stripes[h.Sum64()%uint64(len(c.stripes))]
}

// Join counts a join of m. On m's first join it calls first; if first fails
// the join is undone and its error returned.
func (c *Counter) Join(m Member, first func() error) error {
	st := c.stripe(m)
	st.Lock()
	defer st.Unlock()
	c.mu.Lock()
	c.n[m]++
	isFirst := c.n[m] == 1
	c.mu.Unlock()
	if !isFirst {
		return nil
	}
	if err := first(); err != nil {
		c.mu.Lock()
		if c.n[m]--; c.n[m] <= 0 {
			delete(c.n, m)
		}
		c.mu.Unlock()
		return err
	}
	return nil
}

// Leave undoes one join of m; after the last one it calls last. Leaving a
// Member with no joins does nothing.
func (c *Counter) Leave(m Member, last func() error) error {
	st := c.stripe(m)
	st.Lock()
	defer st.Unlock()
	c.mu.Lock()
	n, ok := c.n[m]
	switch {
	case !ok:
		c.mu.Unlock()
		return nil
	case n > 1:
		c.n[m] = n - 1
		c.mu.Unlock()
		return nil
	}
	delete(c.n, m)
	c.mu.Unlock()
	return last()
}

// Members returns the Members with joins, for a heartbeat to refresh.
func (c *Counter) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]Member, 0, len(c.n))
	for m := range c.n {
		ms = append(ms, m)
	}
	return ms
}

// Reset forgets every join and returns the Members there were.
func (c *Counter) Reset() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]Member, 0, len(c.n))
	for m := range c.n {
		ms = append(ms, m)
	}
	clear(c.n)
	return ms
}
