package nats

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/presencenode"
)

// Presence defaults. DefaultPresenceBucket is the bucket of a broker with
// the default prefix; see WithPresenceBucket for the others.
const (
	DefaultPresenceBucket = "ratchet-presence"
	DefaultPresenceTTL    = 30 * time.Second
)

// minPresenceTTL is the shortest TTL WithPresenceTTL accepts: the bucket's
// TTL, which the server enforces with some delay.
const minPresenceTTL = 100 * time.Millisecond

// ErrPresenceClosed is returned by a Presence used after Close.
var ErrPresenceClosed = errors.New("ratchet/nats: presence closed")

// PresenceOption configures a Presence.
type PresenceOption func(*presenceOptions)

type presenceOptions struct {
	presencenode.Options
	bucket string
}

// WithPresenceBucket sets the name of the key-value bucket, shared by every
// node of one application. By default it follows the broker's prefix (see
// PresenceBucket), so that applications with their own prefix on one NATS
// have their own presence: "ratchet-presence" for the default prefix
// "ratchet.", "myapp-presence" for "myapp.".
func WithPresenceBucket(name string) PresenceOption {
	return func(o *presenceOptions) { o.bucket = name }
}

// WithPresenceTTL sets how long the entries of a node that stopped
// refreshing them (it died, or lost NATS) stay valid (default 30s). It is
// the bucket's TTL: every node of one application must use the same. A node
// refreshes its entries every TTL/3.
func WithPresenceTTL(d time.Duration) PresenceOption {
	return func(o *presenceOptions) { o.TTL = d }
}

// WithNodeID names this node in the presence keys (default: random hex). Two
// live nodes must not share one. It must be made of letters, digits, '-' and
// '_'.
func WithNodeID(id string) PresenceOption { return func(o *presenceOptions) { o.NodeID = id } }

// Presence is a ratchet.Presence on a JetStream key-value bucket, for one
// node.
//
// Each (topic, user, node) is a key, topic.user.node with topic and user
// base64url-encoded behind a "b", put on Join, deleted on Leave and put again
// by the node's heartbeat every TTL/3; the bucket's TTL removes the keys of a
// node that died. The value of a key is the user. A watch follows the keys
// of its topic and derives joins and leaves from them: a user joins when its
// first key appears, and leaves when its last one is deleted or expires.
// Every watching node sees the same events. The server removes expired keys
// without notice, so each watch looks up the keys not refreshed for a TTL
// (by the server's timestamps: the nodes' clocks should roughly agree with
// the server's) and drops those the server no longer has. Heartbeats travel to
// every watch of their topic: with many users, a longer TTL keeps that
// traffic low.
type Presence struct {
	b    *Broker
	kv   jetstream.KeyValue
	o    presenceOptions
	node *presencenode.Node
}

type member = presencenode.Member

var _ ratchet.Presence = (*Presence)(nil)

// NewPresence creates the presence bucket if needed, with the TTL of the
// options, on b's connection (JetStream must be enabled: nats-server -js),
// and starts this node's heartbeat. Close it before closing b.
func NewPresence(ctx context.Context, b *Broker, opts ...PresenceOption) (*Presence, error) {
	o := presenceOptions{bucket: PresenceBucket(b.o.Prefix), Options: presencenode.Options{TTL: DefaultPresenceTTL}}
	for _, opt := range opts {
		opt(&o)
	}
	o.Check(DefaultPresenceTTL, minPresenceTTL)
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, fmt.Errorf("ratchet/nats: presence: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.bucket,
		Description: "ratchet presence: topic.user.node keys",
		History:     1,
		TTL:         o.TTL,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("ratchet/nats: presence bucket %q: %w", o.bucket, err)
	}
	p := &Presence{b: b, kv: kv, o: o}
	p.node = presencenode.Start(o.TTL, presencenode.Backend{
		Join: func(ctx context.Context, m member) error {
			if _, err := p.kv.Put(ctx, p.key(m), []byte(m.User)); err != nil {
				return fmt.Errorf("ratchet/nats: presence join: %w", err)
			}
			return nil
		},
		Leave: func(ctx context.Context, m member) error {
			if err := p.kv.Delete(ctx, p.key(m)); err != nil {
				return fmt.Errorf("ratchet/nats: presence leave: %w", err)
			}
			return nil
		},
		Beat:   p.beat,
		Remove: p.remove,
		BeatFailed: func(err error) {
			b.o.Report(slog.LevelWarn, "presence heartbeat failed", fmt.Errorf("ratchet/nats: presence heartbeat: %w", err))
		},
		Closed: ErrPresenceClosed,
	})
	return p, nil
}

