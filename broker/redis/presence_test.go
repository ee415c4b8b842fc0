package redis_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

type events chan ratchet.PresenceEvent

func (e events) expect(t *testing.T, kind ratchet.PresenceKind, user string, within time.Duration) {
	t.Helper()
	select {
	case ev := <-e:
		if ev.Kind != kind || ev.User != user {
			t.Fatalf("got %v %q, want %v %q", ev.Kind, ev.User, kind, user)
		}
	case <-time.After(within):
		t.Fatalf("no %v %q within %v", kind, user, within)
	}
}

func (e events) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case ev := <-e:
		t.Fatalf("unexpected %v %q", ev.Kind, ev.User)
	case <-time.After(wait):
	}
}

func newPresence(t *testing.T, b *redis.Broker, opts ...redis.PresenceOption) *redis.Presence {
	p := redis.NewPresence(b, opts...)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func watch(t *testing.T, p ratchet.Presence, topic string) events {
	ev := make(events, 64)
	stop, err := p.Watch(context.Background(), topic, func(e ratchet.PresenceEvent) {
		if e.Topic != topic {
			t.Errorf("event for topic %q on a watch of %q", e.Topic, topic)
		}
		ev <- e
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ev
}

func members(t *testing.T, p ratchet.Presence, topic string, want ...string) {
	t.Helper()
	got, err := p.Members(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Members = %q, want %q", got, want)
	}
}

func TestPresenceAcrossNodes(t *testing.T) {
	addr := redisAddr(t)
	ctx := context.Background()
	const ttl = time.Second
	pa := newPresence(t, newBroker(t, addr), redis.WithPresenceTTL(ttl))
	pb := newPresence(t, newBroker(t, addr), redis.WithPresenceTTL(ttl))
	topic := brokertest.Topic(t)
	ev := watch(t, pb, topic)

	if err := pa.Join(ctx, topic, "alice"); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, ratchet.PresenceJoin, "alice", 5*time.Second)
	members(t, pa, topic, "alice")
	members(t, pb, topic, "alice")

	// The same user on a second node: no event; leaving one node: none.
	if err := pb.Join(ctx, topic, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := pa.Leave(ctx, topic, "alice"); err != nil {
		t.Fatal(err)
	}
	members(t, pa, topic, "alice")
	// Joins on one node are counted.
	for range 2 {
		if err := pa.Join(ctx, topic, "bob"); err != nil {
			t.Fatal(err)
		}
	}
	ev.expect(t, ratchet.PresenceJoin, "bob", 5*time.Second)
	members(t, pb, topic, "alice", "bob")
	_ = pa.Leave(ctx, topic, "bob")
	// Outlive the TTL: the heartbeats keep everyone present.
	ev.none(t, 2*ttl)
	members(t, pb, topic, "alice", "bob")
	_ = pa.Leave(ctx, topic, "bob")
	ev.expect(t, ratchet.PresenceLeave, "bob", 5*time.Second)
	_ = pb.Leave(ctx, topic, "alice")
	ev.expect(t, ratchet.PresenceLeave, "alice", 5*time.Second)
	members(t, pa, topic)
	// Leaving more than joining is harmless.
	if err := pb.Leave(ctx, topic, "alice"); err != nil {
		t.Fatal(err)
	}
	ev.none(t, 100*time.Millisecond)
}

// The users of a node that dies leave when their entries expire.
func TestPresenceNodeDies(t *testing.T) {
	addr := redisAddr(t)
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	watcher := newPresence(t, newBroker(t, addr), redis.WithPresenceTTL(ttl))
	dying := redis.NewPresence(newBroker(t, addr), redis.WithPresenceTTL(ttl))
	topic := brokertest.Topic(t)
	ev := watch(t, watcher, topic)
	if err := dying.Join(ctx, topic, "carol"); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, ratchet.PresenceJoin, "carol", 5*time.Second)
	redis.Crash(dying)
	start := time.Now()
	ev.expect(t, ratchet.PresenceLeave, "carol", 4*ttl)
	t.Logf("leave of a dead node's user after %v (TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
	members(t, watcher, topic)
}

// Close removes the node's entries at once.
func TestPresenceClose(t *testing.T) {
	addr := redisAddr(t)
	ctx := context.Background()
	watcher := newPresence(t, newBroker(t, addr))
	closing := redis.NewPresence(newBroker(t, addr))
	topic := brokertest.Topic(t)
	ev := watch(t, watcher, topic)
	if err := closing.Join(ctx, topic, "dave"); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, ratchet.PresenceJoin, "dave", 5*time.Second)
	if err := closing.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, ratchet.PresenceLeave, "dave", 5*time.Second)
	members(t, watcher, topic)
	if err := closing.Join(ctx, topic, "dave"); err == nil {
		t.Fatal("Join after Close succeeded")
	}
}

// A watch stopped receives nothing more.
func TestPresenceStopWatch(t *testing.T) {
	addr := redisAddr(t)
	ctx := context.Background()
	p := newPresence(t, newBroker(t, addr))
	topic := brokertest.Topic(t)
	got := make(events, 8)
	stop, err := p.Watch(ctx, topic, func(e ratchet.PresenceEvent) { got <- e })
	if err != nil {
		t.Fatal(err)
	}
	other := watch(t, p, topic)
	_ = p.Join(ctx, topic, "erin")
	got.expect(t, ratchet.PresenceJoin, "erin", 5*time.Second)
	other.expect(t, ratchet.PresenceJoin, "erin", 5*time.Second)
	stop()
	stop()
	_ = p.Leave(ctx, topic, "erin")
	other.expect(t, ratchet.PresenceLeave, "erin", 5*time.Second)
	got.none(t, 50*time.Millisecond)
}
