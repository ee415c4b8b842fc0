// Package replay remembers the signatures of signed HTTP requests within
// their time window, in bounded memory, so that each one is accepted once.
// The publish API of package push and the HTTP API of package pusher share
// it.
package replay

import (
	"container/heap"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Errors of Cache.Check.
var (
	// ErrReplay: the signature was accepted before.
	ErrReplay = errors.New("replay: signature already seen")
	// ErrStale: the timestamp is at or below the floor of forgotten
	// entries, so a replay could not be told apart.
	ErrStale = errors.New("replay: timestamp too old to be checked")
)

// Cache remembers the signatures seen within the time window. Its memory is
// bounded: when full, it forgets the entry with the oldest timestamp and
// from then on refuses every timestamp not newer than the forgotten one (the
// floor), so no forgotten signature can be replayed. Under a flood of more
// than max requests per window, honest requests whose timestamp is not newer
// than the floor are refused as stale; they succeed when signed again.
type Cache struct {
	mu     sync.Mutex
	max    int
	window int64 // seconds
	seen   map[[sha256.Size]byte]struct{}
	byTime entries
	floor  int64 // timestamps <= floor are refused; 0: none
}

type entry struct {
	ts  int64
	mac [sha256.Size]byte
}

type entries []entry

func (h entries) Len() int           { return len(h) }
func (h entries) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h entries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entries) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *entries) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// New returns a Cache of at most max signatures, each remembered for window
// (the window within which the timestamps are accepted at all).
func New(max int, window time.Duration) *Cache {
	return &Cache{
		max:    max,
		window: int64(window / time.Second),
		seen:   make(map[[sha256.Size]byte]struct{}),
	}
}

// Check records a verified signature mac, signed with Unix timestamp ts,
// and returns ErrReplay if it was seen before, or ErrStale if ts is at or
// below the floor.
func (c *Cache) Check(mac [sha256.Size]byte, ts int64, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Forget what the window check refuses anyway.
	limit := now.Unix() - c.window
	for len(c.byTime) > 0 && c.byTime[0].ts < limit {
		delete(c.seen, heap.Pop(&c.byTime).(entry).mac)
	}
	if _, ok := c.seen[mac]; ok {
		return ErrReplay
	}
	if c.floor != 0 && ts <= c.floor {
		return ErrStale
	}
	if len(c.byTime) >= c.max {
		if ts <= c.byTime[0].ts {
			// Not newer than anything kept: the floor guards it instead.
			c.floor = max(c.floor, ts)
			return nil
		}
		e := heap.Pop(&c.byTime).(entry)
		delete(c.seen, e.mac)
		c.floor = max(c.floor, e.ts)
	}
	heap.Push(&c.byTime, entry{ts: ts, mac: mac})
	c.seen[mac] = struct{}{}
	return nil
}

// Len returns the number of remembered signatures.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
