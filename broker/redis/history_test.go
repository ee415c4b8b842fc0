package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestHistoryConformance(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunHistory(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) },
		brokertest.HistoryTraits{Contiguous: true, TopicTTL: true})
}

// What the package documentation promises of the keys and payloads: the
// channel carries each message in a position envelope, the stream keeps the
// payload a plain PUBLISH would carry under the ID <offset>-0, the latest
// key holds the newest position, both keys expire with the policy.
func TestHistoryWireFormat(t *testing.T) {
	addr := redisAddr(t)
	b := newBroker(t, addr)
	raw := newClient(t, addr)
	ctx := context.Background()
	topic := brokertest.Topic(t)
	ps := raw.Subscribe(ctx, b.Channel(topic))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	policy := ratchet.HistoryPolicy{Size: 10, TTL: time.Minute}
	msgs := []struct {
		msg  ratchet.Message
		live string // the channel payload, with %s for the position
	}{
		{ratchet.Text("hello"), `{"position":"%s","ratchet":1,"type":"text","data":"hello"}`},
		{ratchet.Binary([]byte{0, 1, 2}), `{"position":"%s","ratchet":1,"type":"binary","data":"AAEC"}`},
		{ratchet.Text(`say "hi" / ünï` + "\n\x01"), `{"position":"%s","ratchet":1,"type":"text","data":"say \"hi\" \/ ünï\n\u0001"}`},
		{ratchet.Text(`{"ratchet":1,"type":"text","data":"looks like an envelope"}`), ""},
		{ratchet.Text(`{"position":"e:1","ratchet":1,"type":"text","data":"looks like a position"}`), ""},
	}
	var pos []ratchet.Position
	for i, m := range msgs {
		p, err := b.PublishHistory(ctx, topic, m.msg, policy)
		if err != nil {
			t.Fatal(err)
		}
		if p.Offset != uint64(i+1) {
			t.Fatalf("message %d at %v", i+1, p)
		}
		pos = append(pos, p)
		got, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.live != "" && got.Payload != fmt.Sprintf(m.live, p) {
			t.Errorf("channel payload %s, want %s", got.Payload, fmt.Sprintf(m.live, p))
		}
		dm, dp := redis.DecodePosition([]byte(got.Payload))
		if dp != p || dm.Type != m.msg.Type || string(dm.Data) != string(m.msg.Data) {
			t.Errorf("decoded %v %q at %v, want %v %q at %v", dm.Type, dm.Data, dp, m.msg.Type, m.msg.Data, p)
		}
	}
	entries, err := raw.XRange(ctx, redis.StreamKey(b, topic), "-", "+").Result()
	if err != nil || len(entries) != len(msgs) {
		t.Fatalf("stream: %v %v", entries, err)
	}
	for i, e := range entries {
		if want := strconv.Itoa(i+1) + "-0"; e.ID != want || len(e.Values) != 1 || e.Values["d"] != string(redis.Encode(msgs[i].msg)) {
			t.Errorf("entry %d: %v %v, want ID %s with d = the channel payload of a plain publish", i+1, e.ID, e.Values, want)
		}
	}
	if latest, err := raw.Get(ctx, redis.LatestKey(b, topic)).Result(); err != nil || latest != pos[len(pos)-1].String() {
		t.Fatalf("newest position %q %v, want %v", latest, err, pos[len(pos)-1])
	}
	for _, key := range []string{redis.StreamKey(b, topic), redis.LatestKey(b, topic)} {
		if ttl := raw.PTTL(ctx, key).Val(); ttl <= 0 || ttl > policy.TTL {
			t.Errorf("%s expires in %v, want (0, %v]", key, ttl, policy.TTL)
		}
	}
}

