package nats_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ratchetgo/ratchet"
	natsbroker "github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// The history conformance suite, on the stream of the default prefix that
// the tests share: topics of several sizes in one stream.
func TestHistoryConformance(t *testing.T) {
	u := natsURL(t)
	brokertest.RunHistory(t, func(t *testing.T) ratchet.Broker { return newBroker(t, u) },
		brokertest.HistoryTraits{Contiguous: false, TopicTTL: false})
}

// The suite again, each test with a prefix of its own: the nodes create the
// stream on first use, each with the limits of its first policy.
func TestHistoryConformanceNewStream(t *testing.T) {
	u := natsURL(t)
	prefixes := map[*testing.T]string{}
	var mu sync.Mutex
	brokertest.RunHistory(t, func(t *testing.T) ratchet.Broker {
		mu.Lock()
		p, ok := prefixes[t]
		if !ok {
			p = freshPrefix(t, u)
			prefixes[t] = p
		}
		mu.Unlock()
		return newBroker(t, u, natsbroker.WithPrefix(p))
	}, brokertest.HistoryTraits{Contiguous: false, TopicTTL: false})
}

var prefixSeq atomic.Uint64

// freshPrefix returns a prefix no other test uses, and deletes its history
// stream at the end of the test.
func freshPrefix(t testing.TB, u string) string {
	p := fmt.Sprintf("h%s%d.", strconv.FormatInt(time.Now().UnixNano(), 36), prefixSeq.Add(1))
	t.Cleanup(func() {
		js := rawJetStream(t, u)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			name, err := js.StreamNameBySubject(ctx, historyFilter(p))
			if err != nil {
				return
			}
			if err := js.DeleteStream(ctx, name); err != nil {
				t.Errorf("delete stream %s: %v", name, err)
				return
			}
		}
	})
	return p
}

func historyFilter(prefix string) string { return strings.TrimSuffix(prefix, ".") + "_h.>" }

