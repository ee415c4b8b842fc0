// Package presencenode is the life of one node's cluster-wide presence,
// whatever stores it: counted joins (internal/presencecount) that touch the
// backend on a pair's first join and last leave, a heartbeat that refreshes
// the node's entries before their TTL ends, the watches to stop on Close,
// and Close removing the node's entries at once. The Redis and NATS
// presences share it.
package presencenode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/ratchetgo/ratchet/internal/presencecount"
)

// Member is one (topic, user) pair.
type Member = presencecount.Member

// BeatsPerTTL is how many heartbeats a node sends within one TTL, so that
// an entry outlives a late or failed heartbeat.
const BeatsPerTTL = 3

// Backend is what a presence stores, and how it reports.
type Backend struct {
	// Join records m for this node: m's first join here.
	Join func(ctx context.Context, m Member) error
	// Leave removes this node's entry of m: m's last leave here.
	Leave func(ctx context.Context, m Member) error
	// Beat refreshes this node's entries of members, within ctx (at most
	// half a TTL). It runs every TTL/BeatsPerTTL, members or not.
	Beat func(ctx context.Context, members []Member) error
	// Remove removes the entries of members, on Close.
	Remove func(ctx context.Context, members []Member) error
	// BeatFailed reports a heartbeat that failed.
	BeatFailed func(error)
	// Closed is the error of a Join, Leave or Watch after Close.
	Closed error
}

// Options are the options both presences take: how long a node's entries
// live without a heartbeat, and the node's name in them.
type Options struct {
	TTL    time.Duration
	NodeID string
}

// Check replaces a TTL below min with def, and an empty NodeID with a random
// one (24 hex digits).
func (o *Options) Check(def, min time.Duration) {
	if o.TTL < min {
		o.TTL = def
	}
	if o.NodeID == "" {
		var id [12]byte
		_, _ = rand.Read(id[:])
		o.NodeID = hex.EncodeToString(id[:])
	}
}

// Node is one node's presence. Its methods are safe for concurrent use.
type Node struct {
	ttl time.Duration
	b   Backend

	// hb is held for writing by a heartbeat while it refreshes, and for
	// reading by Join and Leave, so a refresh never resurrects an entry that
	// a Leave just removed.
	hb    sync.RWMutex
	joins *presencecount.Counter

	mu      sync.Mutex
	closed  bool
	watches map[*watch]struct{}

	stop chan struct{}
	done chan struct{}
}

type watch struct {
	n    *Node
	end  func()
	once sync.Once
}

// Start returns a node whose entries live ttl, and starts its heartbeat.
func Start(ttl time.Duration, b Backend) *Node {
	n := &Node{
		ttl:     ttl,
		b:       b,
		joins:   presencecount.New(),
		watches: make(map[*watch]struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go n.heartbeat()
	return n
}

// Join counts a join of m, recording it on the backend if it is the first.
func (n *Node) Join(ctx context.Context, m Member) error {
	n.hb.RLock()
	defer n.hb.RUnlock()
	if n.Closed() {
		return n.b.Closed
	}
	return n.joins.Join(m, func() error { return n.b.Join(ctx, m) })
}

// Leave counts a leave of m, removing it from the backend if it is the
// last.
func (n *Node) Leave(ctx context.Context, m Member) error {
	n.hb.RLock()
	defer n.hb.RUnlock()
	if n.Closed() {
		return n.b.Closed
	}
	return n.joins.Leave(m, func() error { return n.b.Leave(ctx, m) })
}

// Closed reports whether Close (or Crash) was called.
func (n *Node) Closed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Watch registers a watch that end stops, for Close to stop it. It returns
// the watch's stop function (it calls end once), or the Closed error, after
// calling end, when the node is closed.
func (n *Node) Watch(end func()) (stop func(), err error) {
	w := &watch{n: n, end: end}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		end()
		return nil, n.b.Closed
	}
	n.watches[w] = struct{}{}
	n.mu.Unlock()
	return w.stop, nil
}

func (w *watch) stop() {
	w.once.Do(func() {
		w.end()
		w.n.mu.Lock()
		delete(w.n.watches, w)
		w.n.mu.Unlock()
	})
}

func (n *Node) heartbeat() {
	defer close(n.done)
	t := time.NewTicker(n.ttl / BeatsPerTTL)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if err := n.beat(); err != nil {
			n.b.BeatFailed(err)
		}
	}
}

func (n *Node) beat() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.ttl/2)
	defer cancel()
	n.hb.Lock()
	defer n.hb.Unlock()
	return n.b.Beat(ctx, n.joins.Members())
}

// Close stops the heartbeat and every watch, and removes the node's
// entries. Later calls do nothing.
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	watches := make([]*watch, 0, len(n.watches))
	for w := range n.watches {
		watches = append(watches, w)
	}
	n.mu.Unlock()
	close(n.stop)
	<-n.done
	for _, w := range watches {
		w.stop()
	}
	n.hb.Lock()
	defer n.hb.Unlock()
	members := n.joins.Reset()
	if len(members) == 0 {
		return nil
	}
	return n.b.Remove(ctx, members)
}

// Crash stops the heartbeat without removing anything, as a node that dies
// would. For tests.
func (n *Node) Crash() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	close(n.stop)
	<-n.done
}
