package push

import (
	"container/heap"
	"crypto/sha256"
	"sync"
	"time"
)

// replayCache remembers the signatures seen within the time window, so that
// each signed request is accepted once. Its memory is bounded: when full, it
// forgets the entry with the oldest timestamp and from then on refuses every
// timestamp not newer than the forgotten one (the floor), so no forgotten
// signature can be replayed. Under a flood of more than max requests per
// window, honest requests whose timestamp is not newer than the floor are
// refused as stale; they succeed when signed again.
type replayCache struct {
	mu     sync.Mutex
	max    int
	window int64 // seconds
	seen   map[[sha256.Size]byte]struct{}
	byTime replayHeap
	floor  int64 // timestamps <= floor are refused; 0: none
}

type replayEntry struct {
	ts  int64
	mac [sha256.Size]byte
}

type replayHeap []replayEntry

func (h replayHeap) Len() int           { return len(h) }
func (h replayHeap) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h replayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *replayHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *replayHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newReplayCache(max int, window time.Duration) *replayCache {
	return &replayCache{
		max:    max,
		window: int64(window / time.Second),
		seen:   make(map[[sha256.Size]byte]struct{}),
	}
}

// check records a verified signature and reports errReplay if it was seen
// before, or errStale if its timestamp is at or below the floor.
func (c *replayCache) check(mac [sha256.Size]byte, ts int64, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Forget what the window check refuses anyway.
	limit := now.Unix() - c.window
	for len(c.byTime) > 0 && c.byTime[0].ts < limit {
		delete(c.seen, heap.Pop(&c.byTime).(replayEntry).mac)
	}
	if _, ok := c.seen[mac]; ok {
		return errReplay
	}
	if c.floor != 0 && ts <= c.floor {
		return errStale
	}
	if len(c.byTime) >= c.max {
		if ts <= c.byTime[0].ts {
			// Not newer than anything kept: the floor guards it instead.
			c.floor = max(c.floor, ts)
			return nil
		}
		e := heap.Pop(&c.byTime).(replayEntry)
		delete(c.seen, e.mac)
		c.floor = max(c.floor, e.ts)
	}
	heap.Push(&c.byTime, replayEntry{ts: ts, mac: mac})
	c.seen[mac] = struct{}{}
	return nil
}

// len returns the number of remembered signatures.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