// A stream that outlived its latest key (evicted, deleted by hand) belongs
// to a lost life: a read does not take its entries for the new epoch's, and
// the next publish starts the new epoch over it instead of failing on its
// IDs.
func TestHistoryOrphanStream(t *testing.T) {
	addr := redisAddr(t)
	b := newBroker(t, addr)
	raw := newClient(t, addr)
	topic := brokertest.Topic(t)
	policy := ratchet.HistoryPolicy{Size: 10, TTL: time.Minute}
	var old ratchet.Position
	for i := 1; i <= 3; i++ {
		old = brokertest.PublishHistory(t, b, topic, fmt.Sprint(i), policy)
	}
	if err := raw.Del(context.Background(), redis.LatestKey(b, topic)).Err(); err != nil {
		t.Fatal(err)
	}
	page := brokertest.ReadHistory(t, b, topic, old, 10)
	if !page.Lost || len(page.Publications) != 0 || page.Latest.Epoch == old.Epoch || page.Latest.Offset != 0 {
		t.Fatalf("read after the latest key was lost: %+v", page)
	}
	if all := brokertest.ReadHistory(t, b, topic, ratchet.Position{}, 10); len(all.Publications) != 0 || all.Latest != page.Latest {
		t.Fatalf("read from the start of the empty new epoch: %+v", all)
	}
	fresh := brokertest.PublishHistory(t, b, topic, "new", policy)
	if fresh != (ratchet.Position{Epoch: page.Latest.Epoch, Offset: 1}) {
		t.Fatalf("publish over the orphan stream at %v, want offset 1 of %q", fresh, page.Latest.Epoch)
	}
	if all := brokertest.ReadHistory(t, b, topic, ratchet.Position{}, 10); len(all.Publications) != 1 || string(all.Publications[0].Message.Data) != "new" {
		t.Fatalf("history after the new epoch began: %+v", all)
	}
}

func TestDecodePosition(t *testing.T) {
	e1 := ratchet.Position{Epoch: "k3x9", Offset: 17}
	for _, c := range []struct {
		payload string
		msg     ratchet.Message
		pos     ratchet.Position
	}{
		{`{"position":"k3x9:17","ratchet":1,"type":"text","data":"hi"}`, ratchet.Text("hi"), e1},
		{`{"data":"AAEC","type":"binary","ratchet":1,"position":"k3x9:17"}`, ratchet.Binary([]byte{0, 1, 2}), e1},
		{`{"ratchet":1,"type":"text","data":"hi"}`, ratchet.Text("hi"), ratchet.Position{}},
		{"plain", ratchet.Text("plain"), ratchet.Position{}},
		// Not envelopes: delivered as the text they are.
		{`{"position":"no offset","ratchet":1,"type":"text","data":"hi"}`, ratchet.Text(`{"position":"no offset","ratchet":1,"type":"text","data":"hi"}`), ratchet.Position{}},
		{`{"position":"","ratchet":1,"type":"text","data":"hi"}`, ratchet.Text(`{"position":"","ratchet":1,"type":"text","data":"hi"}`), ratchet.Position{}},
		{`{"other":"k3x9:17","ratchet":1,"type":"text","data":"hi"}`, ratchet.Text(`{"other":"k3x9:17","ratchet":1,"type":"text","data":"hi"}`), ratchet.Position{}},
	} {
		m, p := redis.DecodePosition([]byte(c.payload))
		if p != c.pos || m.Type != c.msg.Type || string(m.Data) != string(c.msg.Data) {
			t.Errorf("%s: %v %q at %v, want %v %q at %v", c.payload, m.Type, m.Data, p, c.msg.Type, c.msg.Data, c.pos)
		}
	}
	// A text that is itself a position envelope travels in an envelope, so
	// that it arrives as sent, without a position.
	text := ratchet.Text(`{"position":"k3x9:17","ratchet":1,"type":"text","data":"hi"}`)
	if m, p := redis.DecodePosition(redis.Encode(text)); string(m.Data) != string(text.Data) || !p.IsZero() {
		t.Fatalf("round trip: %q at %v", m.Data, p)
	}
}

