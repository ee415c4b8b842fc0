//go:build unix

package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// HistoryTraits says what a HistoryBroker promises beyond the contract every
// one keeps.
type HistoryTraits struct {
	// Contiguous: offsets grow by exactly 1 per message of a topic.
	Contiguous bool
	// TopicTTL: HistoryPolicy.TTL is honoured per topic (a stream idle for
	// longer is dropped and the next publish starts a new epoch).
	TopicTTL bool
}

// RunHistory runs the history conformance suite on the HistoryBrokers
// newNode makes: positions assigned at publish and carried by live delivery
// on every node, in position order under concurrent publishers on two
// nodes; reads after a position, from the start, with a limit; trimming to
// the policy's size; positions of another epoch or trimmed away reported as
// Lost; plain publishes on a history topic delivered without a position.
func RunHistory(t *testing.T, newNode NewNode, traits HistoryTraits) {
	node := func(t *testing.T) ratchet.HistoryBroker {
		b := newNode(t)
		t.Cleanup(func() { _ = b.Close() })
		hb, ok := b.(ratchet.HistoryBroker)
		if !ok {
			t.Fatalf("%T is not a ratchet.HistoryBroker", b)
		}
		return hb
	}
	t.Run("PositionsLiveOnEveryNode", func(t *testing.T) { testHistoryLive(t, node, traits) })
	t.Run("Read", func(t *testing.T) { testHistoryRead(t, node, traits) })
	t.Run("Trim", func(t *testing.T) { testHistoryTrim(t, node) })
	t.Run("ConcurrentPublishersInOrder", func(t *testing.T) { testHistoryConcurrent(t, node) })
	t.Run("PlainPublish", func(t *testing.T) { testHistoryPlain(t, node) })
	if traits.TopicTTL {
		t.Run("TTL", func(t *testing.T) { testHistoryTTL(t, node) })
	}
}

// PubCollector gathers the publications a subscription receives.
type PubCollector struct {
	ch chan ratchet.Publication
}

// NewPubCollector returns a PubCollector holding up to size publications.
func NewPubCollector(size int) *PubCollector {
	return &PubCollector{ch: make(chan ratchet.Publication, size)}
}

// Deliver records p; it never blocks (an overflow fails Next later).
func (c *PubCollector) Deliver(p ratchet.Publication) {
	select {
	case c.ch <- p:
	default:
	}
}

// Next returns the next publication, failing the test after Wait.
func (c *PubCollector) Next(t testing.TB) ratchet.Publication {
	t.Helper()
	select {
	case p := <-c.ch:
		return p
	case <-time.After(Wait):
		t.Fatalf("no publication within %v", Wait)
		return ratchet.Publication{}
	}
}

// SubscribePubs subscribes c to topic on b with positions.
func SubscribePubs(t testing.TB, b ratchet.HistoryBroker, topic string, c *PubCollector) ratchet.Subscription {
	t.Helper()
	cx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	s, err := b.SubscribePublications(cx, topic, c.Deliver)
	if err != nil {
		t.Fatalf("subscribe %q: %v", topic, err)
	}
	return s
}

// PublishHistory publishes text on topic with policy, failing on error.
func PublishHistory(t testing.TB, b ratchet.HistoryBroker, topic, text string, policy ratchet.HistoryPolicy) ratchet.Position {
	t.Helper()
	cx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	pos, err := b.PublishHistory(cx, topic, ratchet.Text(text), policy)
	if err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
	if pos.IsZero() {
		t.Fatalf("publish %q: zero position", topic)
	}
	return pos
}

// ReadHistory reads topic's history after since, failing on error.
func ReadHistory(t testing.TB, b ratchet.HistoryBroker, topic string, since ratchet.Position, limit int) ratchet.HistoryPage {
	t.Helper()
	cx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	page, err := b.History(cx, topic, since, limit)
	if err != nil {
		t.Fatalf("history %q since %v: %v", topic, since, err)
	}
	return page
}

// texts returns the payloads of pubs.
func texts(pubs []ratchet.Publication) []string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = string(p.Message.Data)
	}
	return out
}