// PresenceBucket returns the default presence bucket of a broker with the
// given prefix: the prefix without its final dot, followed by "-presence".
// Characters a bucket name cannot hold (it takes letters, digits, '-' and
// '_') become '_', and the bucket name then ends with a hash of the prefix,
// so that two prefixes never share a bucket.
func PresenceBucket(prefix string) string {
	base := strings.TrimSuffix(prefix, ".")
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, base)
	if safe == base {
		return base + "-presence"
	}
	sum := sha256.Sum256([]byte(prefix))
	return safe + "-presence-" + hex.EncodeToString(sum[:4])
}

// Bucket returns the name of the key-value bucket the presence uses.
func (p *Presence) Bucket() string { return p.o.bucket }

func enc(s string) string { return "b" + base64.RawURLEncoding.EncodeToString([]byte(s)) }

func dec(s string) (string, bool) {
	if !strings.HasPrefix(s, "b") {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(s[1:])
	return string(b), err == nil
}

func (p *Presence) key(m member) string { return enc(m.Topic) + "." + enc(m.User) + "." + p.o.NodeID }

// parseKey returns the user and node of a key of the bucket.
func parseKey(key string) (user, node string, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	user, ok = dec(parts[1])
	return user, parts[2], ok
}

// Join implements ratchet.Presence.
func (p *Presence) Join(ctx context.Context, topic, user string) error {
	return p.node.Join(ctx, member{Topic: topic, User: user})
}

// Leave implements ratchet.Presence. When the backend call fails, the
// entry still expires after the TTL, since the heartbeat no longer
// refreshes it.
func (p *Presence) Leave(ctx context.Context, topic, user string) error {
	return p.node.Leave(ctx, member{Topic: topic, User: user})
}

// Members implements ratchet.Presence.
func (p *Presence) Members(ctx context.Context, topic string) ([]string, error) {
	w, err := p.kv.Watch(ctx, enc(topic)+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("ratchet/nats: presence members: %w", err)
	}
	defer w.Stop()
	seen := make(map[string]bool)
	users := []string{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("ratchet/nats: presence members: watch ended")
			}
			if e == nil {
				slices.Sort(users)
				return users, nil
			}
			if user, _, ok := parseKey(e.Key()); ok && !seen[user] {
				seen[user] = true
				users = append(users, user)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("ratchet/nats: presence members: %w", ctx.Err())
		}
	}
}

type watch struct {
	p      *Presence
	topic  string
	fn     func(ratchet.PresenceEvent)
	w      jetstream.KeyWatcher
	state  map[string]map[string]time.Time // user -> node -> server time of last put
	tombs  map[string]time.Time            // key -> when this watch found it expired
	cancel context.CancelFunc
	done   chan struct{}
}