// A node cut off from Redis while messages are published catches up from
// the streams when it is back, before live delivery resumes: each topic
// from the newest position it delivered, a quiet topic from the position
// History reported, and a topic whose stream no longer reaches back from
// its oldest kept message, the position showing the gap.
func TestHistoryCatchUpAfterOutage(t *testing.T) {
	addr := redisAddr(t)
	proxy := brokertest.NewProxy(t, addr)
	a := newBroker(t, addr)
	b := newBroker(t, proxy.Addr(), redis.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	busy, quiet, trimmed := brokertest.Topic(t), brokertest.Topic(t), brokertest.Topic(t)
	policy := ratchet.HistoryPolicy{Size: 100, TTL: time.Minute}
	small := ratchet.HistoryPolicy{Size: 2, TTL: time.Minute}

	onBusy, onQuiet, onTrimmed := brokertest.NewPubCollector(64), brokertest.NewPubCollector(64), brokertest.NewPubCollector(64)
	brokertest.SubscribePubs(t, b, busy, onBusy)
	brokertest.SubscribePubs(t, b, quiet, onQuiet)
	brokertest.SubscribePubs(t, b, trimmed, onTrimmed)
	for i := 1; i <= 3; i++ {
		want := brokertest.PublishHistory(t, a, busy, fmt.Sprint(i), policy)
		if got := onBusy.Next(t); got.Position != want {
			t.Fatalf("before the outage: %v, want %v", got.Position, want)
		}
	}
	trimmedLast := brokertest.PublishHistory(t, a, trimmed, "0", small)
	onTrimmed.Next(t)
	brokertest.PublishHistory(t, a, quiet, "0", policy)
	onQuiet.Next(t)
	// A subscriber of the quiet topic that read its history expects what
	// follows; as it delivered nothing since, only History tells where
	// that is.
	onQuietLate := brokertest.NewPubCollector(64)
	quietLate := brokertest.Topic(t)
	brokertest.PublishHistory(t, a, quietLate, "0", policy)
	brokertest.SubscribePubs(t, b, quietLate, onQuietLate)
	if p := brokertest.ReadHistory(t, b, quietLate, ratchet.Position{}, 0); p.Latest.Offset != 1 {
		t.Fatalf("history of the quiet topic: %+v", p)
	}

	proxy.Cut()
	brokertest.WaitFor(t, "node B to notice the outage", func() bool { return b.Outages() == 1 })
	var busyMissed, quietMissed, lateMissed []ratchet.Position
	for i := 4; i <= 8; i++ {
		busyMissed = append(busyMissed, brokertest.PublishHistory(t, a, busy, fmt.Sprint(i), policy))
		quietMissed = append(quietMissed, brokertest.PublishHistory(t, a, quiet, fmt.Sprint(i), policy))
		lateMissed = append(lateMissed, brokertest.PublishHistory(t, a, quietLate, fmt.Sprint(i), policy))
		trimmedLast = brokertest.PublishHistory(t, a, trimmed, fmt.Sprint(i), small)
	}
	if b.Connected() {
		t.Fatal("node B reconnected through a cut proxy")
	}
	proxy.Restore()
	brokertest.WaitFor(t, "node B to reconnect", b.Connected)
	after := brokertest.PublishHistory(t, a, busy, "9", policy)

	for _, c := range []struct {
		name string
		got  *brokertest.PubCollector
		want []ratchet.Position
	}{
		{"busy", onBusy, append(busyMissed, after)},
		{"quiet", onQuiet, quietMissed},
		{"quiet, read before the outage", onQuietLate, lateMissed},
		{"trimmed", onTrimmed, []ratchet.Position{{Epoch: trimmedLast.Epoch, Offset: trimmedLast.Offset - 1}, trimmedLast}},
	} {
		for i, want := range c.want {
			if got := c.got.Next(t); got.Position != want {
				t.Fatalf("%s: delivery %d after the outage at %v, want %v", c.name, i+1, got.Position, want)
			}
		}
	}
	// Nothing twice: the next message follows directly.
	next := brokertest.PublishHistory(t, a, quiet, "10", policy)
	if got := onQuiet.Next(t); got.Position != next {
		t.Fatalf("quiet: %v after the catch-up, want %v", got.Position, next)
	}
}

// Redis restarts (a server the test owns) between a subscriber's last
// message and its recovery. While it is down, a WebSocket client resuming
// is told so (the App closes with StatusTryAgainLater). Without persistence
// the streams are gone: History reports the position lost, the client is
// told it did not recover, and the next message starts a new epoch,
// delivered as such to the live subscription. With an append-only file the
// streams survive: recovery is complete, and the live subscription catches
// up on what was published before it re-subscribed.
func TestHistoryRedisRestart(t *testing.T) {
	for _, persist := range []bool{false, true} {
		t.Run(map[bool]string{false: "wiped", true: "persisted"}[persist], func(t *testing.T) {
			port := brokertest.FreePort(t)
			args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", t.TempDir()}
			if persist {
				args = append(args, "--appendonly", "yes", "--appendfsync", "always")
			} else {
				args = append(args, "--appendonly", "no")
			}
			srv := brokertest.StartProcess(t, redisServer, port, args...)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			opts := []redis.Option{redis.WithBackoff(10*time.Millisecond, 50*time.Millisecond)}
			a, b := newBroker(t, addr, opts...), newBroker(t, addr, opts...)
			topic := brokertest.Topic(t)
			policy := ratchet.HistoryPolicy{Size: 100, TTL: time.Minute}
			live := brokertest.NewPubCollector(64)
			brokertest.SubscribePubs(t, b, topic, live)
			_, url := brokertest.HistoryApp(t, b, policy)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := brokertest.Resume(ctx, t, url, topic, ratchet.Position{})
			brokertest.MustReadNotice(ctx, t, client)
			var before []ratchet.Position
			for i := 1; i <= 3; i++ {
				before = append(before, brokertest.PublishHistory(t, a, topic, fmt.Sprint(i), policy))
				live.Next(t)
				brokertest.MustReadNotice(ctx, t, client)
			}
			client.CloseNow()

			srv.Kill()
			down := brokertest.Resume(ctx, t, url, topic, before[2])
			if n, err := brokertest.ReadNotice(ctx, down); websocket.CloseStatus(err) != websocket.StatusCode(ratchet.StatusTryAgainLater) {
				t.Fatalf("resuming with Redis down: %+v %v, want a close with StatusTryAgainLater", n, err)
			}
			srv.Start()
			var after []ratchet.Position
			brokertest.WaitFor(t, "a publish to succeed after the restart", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				p, err := a.PublishHistory(ctx, topic, ratchet.Text("4"), policy)
				if err == nil {
					after = append(after, p)
				}
				return err == nil
			})
			after = append(after, brokertest.PublishHistory(t, a, topic, "5", policy))

			page := brokertest.ReadHistory(t, b, topic, before[0], 10)
			if !persist {
				if !page.Lost || after[0].Epoch == before[0].Epoch || after[0].Offset != 1 {
					t.Fatalf("after a wiping restart: lost %v, publish at %v after %v", page.Lost, after[0], before[2])
				}
			} else {
				want := append(before[1:], after...)
				if page.Lost || len(page.Publications) != len(want) {
					t.Fatalf("after a persisted restart: %+v, want %v", page, want)
				}
				for i, p := range page.Publications {
					if p.Position != want[i] {
						t.Fatalf("recovered %v, want %v", p.Position, want[i])
					}
				}
			}
			// Until B has its subscriptions back, its Hub refuses
			// subscribers (StatusTryAgainLater, as above).
			brokertest.WaitFor(t, "node B to have its subscriptions back", b.Connected)
			resumed := brokertest.Resume(ctx, t, url, topic, before[2])
			if !persist {
				want := brokertest.Notice{Ready: true, Recovered: false, Position: after[1].String()}
				if got := brokertest.MustReadNotice(ctx, t, resumed); got != want {
					t.Fatalf("resuming after a wiping restart: %+v, want %+v", got, want)
				}
			} else {
				brokertest.ExpectRecovery(ctx, t, resumed, topic, []ratchet.Publication{
					{Topic: topic, Position: after[0], Message: ratchet.Text("4")},
					{Topic: topic, Position: after[1], Message: ratchet.Text("5")},
				}, after[1])
			}
			// The live subscription: the new epoch from its start, or the
			// messages of the same epoch it missed, each once, in order.
			for _, want := range after {
				if got := live.Next(t); got.Position != want {
					t.Fatalf("live after the restart: %v, want %v", got.Position, want)
				}
			}
		})
	}
}