// rawJetStream returns JetStream on a connection of the test's own.
func rawJetStream(t testing.TB, u string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func readHistory(t testing.TB, b ratchet.HistoryBroker, topic string, since ratchet.Position, limit int) ratchet.HistoryPage {
	t.Helper()
	return brokertest.ReadHistory(t, b, topic, since, limit)
}

func payloads(pubs []ratchet.Publication) []string {
	out := []string{}
	for _, p := range pubs {
		out = append(out, string(p.Message.Data))
	}
	return out
}

func texts(from, to int) []string {
	out := []string{}
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func publishAll(t testing.TB, b ratchet.HistoryBroker, topic string, from, to int, policy ratchet.HistoryPolicy) []ratchet.Position {
	t.Helper()
	var out []ratchet.Position
	for i := from; i <= to; i++ {
		out = append(out, brokertest.PublishHistory(t, b, topic, strconv.Itoa(i), policy))
	}
	return out
}

// Offsets are stream sequences, shared by every topic of the prefix, so a
// gap in them is no gap in a topic; Lost is still exact: it holds exactly
// when the message at since is gone or is more than Size behind.
func TestHistoryGapDetection(t *testing.T) {
	u := natsURL(t)
	b := newBroker(t, u, natsbroker.WithPrefix(freshPrefix(t, u)))
	big := ratchet.HistoryPolicy{Size: 1000, TTL: time.Hour}
	small := ratchet.HistoryPolicy{Size: 3, TTL: time.Hour}
	news, other := brokertest.Topic(t), brokertest.Topic(t)

	// Two topics interleaved: the offsets of one skip those of the other.
	var pos []ratchet.Position
	for i := 1; i <= 6; i++ {
		pos = append(pos, brokertest.PublishHistory(t, b, news, strconv.Itoa(i), small))
		brokertest.PublishHistory(t, b, other, "other", big)
	}
	if pos[1].Offset != pos[0].Offset+2 {
		t.Fatalf("offsets %v, %v: want the stream sequence, 2 apart", pos[0], pos[1])
	}
	// The stream keeps 1001 per subject (the other topic's policy); the
	// history of news is still its newest 3.
	if p := readHistory(t, b, news, ratchet.Position{}, 100); fmt.Sprint(payloads(p.Publications)) != fmt.Sprint(texts(4, 6)) || p.Latest != pos[5] {
		t.Fatalf("history %v latest %v, want 4..6 at %v", payloads(p.Publications), p.Latest, pos[5])
	}
	for i, c := range []struct {
		since ratchet.Position
		limit int
		want  []string
		lost  bool
	}{
		{since: pos[2], limit: 100, want: texts(4, 6)}, // 3 behind: the 3 kept
		{since: pos[2], limit: 2, want: texts(4, 5)},   // the same, limited
		{since: pos[2], limit: 0, want: []string{}},    // only Latest: not lost
		{since: pos[1], limit: 100, lost: true},        // 4 behind: 3 was trimmed
		{since: pos[1], limit: 1, lost: true},          // lost whatever the limit
		{since: pos[1], limit: 0, lost: true},          // and with none
		{since: pos[5], limit: 100, want: []string{}},  // up to date
		// Another topic's message: where news stood for a client that read
		// its Latest before news had messages. 4..6 follow it, and no
		// message of news after it was dropped.
		{since: ratchet.Position{Epoch: pos[0].Epoch, Offset: pos[2].Offset + 1}, limit: 100, want: texts(4, 6)},
		{since: ratchet.Position{Epoch: pos[0].Epoch, Offset: pos[1].Offset + 1}, limit: 100, lost: true}, // 3 is older than the newest 3
		{since: ratchet.Position{Epoch: pos[0].Epoch, Offset: pos[5].Offset + 1}, limit: 100, lost: true}, // the future
		{since: ratchet.Position{Epoch: "x" + pos[0].Epoch, Offset: pos[2].Offset}, limit: 100, lost: true},
	} {
		p := readHistory(t, b, news, c.since, c.limit)
		if p.Lost != c.lost || !c.lost && fmt.Sprint(payloads(p.Publications)) != fmt.Sprint(c.want) || p.Latest != pos[5] {
			t.Errorf("case %d, since %v limit %d: %v lost %v latest %v; want %v lost %v", i, c.since, c.limit,
				payloads(p.Publications), p.Lost, p.Latest, c.want, c.lost)
		}
		if p.Lost && len(p.Publications) > 0 {
			t.Errorf("case %d: lost, yet %d publications", i, len(p.Publications))
		}
	}
	// A smaller Size takes effect with the next message.
	more := publishAll(t, b, other, 1, 10, big)
	brokertest.PublishHistory(t, b, other, "11", ratchet.HistoryPolicy{Size: 2, TTL: time.Hour})
	if p := readHistory(t, b, other, ratchet.Position{}, 100); fmt.Sprint(payloads(p.Publications)) != "[10 11]" {
		t.Fatalf("after Size 2: %v", payloads(p.Publications))
	}
	if p := readHistory(t, b, other, more[7], 100); !p.Lost {
		t.Fatalf("since 8 with Size 2: not lost: %v", payloads(p.Publications))
	}
}

// Messages expire after the TTL (the stream's MaxAge), in the same epoch:
// a position after which a message expired is Lost; the position of the
// newest message, expired too, is not (nothing came after it), and Latest
// stays that position.
func TestHistoryExpiry(t *testing.T) {
	u := natsURL(t)
	b := newBroker(t, u, natsbroker.WithPrefix(freshPrefix(t, u)))
	topic := brokertest.Topic(t)
	short := ratchet.HistoryPolicy{Size: 10, TTL: time.Second}
	old := publishAll(t, b, topic, 1, 2, short)
	brokertest.WaitFor(t, "the messages to expire", func() bool {
		return len(readHistory(t, b, topic, ratchet.Position{}, 10).Publications) == 0
	})
	if p := readHistory(t, b, topic, old[0], 10); !p.Lost || p.Latest != old[1] {
		t.Fatalf("since the first expired message: %+v, want lost (the second expired)", p)
	}
	if p := readHistory(t, b, topic, old[1], 10); p.Lost || len(p.Publications) > 0 || p.Latest != old[1] {
		t.Fatalf("since the newest, expired, message: %+v, want nothing lost", p)
	}
	fresh := brokertest.PublishHistory(t, b, topic, "new", short)
	if p := readHistory(t, b, topic, old[0], 10); !p.Lost || p.Latest != fresh {
		t.Fatalf("since the first expired message, after a publish: %+v", p)
	}
	if p := readHistory(t, b, topic, old[1], 10); p.Lost || fmt.Sprint(payloads(p.Publications)) != "[new]" {
		t.Fatalf("since the newest expired message, after a publish: %+v", p)
	}
}

// A stream deleted (by an operator, or lost with the server's storage) and
// created again is a new epoch: positions of the old one are Lost, and
// live delivery goes on with the new positions.
func TestHistoryStreamRecreated(t *testing.T) {
	u := natsURL(t)
	prefix := freshPrefix(t, u)
	a := newBroker(t, u, natsbroker.WithPrefix(prefix))
	b := newBroker(t, u, natsbroker.WithPrefix(prefix))
	topic := brokertest.Topic(t)
	col := brokertest.NewPubCollector(16)
	brokertest.SubscribePubs(t, b, topic, col)
	policy := ratchet.HistoryPolicy{Size: 10, TTL: time.Hour}
	old := publishAll(t, a, topic, 1, 3, policy)
	for _, want := range old {
		if p := col.Next(t); p.Position != want {
			t.Fatalf("live %v, want %v", p.Position, want)
		}
	}

	js := rawJetStream(t, u)
	ctx := context.Background()
	name, err := js.StreamNameBySubject(ctx, historyFilter(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, "_"+old[0].Epoch) {
		t.Fatalf("stream %s: want the epoch %s at the end of its name", name, old[0].Epoch)
	}
	if err := js.DeleteStream(ctx, name); err != nil {
		t.Fatal(err)
	}
	// Both nodes still know the deleted stream. B's read makes an empty
	// one; A, which still knows the deleted stream, publishes into the new
	// one once it has raised its limits.
	empty := readHistory(t, b, topic, old[1], 10)
	if !empty.Lost || empty.Latest.Epoch == old[0].Epoch || empty.Latest.Offset != 0 {
		t.Fatalf("since a position of the deleted stream: %+v, want lost, and the start of a new stream", empty)
	}
	fresh := brokertest.PublishHistory(t, a, topic, "4", policy)
	if fresh.Epoch != empty.Latest.Epoch {
		t.Fatalf("published at %v, want the stream of %v", fresh, empty.Latest)
	}
	if p := readHistory(t, b, topic, empty.Latest, 10); p.Lost || fmt.Sprint(payloads(p.Publications)) != "[4]" {
		t.Fatalf("since the start of the new stream: %+v", p)
	}
	info, err := js.Stream(ctx, strings.TrimSuffix(name, "_"+old[0].Epoch)+"_"+fresh.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.MaxMsgsPerSubject != int64(policy.Size)+1 || cfg.MaxAge != policy.TTL {
		t.Fatalf("new stream keeps %d per subject for %v, want %d for %v: A published before raising its limits",
			cfg.MaxMsgsPerSubject, cfg.MaxAge, policy.Size+1, policy.TTL)
	}
	if p := col.Next(t); p.Position != fresh || string(p.Message.Data) != "4" {
		t.Fatalf("live after the new stream: %q at %v, want 4 at %v", p.Message.Data, p.Position, fresh)
	}
	for _, since := range []ratchet.Position{old[1], old[2], {Epoch: old[0].Epoch, Offset: fresh.Offset}} {
		if p := readHistory(t, b, topic, since, 10); !p.Lost || p.Latest != fresh {
			t.Fatalf("since %v of the old stream: %+v", since, p)
		}
	}
	if p := readHistory(t, b, topic, ratchet.Position{}, 10); fmt.Sprint(payloads(p.Publications)) != "[4]" {
		t.Fatalf("new stream holds %v", payloads(p.Publications))
	}
}

// Nodes that publish on a prefix without a stream at the same time create
// one stream between them.
func TestHistoryConcurrentCreation(t *testing.T) {
	u := natsURL(t)
	prefix := freshPrefix(t, u)
	topic := brokertest.Topic(t)
	const nodes = 6
	epochs := make([]string, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		b := newBroker(t, u, natsbroker.WithPrefix(prefix))
		wg.Add(1)
		go func() {
			defer wg.Done()
			pos, err := b.PublishHistory(context.Background(), topic, ratchet.Text("x"), ratchet.HistoryPolicy{Size: 10 + i, TTL: time.Hour})
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
			epochs[i] = pos.Epoch
		}()
	}
	wg.Wait()
	for _, e := range epochs {
		if e != epochs[0] {
			t.Fatalf("epochs %v: the nodes made several streams", epochs)
		}
	}
	if p := readHistory(t, newBroker(t, u, natsbroker.WithPrefix(prefix)), topic, ratchet.Position{}, 100); len(p.Publications) != nodes {
		t.Fatalf("history holds %d of %d", len(p.Publications), nodes)
	}
}

// nats-server 2.9 republishes the messages of publishers on different
// connections in the order they finish storing, which is not always the
// order of their sequences (dozens of times in a few thousand messages
// here). The broker puts them back in order: a subscriber gets every
// message, once, in position order.
func TestHistoryLiveOrderConcurrentPublishers(t *testing.T) {
	u := natsURL(t)
	pubs := []*natsbroker.Broker{newBroker(t, u), newBroker(t, u), newBroker(t, u)}
	sub := newBroker(t, u)
	topic := brokertest.Topic(t)
	const workers, each = 4, 250
	total := len(pubs) * workers * each
	col := brokertest.NewPubCollector(total + 1)
	brokertest.SubscribePubs(t, sub, topic, col)

	// What the server sends, seen by a plain NATS subscriber.
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var raw, rawOut atomic.Int64
	var rawLast uint64
	rs, err := nc.Subscribe(sub.Subject(topic), func(m *nats.Msg) {
		seq, _ := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if seq < rawLast {
			rawOut.Add(1)
		}
		rawLast = max(rawLast, seq)
		raw.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = rs.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	policy := ratchet.HistoryPolicy{Size: 2 * total, TTL: time.Minute}
	var mu sync.Mutex
	acked := map[ratchet.Position]bool{}
	var wg sync.WaitGroup
	for _, b := range pubs {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					pos, err := b.PublishHistory(context.Background(), topic, ratchet.Text(strconv.Itoa(i)), policy)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[pos] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	var last ratchet.Position
	for i := range total {
		p := col.Next(t)
		if i > 0 && (p.Position.Epoch != last.Epoch || p.Position.Offset <= last.Offset) {
			t.Fatalf("delivery %d at %v after %v: not in position order", i, p.Position, last)
		}
		if !acked[p.Position] {
			t.Fatalf("delivery %d at %v: no publish returned that position", i, p.Position)
		}
		last = p.Position
	}
	brokertest.WaitFor(t, "the plain subscriber to get every message", func() bool { return raw.Load() == int64(total) })
	t.Logf("%d messages; the server sent %d of them after a later one", total, rawOut.Load())
}

// Messages the node did not receive live (its NATS subscription
// overflowed and the client dropped them) are read back from the stream
// and delivered, in order, before the next live one; those the stream no
// longer has are reported as ErrLiveGap.
func TestHistoryLiveGapFilled(t *testing.T) {
	for _, c := range []struct {
		name string
		size int
		want []string
		gap  bool
	}{
		{name: "kept", size: 100, want: texts(1, 6)},
		{name: "trimmed", size: 1, want: []string{"1", "4", "5", "6"}, gap: true}, // the stream keeps Size+1
	} {
		t.Run(c.name, func(t *testing.T) {
			u := natsURL(t)
			prefix := freshPrefix(t, u)
			var gaps atomic.Int32
			a := newBroker(t, u, natsbroker.WithPrefix(prefix))
			b := newBroker(t, u, natsbroker.WithPrefix(prefix), natsbroker.WithOnError(func(err error) {
				if errors.Is(err, natsbroker.ErrLiveGap) {
					gaps.Add(1)
				}
			}))
			topic := brokertest.Topic(t)
			policy := ratchet.HistoryPolicy{Size: c.size, TTL: time.Hour}
			brokertest.PublishHistory(t, a, topic, "0", policy) // the stream exists: b's subscription knows where it starts

			got := make(chan ratchet.Publication, 16)
			release := make(chan struct{})
			ctx, cancel := context.WithTimeout(context.Background(), brokertest.Wait)
			defer cancel()
			_, err := b.SubscribePublications(ctx, topic, func(p ratchet.Publication) {
				got <- p
				if string(p.Message.Data) == "1" {
					<-release
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := natsbroker.SetPendingLimit(b, topic, 1); err != nil {
				t.Fatal(err)
			}
			pos := publishAll(t, a, topic, 1, 1, policy)
			next := func() ratchet.Publication {
				t.Helper()
				select {
				case p := <-got:
					if i, _ := strconv.Atoi(string(p.Message.Data)); i < 1 || i > len(pos) || pos[i-1] != p.Position {
						t.Fatalf("%q at %v: not what was published", p.Message.Data, p.Position)
					}
					return p
				case <-time.After(brokertest.Wait):
					t.Fatalf("no delivery within %v", brokertest.Wait)
					return ratchet.Publication{}
				}
			}
			next() // 1 is being delivered: the limit is reached
			pos = append(pos, publishAll(t, a, topic, 2, 5, policy)...)
			brokertest.WaitFor(t, "the client to drop 2 to 5", func() bool { return natsbroker.Dropped(b, topic) == 4 })
			close(release)
			seen := []string{"1"}
			for seen[len(seen)-1] != "5" {
				seen = append(seen, string(next().Message.Data))
			}
			pos = append(pos, publishAll(t, a, topic, 6, 6, policy)...)
			seen = append(seen, string(next().Message.Data))
			if fmt.Sprint(seen) != fmt.Sprint(c.want) {
				t.Fatalf("delivered %v, want %v", seen, c.want)
			}
			if (gaps.Load() > 0) != c.gap {
				t.Fatalf("%d ErrLiveGap reports, want a report: %v", gaps.Load(), c.gap)
			}
		})
	}
}

// A test-owned server killed and restarted (its JetStream storage kept)
// while a node publishes without pause: the subscriber on the other node
// misses nothing that was acknowledged, live (what it missed during the
// outage is read back from the stream) and in a recovery from its first
// position; wiping the storage makes positions of the old stream Lost.
func TestHistoryServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv, u := startNATS(t, "-js", "-sd", dir)
	opts := []natsbroker.Option{
		natsbroker.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		natsbroker.WithHealthInterval(500 * time.Millisecond),
	}
	a := newBroker(t, u, opts...)
	b := newBroker(t, u, opts...)
	topic := brokertest.Topic(t)
	policy := ratchet.HistoryPolicy{Size: 100000, TTL: time.Hour}
	col := brokertest.NewPubCollector(100000)
	brokertest.SubscribePubs(t, b, topic, col)

	var (
		mu     sync.Mutex
		acked  []ratchet.Position
		failed int
	)
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return len(acked), failed }
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			pos, err := a.PublishHistory(ctx, topic, ratchet.Text(strconv.Itoa(i)), policy)
			cancel()
			mu.Lock()
			if err == nil {
				acked = append(acked, pos)
			} else {
				failed++
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(10 * time.Millisecond) // the outage: do not spin
			}
		}
	}()
	brokertest.WaitFor(t, "100 publishes", func() bool { n, _ := count(); return n >= 100 })
	srv.Kill()
	brokertest.WaitFor(t, "a publish to fail", func() bool { _, f := count(); return f > 0 })
	brokertest.WaitFor(t, "the outage noticed", func() bool { return !a.Connected() && !b.Connected() })
	if _, err := a.PublishHistory(context.Background(), topic, ratchet.Text("x"), policy); !errors.Is(err, natsbroker.ErrUnavailable) {
		t.Fatalf("PublishHistory while down: %v, want ErrUnavailable", err)
	}
	if _, err := b.History(context.Background(), topic, ratchet.Position{}, 10); !errors.Is(err, natsbroker.ErrUnavailable) {
		t.Fatalf("History while down: %v, want ErrUnavailable", err)
	}
	before, _ := count()
	srv.Start()
	brokertest.WaitFor(t, "100 publishes after the restart", func() bool { n, _ := count(); return n >= before+100 })
	close(stop)
	<-done
	n, failures := count()
	t.Logf("%d publishes acknowledged, %d failed during the outage", n, failures)

	// Live: every acknowledged position, in order. A publish that failed
	// may still have been stored (its acknowledgement lost): it may come too.
	want := map[ratchet.Position]bool{}
	for _, p := range acked {
		want[p] = true
	}
	var last ratchet.Position
	for len(want) > 0 {
		p := col.Next(t)
		if !last.IsZero() && (p.Position.Epoch != last.Epoch || p.Position.Offset <= last.Offset) {
			t.Fatalf("live %v after %v", p.Position, last)
		}
		delete(want, p.Position)
		last = p.Position
	}
	// Recovery from the first position: complete, and it holds them all.
	page := readHistory(t, b, topic, acked[0], 100000)
	if page.Lost {
		t.Fatal("recovery after the restart: lost")
	}
	got := map[ratchet.Position]bool{}
	for _, p := range page.Publications {
		got[p.Position] = true
	}
	for _, p := range acked[1:] {
		if !got[p] {
			t.Fatalf("acknowledged %v is not in the recovery", p)
		}
	}

	// Storage wiped: a new stream, the old positions are Lost.
	srv.Kill()
	if err := os.RemoveAll(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatal(err)
	}
	srv.Start()
	brokertest.WaitFor(t, "reconnected", func() bool { return a.Connected() && b.Connected() })
	if p := readHistory(t, b, topic, acked[n-1], 10); !p.Lost || p.Latest.Epoch == acked[0].Epoch {
		t.Fatalf("since %v after the storage was wiped: %+v", acked[n-1], p)
	}
	fresh := brokertest.PublishHistory(t, a, topic, "after the wipe", policy)
	if fresh.Epoch == acked[0].Epoch {
		t.Fatal("the wiped stream's epoch came back")
	}
	if p := readHistory(t, b, topic, acked[n-1], 10); !p.Lost {
		t.Fatalf("old position on the new stream: %+v", p)
	}
}

// 10,000 messages published from two nodes (each a Hub with history on
// its own broker, on a stream of the test's own) while 50 WebSocket
// subscribers keep disconnecting and resuming on either node: each ends
// with every message once, in position order.
func TestHistoryChaos(t *testing.T) {
	u := natsURL(t)
	prefix := freshPrefix(t, u)
	brokertest.RunChaos(t, func(t *testing.T) ratchet.Broker { return newBroker(t, u, natsbroker.WithPrefix(prefix)) }, 10000, 50)
}

// Two Apps on NATS: a WebSocket client resuming on node B (or A) gets
// exactly what node A's Hub published while it was away.
func TestTwoAppsHistory(t *testing.T) {
	u := natsURL(t)
	brokertest.RunAppsHistory(t, func(t *testing.T) ratchet.Broker { return newBroker(t, u) })
}

// History needs a prefix that ends with "." (the stream republishes token
// by token); without one, the history methods say so and live delivery
// works as before.
func TestHistoryPrefixWithoutDot(t *testing.T) {
	u := natsURL(t)
	b := newBroker(t, u, natsbroker.WithPrefix("nodot"))
	topic := brokertest.Topic(t)
	ctx := context.Background()
	if _, err := b.PublishHistory(ctx, topic, ratchet.Text("x"), ratchet.HistoryPolicy{}); !errors.Is(err, natsbroker.ErrHistoryPrefix) {
		t.Fatalf("PublishHistory: %v, want ErrHistoryPrefix", err)
	}
	if _, err := b.History(ctx, topic, ratchet.Position{}, 10); !errors.Is(err, natsbroker.ErrHistoryPrefix) {
		t.Fatalf("History: %v, want ErrHistoryPrefix", err)
	}
	if s := b.HistorySubject(topic); s != "" {
		t.Fatalf("HistorySubject = %q, want none", s)
	}
	col := brokertest.NewPubCollector(1)
	brokertest.SubscribePubs(t, b, topic, col)
	brokertest.Publish(t, b, topic, ratchet.Text("plain"))
	if p := col.Next(t); string(p.Message.Data) != "plain" || !p.Position.IsZero() {
		t.Fatalf("got %q at %v", p.Message.Data, p.Position)
	}
}