// Watch implements ratchet.Presence. fn runs on a goroutine of the watch; it
// must not call stop.
func (p *Presence) Watch(ctx context.Context, topic string, fn func(ratchet.PresenceEvent)) (func(), error) {
	if p.node.Closed() {
		return nil, ErrPresenceClosed
	}
	wctx, cancel := context.WithCancel(context.Background())
	kw, err := p.kv.Watch(wctx, enc(topic)+".>")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("ratchet/nats: presence watch: %w", err)
	}
	w := &watch{p: p, topic: topic, fn: fn, w: kw,
		state: make(map[string]map[string]time.Time), tombs: make(map[string]time.Time),
		cancel: cancel, done: make(chan struct{})}
	// The current keys make the starting state, without events.
	for initial := true; initial; {
		select {
		case e, ok := <-kw.Updates():
			if !ok {
				cancel()
				return nil, errors.New("ratchet/nats: presence watch ended")
			}
			if e == nil {
				initial = false
				break
			}
			if e.Operation() == jetstream.KeyValuePut {
				w.put(e, false)
			}
		case <-ctx.Done():
			_ = kw.Stop()
			cancel()
			return nil, fmt.Errorf("ratchet/nats: presence watch: %w", ctx.Err())
		}
	}
	go w.run(wctx)
	return p.node.Watch(w.stop)
}

func (w *watch) put(e jetstream.KeyValueEntry, notify bool) {
	user, node, ok := parseKey(e.Key())
	if !ok {
		return
	}
	if _, ok := w.tombs[e.Key()]; ok {
		if time.Since(e.Created()) > w.p.o.TTL {
			return // a refresh from before the key expired, late
		}
		delete(w.tombs, e.Key())
	}
	nodes := w.state[user]
	if nodes == nil {
		nodes = make(map[string]time.Time)
		w.state[user] = nodes
		if notify {
			w.fn(ratchet.PresenceEvent{Kind: ratchet.PresenceJoin, Topic: w.topic, User: user})
		}
	}
	nodes[node] = e.Created()
}

func (w *watch) remove(user, node string) {
	nodes := w.state[user]
	if nodes == nil {
		return
	}
	delete(nodes, node)
	if len(nodes) == 0 {
		delete(w.state, user)
		w.fn(ratchet.PresenceEvent{Kind: ratchet.PresenceLeave, Topic: w.topic, User: user})
	}
}

// prune removes the keys the server expired. The server drops them without
// a word, so each key not refreshed for a TTL, by the server's clock, is
// looked up: only a key the server no longer has is gone. A watch that lags
// behind the heartbeats thus never drops a live user.
func (w *watch) prune(ctx context.Context) {
	ttl := w.p.o.TTL
	for user, nodes := range w.state {
		for node, created := range nodes {
			if time.Since(created) <= ttl {
				continue
			}
			key := enc(w.topic) + "." + enc(user) + "." + node
			gctx, cancel := context.WithTimeout(ctx, ttl/3)
			e, err := w.p.kv.Get(gctx, key)
			cancel()
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
				w.tombs[key] = time.Now()
				w.remove(user, node)
			case err == nil:
				nodes[node] = e.Created()
			}
		}
	}
	for key, at := range w.tombs {
		if time.Since(at) > 2*ttl {
			delete(w.tombs, key)
		}
	}
}

func (w *watch) run(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(w.p.o.TTL / 6)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-w.w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			switch e.Operation() {
			case jetstream.KeyValuePut:
				w.put(e, true)
			default: // delete, purge
				if user, node, ok := parseKey(e.Key()); ok {
					w.remove(user, node)
				}
			}
		case <-tick.C:
			w.prune(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// stop ends the watch: called once, by the node.
func (w *watch) stop() {
	w.cancel()
	_ = w.w.Stop()
	<-w.done
}

// beat puts this node's keys again, which restarts their TTL.
func (p *Presence) beat(ctx context.Context, members []member) error {
	var errs []error
	for _, m := range members {
		if _, err := p.kv.Put(ctx, p.key(m), []byte(m.User)); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Close implements ratchet.Presence: it stops the heartbeat and the
// watches, and deletes this node's keys.
func (p *Presence) Close(ctx context.Context) error { return p.node.Close(ctx) }

// remove deletes this node's keys of members.
func (p *Presence) remove(ctx context.Context, members []member) error {
	var errs []error
	for _, m := range members {
		if err := p.kv.Delete(ctx, p.key(m)); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ratchet/nats: presence close: %w", err)
	}
	return nil
}

// crash stops the heartbeat without removing anything, as a dying node
// would. For tests.
func (p *Presence) crash() { p.node.Crash() }