// Two Apps on Redis: a WebSocket client resuming on node B (or A) gets
// exactly what node A's Hub published while it was away.
func TestTwoAppsHistory(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunAppsHistory(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) })
}

// 10,000 messages published from two nodes (each a Hub with history on
// its own broker) while 50 WebSocket subscribers keep disconnecting and
// resuming on either node: each ends with every message once, in position
// order.
func TestHistoryChaos(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunChaos(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) }, 10000, 50)
}

// commandCounter is a go-redis hook that records the commands a client
// sends, and in how many round trips (a pipeline is one).
type commandCounter struct {
	mu    sync.Mutex
	names []string
	trips int
}

func (h *commandCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *commandCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.record(cmd)
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.record(cmds...)
		return next(ctx, cmds)
	}
}

func (h *commandCounter) record(cmds ...goredis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips++
	for _, c := range cmds {
		h.names = append(h.names, c.Name())
	}
}

// take returns what was recorded since the last take.
func (h *commandCounter) take() (names []string, trips int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	names, trips = h.names, h.trips
	h.names, h.trips = nil, 0
	return names, trips
}

// missedThousand returns a broker whose client records its commands with
// hook, and a topic with 1,001 messages of 100 bytes published with policy:
// reading after first recovers 1,000. The pool's connection is open.
func missedThousand(t testing.TB, policy ratchet.HistoryPolicy) (b *redis.Broker, hook *commandCounter, topic string, first ratchet.Position) {
	t.Helper()
	hook = &commandCounter{}
	client := newClient(t, redisAddr(t))
	client.AddHook(hook)
	b = newBrokerOn(t, client)
	topic = brokertest.Topic(t)
	body := strings.Repeat("x", 92)
	for i := range 1001 {
		p, err := b.PublishHistory(context.Background(), topic, ratchet.Text(fmt.Sprintf("%08d%s", i, body)), policy)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	brokertest.ReadHistory(t, b, topic, first, 1000) // dials the connection a transaction takes
	hook.take()
	return b, hook, topic, first
}

// Recovering 1,000 missed messages is one ranged read (XRANGE) with the
// newest position, in one round trip; publishing with history is one
// command.
func TestHistoryRecoveryIsOneRoundTrip(t *testing.T) {
	policy := ratchet.HistoryPolicy{Size: 2000, TTL: time.Minute}
	b, hook, topic, first := missedThousand(t, policy)

	page := brokertest.ReadHistory(t, b, topic, first, 1000)
	names, trips := hook.take()
	if len(page.Publications) != 1000 || page.Lost || page.Publications[999].Position != page.Latest {
		t.Fatalf("read %d messages, lost %v, last %v, latest %v", len(page.Publications), page.Lost, page.Publications[len(page.Publications)-1].Position, page.Latest)
	}
	if trips != 1 || fmt.Sprint(names) != "[multi set get xrange exec]" {
		t.Fatalf("History of 1,000 messages sent %v in %d round trips, want one transaction with one XRANGE", names, trips)
	}
	brokertest.PublishHistory(t, b, topic, "one more", policy)
	if names, trips := hook.take(); trips != 1 || len(names) != 1 || names[0] != "evalsha" {
		t.Fatalf("PublishHistory sent %v in %d round trips, want one EVALSHA", names, trips)
	}
}
