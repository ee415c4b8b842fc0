//go:build unix

package brokertest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// NewPresence returns the Presence of a new node of the cluster, whose
// entries expire ttl after its last heartbeat. The suite closes it, except
// the ones it crashes.
type NewPresence func(t *testing.T, ttl time.Duration) ratchet.Presence

// RunPresence runs the presence conformance suite: membership and events
// across nodes, counted joins, heartbeats outliving the TTL, the users of a
// dead node leaving when their entries expire (crash must stop p's heartbeat
// without removing anything, as dying would), Close removing the node's
// users at once, and stopping a watch.
func RunPresence(t *testing.T, newPresence NewPresence, crash func(p ratchet.Presence)) {
	node := func(t *testing.T, ttl time.Duration) ratchet.Presence {
		p := newPresence(t, ttl)
		t.Cleanup(func() { _ = p.Close(context.Background()) })
		return p
	}
	t.Run("AcrossNodes", func(t *testing.T) { testPresenceAcrossNodes(t, node) })
	t.Run("NodeDies", func(t *testing.T) { testPresenceNodeDies(t, newPresence, node, crash) })
	t.Run("Close", func(t *testing.T) { testPresenceClose(t, newPresence, node) })
	t.Run("StopWatch", func(t *testing.T) { testPresenceStopWatch(t, node) })
}

// Events collects presence events.
type Events chan ratchet.PresenceEvent

// Expect checks that the next event, within the given time, is kind for
// user.
func (e Events) Expect(t *testing.T, kind ratchet.PresenceKind, user string, within time.Duration) {
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

// None checks that no event comes within wait.
func (e Events) None(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case ev := <-e:
		t.Fatalf("unexpected %v %q", ev.Kind, ev.User)
	case <-time.After(wait):
	}
}