func seq(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

var policy100 = ratchet.HistoryPolicy{Size: 100, TTL: time.Minute}

func testHistoryLive(t *testing.T, node func(*testing.T) ratchet.HistoryBroker, traits HistoryTraits) {
	a, b := node(t), node(t)
	topic := Topic(t)
	onA, onB := NewPubCollector(64), NewPubCollector(64)
	SubscribePubs(t, a, topic, onA)
	SubscribePubs(t, b, topic, onB)
	var positions []ratchet.Position
	for i := 1; i <= 10; i++ {
		positions = append(positions, PublishHistory(t, a, topic, fmt.Sprint(i), policy100))
	}
	for i, p := range positions {
		if i > 0 {
			prev := positions[i-1]
			if p.Epoch != prev.Epoch || p.Offset <= prev.Offset {
				t.Fatalf("position %d is %v after %v", i+1, p, prev)
			}
			if traits.Contiguous && p.Offset != prev.Offset+1 {
				t.Fatalf("offsets not contiguous: %v after %v", p, prev)
			}
		}
		for name, c := range map[string]*PubCollector{"publishing node": onA, "other node": onB} {
			got := c.Next(t)
			if got.Position != p || string(got.Message.Data) != fmt.Sprint(i+1) || got.Topic != topic {
				t.Fatalf("%s: got %q at %v on %q, want %q at %v", name, got.Message.Data, got.Position, got.Topic, fmt.Sprint(i+1), p)
			}
		}
	}
}

func testHistoryRead(t *testing.T, node func(*testing.T) ratchet.HistoryBroker, traits HistoryTraits) {
	a, b := node(t), node(t)
	topic := Topic(t)
	empty := ReadHistory(t, b, topic, ratchet.Position{}, 10)
	if empty.Latest.IsZero() || len(empty.Publications) != 0 || empty.Lost {
		t.Fatalf("history of a new topic: %+v (want no publications and a Latest to resume from)", empty)
	}
	var pos []ratchet.Position
	for i := 1; i <= 10; i++ {
		pos = append(pos, PublishHistory(t, a, topic, fmt.Sprint(i), policy100))
	}
	all := ReadHistory(t, b, topic, ratchet.Position{}, 100)
	if !equal(texts(all.Publications), seq(1, 10)) || all.Latest != pos[9] || all.Lost {
		t.Fatalf("read from the start: %v latest %v lost %v", texts(all.Publications), all.Latest, all.Lost)
	}
	for i, p := range all.Publications {
		if p.Position != pos[i] || p.Topic != topic {
			t.Fatalf("publication %d at %v on %q, want %v", i+1, p.Position, p.Topic, pos[i])
		}
	}
	after := ReadHistory(t, b, topic, pos[3], 100)
	if !equal(texts(after.Publications), seq(5, 10)) || after.Lost {
		t.Fatalf("read after 4: %v lost %v", texts(after.Publications), after.Lost)
	}
	limited := ReadHistory(t, b, topic, pos[3], 2)
	if !equal(texts(limited.Publications), seq(5, 6)) || limited.Latest != pos[9] {
		t.Fatalf("read after 4, limit 2: %v latest %v", texts(limited.Publications), limited.Latest)
	}
	none := ReadHistory(t, b, topic, pos[9], 100)
	if len(none.Publications) != 0 || none.Lost {
		t.Fatalf("read after the newest: %v lost %v", texts(none.Publications), none.Lost)
	}
	latestOnly := ReadHistory(t, b, topic, pos[3], 0)
	if len(latestOnly.Publications) != 0 || latestOnly.Latest != pos[9] || latestOnly.Lost {
		t.Fatalf("read with limit 0: %+v", latestOnly)
	}
	other := ReadHistory(t, b, topic, ratchet.Position{Epoch: "otherepoch", Offset: pos[3].Offset}, 100)
	if !other.Lost {
		t.Fatalf("a position of another epoch is not reported lost: %+v", other)
	}
	future := ReadHistory(t, b, topic, ratchet.Position{Epoch: pos[0].Epoch, Offset: pos[9].Offset + 1000}, 100)
	if !future.Lost {
		t.Fatalf("a position after the newest is not reported lost: %+v", future)
	}
	gone := ReadHistory(t, b, Topic(t)+"-never", pos[3], 100)
	switch {
	case traits.Contiguous && !gone.Lost:
		t.Fatalf("a position on a topic without a stream is not reported lost: %+v", gone)
	case !traits.Contiguous && (gone.Lost || len(gone.Publications) != 0 || gone.Latest.Epoch != pos[3].Epoch):
		// Offsets are shared by the topics: pos[3] is also where a topic
		// without messages stood then, and nothing of it came after.
		t.Fatalf("a shared position on a topic without messages: %+v, want nothing lost", gone)
	}
	// A client that read Latest of the empty topic resumes from it.
	resumed := ReadHistory(t, b, topic, empty.Latest, 100)
	if !equal(texts(resumed.Publications), seq(1, 10)) || resumed.Lost {
		t.Fatalf("read after the Latest of the empty topic: %v lost %v", texts(resumed.Publications), resumed.Lost)
	}
}

func testHistoryTrim(t *testing.T, node func(*testing.T) ratchet.HistoryBroker) {
	a := node(t)
	topic := Topic(t)
	small := ratchet.HistoryPolicy{Size: 3, TTL: time.Minute}
	var pos []ratchet.Position
	for i := 1; i <= 6; i++ {
		pos = append(pos, PublishHistory(t, a, topic, fmt.Sprint(i), small))
	}
	kept := ReadHistory(t, a, topic, ratchet.Position{}, 100)
	if !equal(texts(kept.Publications), seq(4, 6)) {
		t.Fatalf("kept %v, want the newest 3", texts(kept.Publications))
	}
	if p := ReadHistory(t, a, topic, pos[2], 100); p.Lost || !equal(texts(p.Publications), seq(4, 6)) {
		t.Fatalf("read after 3 (4 is the oldest kept): %v lost %v", texts(p.Publications), p.Lost)
	}
	if p := ReadHistory(t, a, topic, pos[1], 100); !p.Lost {
		t.Fatalf("read after 2 (3 was trimmed): not lost, %v", texts(p.Publications))
	}
}

func testHistoryConcurrent(t *testing.T, node func(*testing.T) ratchet.HistoryBroker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	const each = 200
	onA, onB := NewPubCollector(4*each), NewPubCollector(4*each)
	SubscribePubs(t, a, topic, onA)
	SubscribePubs(t, b, topic, onB)
	var wg sync.WaitGroup
	for _, n := range []ratchet.HistoryBroker{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				cx, cancel := context.WithTimeout(context.Background(), Wait)
				_, err := n.PublishHistory(cx, topic, ratchet.Text(fmt.Sprint(i)), ratchet.HistoryPolicy{Size: 4 * each, TTL: time.Minute})
				cancel()
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for name, c := range map[string]*PubCollector{"node A": onA, "node B": onB} {
		var last ratchet.Position
		for i := 0; i < 2*each; i++ {
			p := c.Next(t)
			if i > 0 && (p.Position.Epoch != last.Epoch || p.Position.Offset <= last.Offset) {
				t.Fatalf("%s: delivery %d at %v after %v: live order is not position order", name, i, p.Position, last)
			}
			last = p.Position
		}
	}
	page := ReadHistory(t, a, topic, ratchet.Position{}, 4*each)
	if len(page.Publications) != 2*each {
		t.Fatalf("history holds %d, want %d", len(page.Publications), 2*each)
	}
}

func testHistoryPlain(t *testing.T, node func(*testing.T) ratchet.HistoryBroker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	onB := NewPubCollector(8)
	SubscribePubs(t, b, topic, onB)
	first := PublishHistory(t, a, topic, "kept", policy100)
	Publish(t, a, topic, ratchet.Text("plain"))
	if p := onB.Next(t); p.Position != first {
		t.Fatalf("history publish delivered at %v, want %v", p.Position, first)
	}
	if p := onB.Next(t); !p.Position.IsZero() || string(p.Message.Data) != "plain" {
		t.Fatalf("plain publish delivered %q at %v, want no position", p.Message.Data, p.Position)
	}
	if page := ReadHistory(t, b, topic, ratchet.Position{}, 10); !equal(texts(page.Publications), []string{"kept"}) {
		t.Fatalf("history %v: a plain publish must not be kept", texts(page.Publications))
	}
}

func testHistoryTTL(t *testing.T, node func(*testing.T) ratchet.HistoryBroker) {
	a := node(t)
	topic := Topic(t)
	short := ratchet.HistoryPolicy{Size: 10, TTL: 200 * time.Millisecond}
	old := PublishHistory(t, a, topic, "old", short)
	WaitFor(t, "the idle stream to expire", func() bool {
		return ReadHistory(t, a, topic, old, 10).Lost
	})
	fresh := PublishHistory(t, a, topic, "new", short)
	if fresh.Epoch == old.Epoch {
		t.Fatalf("a stream re-created after expiry kept epoch %q", old.Epoch)
	}
}