// Watch watches topic on p until the end of the test.
func Watch(t *testing.T, p ratchet.Presence, topic string) Events {
	t.Helper()
	ev := make(Events, 64)
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

// Members checks topic's members as p sees them.
func Members(t *testing.T, p ratchet.Presence, topic string, want ...string) {
	t.Helper()
	got, err := p.Members(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || !slices.Equal(got, want) {
		t.Fatalf("Members = %q, want %q", got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testPresenceAcrossNodes(t *testing.T, node func(*testing.T, time.Duration) ratchet.Presence) {
	ctx := context.Background()
	const ttl = 2 * time.Second
	pa, pb := node(t, ttl), node(t, ttl)
	topic := Topic(t)
	ev := Watch(t, pb, topic)

	must(t, pa.Join(ctx, topic, "alice"))
	ev.Expect(t, ratchet.PresenceJoin, "alice", 5*time.Second)
	Members(t, pa, topic, "alice")
	Members(t, pb, topic, "alice")

	// The same user on a second node: no event; leaving one node: none.
	must(t, pb.Join(ctx, topic, "alice"))
	must(t, pa.Leave(ctx, topic, "alice"))
	Members(t, pa, topic, "alice")
	// Joins on one node are counted.
	must(t, pa.Join(ctx, topic, "bob"))
	must(t, pa.Join(ctx, topic, "bob"))
	ev.Expect(t, ratchet.PresenceJoin, "bob", 5*time.Second)
	Members(t, pb, topic, "alice", "bob")
	must(t, pa.Leave(ctx, topic, "bob"))
	// Outlive the TTL: the heartbeats keep everyone present.
	ev.None(t, ttl+ttl/4)
	Members(t, pb, topic, "alice", "bob")
	must(t, pa.Leave(ctx, topic, "bob"))
	ev.Expect(t, ratchet.PresenceLeave, "bob", 5*time.Second)
	must(t, pb.Leave(ctx, topic, "alice"))
	ev.Expect(t, ratchet.PresenceLeave, "alice", 5*time.Second)
	Members(t, pa, topic)
	// Leaving more than joining is harmless.
	must(t, pb.Leave(ctx, topic, "alice"))
	ev.None(t, 100*time.Millisecond)
	// Topics are separate.
	other := Topic(t)
	must(t, pa.Join(ctx, other, "carol"))
	Members(t, pb, topic)
	Members(t, pb, other, "carol")
	ev.None(t, 100*time.Millisecond)
}

func testPresenceNodeDies(t *testing.T, raw NewPresence, node func(*testing.T, time.Duration) ratchet.Presence, crash func(ratchet.Presence)) {
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	watcher := node(t, ttl)
	dying := raw(t, ttl)
	topic := Topic(t)
	ev := Watch(t, watcher, topic)
	must(t, dying.Join(ctx, topic, "carol"))
	ev.Expect(t, ratchet.PresenceJoin, "carol", 5*time.Second)
	crash(dying)
	start := time.Now()
	ev.Expect(t, ratchet.PresenceLeave, "carol", 4*ttl)
	t.Logf("leave of a dead node's user after %v (TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
	Members(t, watcher, topic)
}

func testPresenceClose(t *testing.T, raw NewPresence, node func(*testing.T, time.Duration) ratchet.Presence) {
	ctx := context.Background()
	watcher := node(t, 30*time.Second)
	closing := raw(t, 30*time.Second)
	topic := Topic(t)
	ev := Watch(t, watcher, topic)
	must(t, closing.Join(ctx, topic, "dave"))
	ev.Expect(t, ratchet.PresenceJoin, "dave", 5*time.Second)
	must(t, closing.Close(ctx))
	ev.Expect(t, ratchet.PresenceLeave, "dave", 5*time.Second)
	Members(t, watcher, topic)
	if err := closing.Join(ctx, topic, "dave"); err == nil {
		t.Fatal("Join after Close succeeded")
	}
	must(t, closing.Close(ctx))
}

func testPresenceStopWatch(t *testing.T, node func(*testing.T, time.Duration) ratchet.Presence) {
	ctx := context.Background()
	p := node(t, 30*time.Second)
	topic := Topic(t)
	got := make(Events, 8)
	stop, err := p.Watch(ctx, topic, func(e ratchet.PresenceEvent) { got <- e })
	must(t, err)
	other := Watch(t, p, topic)
	must(t, p.Join(ctx, topic, "erin"))
	got.Expect(t, ratchet.PresenceJoin, "erin", 5*time.Second)
	other.Expect(t, ratchet.PresenceJoin, "erin", 5*time.Second)
	stop()
	stop()
	must(t, p.Leave(ctx, topic, "erin"))
	other.Expect(t, ratchet.PresenceLeave, "erin", 5*time.Second)
	got.None(t, 50*time.Millisecond)
}

// NewPrefixedPresence returns the Presence of a new node of the cluster
// whose broker has the given prefix (and the presence its default
// settings). The suite closes it.
type NewPrefixedPresence func(t *testing.T, prefix string) ratchet.Presence

// RunPresencePrefixes checks that applications with different broker
// prefixes on one server have separate presence, and nodes of one
// application share theirs.
func RunPresencePrefixes(t *testing.T, newPresence NewPrefixedPresence, prefixA, prefixB string) {
	ctx := context.Background()
	node := func(prefix string) ratchet.Presence {
		p := newPresence(t, prefix)
		t.Cleanup(func() { _ = p.Close(ctx) })
		return p
	}
	a1, a2, b := node(prefixA), node(prefixA), node(prefixB)
	topic := Topic(t)
	evA, evB := Watch(t, a2, topic), Watch(t, b, topic)
	// Each watch sees one topic's events in order: had alice's join reached
	// b, it would come before bob's, and bob's before alice's leave on a2.
	must(t, a1.Join(ctx, topic, "alice"))
	evA.Expect(t, ratchet.PresenceJoin, "alice", 5*time.Second)
	must(t, b.Join(ctx, topic, "bob"))
	evB.Expect(t, ratchet.PresenceJoin, "bob", 5*time.Second)
	Members(t, a2, topic, "alice")
	Members(t, b, topic, "bob")
	must(t, a1.Leave(ctx, topic, "alice"))
	evA.Expect(t, ratchet.PresenceLeave, "alice", 5*time.Second)
	must(t, b.Leave(ctx, topic, "bob"))
	evB.Expect(t, ratchet.PresenceLeave, "bob", 5*time.Second)
}
