package ratchet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestMemoryBrokerHistoryConformance(t *testing.T) {
	// Nodes of one cluster share one MemoryBroker; each test gets its own.
	var b *ratchet.MemoryBroker
	var owner *testing.T
	brokertest.RunHistory(t, func(t *testing.T) ratchet.Broker {
		if owner != t {
			b, owner = ratchet.NewMemoryBroker(), t
			t.Cleanup(func() { _ = b.Close() })
		}
		return nopClose{b}
	}, brokertest.HistoryTraits{Contiguous: true, TopicTTL: true})
}

// nopClose lets the suite close each node while the nodes share one
// MemoryBroker.
type nopClose struct{ *ratchet.MemoryBroker }

func (nopClose) Close() error { return nil }

// envelope is the JSON form of SubscribeOptions.Envelope.
type envelope struct {
	Topic    string `json:"topic"`
	Position string `json:"position"`
	Data     string `json:"data"`
	Binary   bool   `json:"binary"`
}

// readJSON reads one message of c and decodes it as a T.
func readJSON[T any](t *testing.T, c *websocket.Conn) T {
	t.Helper()
	_, m := read(t, c)
	var v T
	require.NoError(t, json.Unmarshal([]byte(m), &v), "%T %q", v, m)
	return v
}

func readEnvelope(t *testing.T, c *websocket.Conn) envelope {
	t.Helper()
	return readJSON[envelope](t, c)
}

// resumeServer subscribes each connection to ?topic= with the envelope, from
// ?since= when given, and sends {"ready":...} when the subscription is in
// effect.
func resumeServer(t *testing.T, hub *ratchet.Hub, opts ...ratchet.WsOption) string {
	t.Helper()
	comp := ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		q := c.Request().URL.Query()
		since, err := ratchet.ParsePosition(q.Get("since"))
		require.NoError(t, err)
		_, err = hub.SubscribeWith(context.Background(), c, q.Get("topic"), ratchet.SubscribeOptions{
			Since: since, Envelope: true,
			Ready: func(r ratchet.Recovery) {
				b, _ := json.Marshal(map[string]any{"ready": r.Recovered, "position": r.Position.String(), "sent": r.Sent})
				_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: b})
			},
		})
		require.NoError(t, err)
	}}
	_, url := serveComponent(t, comp, opts...)
	return url
}

type ready struct {
	Ready    bool   `json:"ready"`
	Position string `json:"position"`
	Sent     int    `json:"sent"`
}

func readReady(t *testing.T, c *websocket.Conn) ready { t.Helper(); return readJSON[ready](t, c) }

func publishN(t *testing.T, hub *ratchet.Hub, topic string, from, to int) []ratchet.Position {
	t.Helper()
	var out []ratchet.Position
	for i := from; i <= to; i++ {
		pos, _, err := hub.PublishPosition(context.Background(), topic, ratchet.Text(fmt.Sprint(i)))
		require.NoError(t, err)
		out = append(out, pos)
	}
	return out
}

// A client that reconnects with the position of the last message it got
// receives exactly what it missed, then the live messages, with positions.
func TestHubRecoversMissedMessages(t *testing.T) {
	hub := ratchet.NewHub(ratchet.WithHistory("news", ratchet.HistoryPolicy{Size: 10}))
	defer hub.Close(context.Background())
	url := resumeServer(t, hub)

	c := dial(t, url+"?topic=news", nil)
	start := readReady(t, c)
	assert.True(t, start.Ready)
	pos := publishN(t, hub, "news", 1, 2)
	assert.Equal(t, ratchet.Position{Epoch: pos[0].Epoch, Offset: 0}.String(), start.Position,
		"nothing published yet: the start of the stream the first message continues")
	for i, want := range pos {
		e := readEnvelope(t, c)
		assert.Equal(t, envelope{Topic: "news", Position: want.String(), Data: fmt.Sprint(i + 1)}, e)
	}
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))

	missed := publishN(t, hub, "news", 3, 7)
	c = dial(t, url+"?topic=news&since="+pos[1].String(), nil)
	for i, want := range missed {
		e := readEnvelope(t, c)
		assert.Equal(t, want.String(), e.Position)
		assert.Equal(t, fmt.Sprint(i+3), e.Data)
	}
	r := readReady(t, c)
	assert.Equal(t, ready{Ready: true, Position: missed[4].String(), Sent: 5}, r)
	live := publishN(t, hub, "news", 8, 8)
	e := readEnvelope(t, c)
	assert.Equal(t, live[0].String(), e.Position)
	assert.Equal(t, "8", e.Data)
}

// A node given a smaller Size than the nodes that wrote the stream reads
// a recovery in pages of its own Size, from the last message read, until
// it has the newest: nothing is skipped. Past maxRecoveryPages (16) pages
// it gives up and says so.
func TestHubRecoveryReadsPagesUpToNewest(t *testing.T) {
	b := ratchet.NewMemoryBroker()
	defer b.Close()
	hub := func(size int) *ratchet.Hub {
		h := ratchet.NewHub(ratchet.WithBroker(b), ratchet.WithHistory("*", ratchet.HistoryPolicy{Size: size}))
		t.Cleanup(func() { _ = h.Close(context.Background()) })
		return h
	}
	writer, small, smaller := hub(100), hub(10), hub(5)
	pos := publishN(t, writer, "news", 1, 100)

	// 95 missed, 10 per read: 10 reads.
	c := dial(t, resumeServer(t, small)+"?topic=news&since="+pos[4].String(), nil)
	for i := 6; i <= 100; i++ {
		e := readEnvelope(t, c)
		require.Equal(t, envelope{Topic: "news", Position: pos[i-1].String(), Data: fmt.Sprint(i)}, e)
	}
	assert.Equal(t, ready{Ready: true, Position: pos[99].String(), Sent: 95}, readReady(t, c))
	live := publishN(t, writer, "news", 101, 101)
	assert.Equal(t, live[0].String(), readEnvelope(t, c).Position)

	// 96 missed, 5 per read: more than 16 reads.
	c = dial(t, resumeServer(t, smaller)+"?topic=news&since="+pos[4].String(), nil)
	assert.Equal(t, ready{Ready: false, Position: live[0].String(), Sent: 0}, readReady(t, c))
	live = publishN(t, writer, "news", 102, 102)
	assert.Equal(t, live[0].String(), readEnvelope(t, c).Position)
}

// When history no longer reaches back to the client's position, nothing is
// sent from it and the subscriber is told before any live message.
func TestHubRecoveryGapIsReported(t *testing.T) {
	hub := ratchet.NewHub(ratchet.WithHistory("*", ratchet.HistoryPolicy{Size: 3}))
	defer hub.Close(context.Background())
	url := resumeServer(t, hub)
	pos := publishN(t, hub, "news", 1, 6)

	c := dial(t, url+"?topic=news&since="+pos[1].String(), nil) // 3 was trimmed
	r := readReady(t, c)
	assert.Equal(t, ready{Ready: false, Position: pos[5].String()}, r)
	publishN(t, hub, "news", 7, 7)
	assert.Equal(t, "7", readEnvelope(t, c).Data, "live after the notice, nothing from history")

	other := dial(t, url+"?topic=news&since=otherepoch:4", nil)
	assert.False(t, readReady(t, other).Ready, "a position of another epoch")

	fromOldest := dial(t, url+"?topic=news&since="+pos[3].String(), nil) // 5 is the oldest kept
	for i := 5; i <= 7; i++ {
		assert.Equal(t, fmt.Sprint(i), readEnvelope(t, fromOldest).Data)
	}
	assert.True(t, readReady(t, fromOldest).Ready)
}

// Messages published while a subscriber recovers are neither lost nor
// duplicated: every client that resumes while a publisher runs sees one
// unbroken, duplicate-free run of positions.
func TestHubRecoveryRaceWithLivePublishes(t *testing.T) {
	broker := ratchet.NewMemoryBroker()
	defer broker.Close()
	const total = 2000
	policy := ratchet.HistoryPolicy{Size: 5000}
	pubHub := ratchet.NewHub(ratchet.WithBroker(broker), ratchet.WithHistory("*", policy))
	subHub := ratchet.NewHub(ratchet.WithBroker(broker), ratchet.WithHistory("*", policy))
	defer pubHub.Close(context.Background())
	defer subHub.Close(context.Background())
	// The publisher does not wait for the readers: queues hold what they lag.
	url := resumeServer(t, subHub, ratchet.WithSendQueue(2*total))
	first := publishN(t, pubHub, "race", 1, 1)[0]

	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		for i := 2; i <= total; i++ {
			if _, _, err := pubHub.PublishPosition(context.Background(), "race", ratchet.Text(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for k := 0; k < 5; k++ {
		c := dial(t, url+"?topic=race&since="+first.String(), nil)
		next := 2
		for next <= total {
			_, m := read(t, c)
			var e envelope
			if json.Unmarshal([]byte(m), &e) == nil && e.Topic == "" { // the ready notice
				var r ready
				require.NoError(t, json.Unmarshal([]byte(m), &r))
				require.True(t, r.Ready)
				continue
			}
			require.Equal(t, fmt.Sprint(next), e.Data, "client %d: gap or duplicate", k)
			require.Equal(t, fmt.Sprintf("%s:%d", first.Epoch, next), e.Position)
			next++
		}
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	}
}

// Hub.History reads what programs need, and PublishPosition returns where a
// message stands.
func TestHubHistoryRead(t *testing.T) {
	hub := ratchet.NewHub(ratchet.WithHistory("orders.*", ratchet.HistoryPolicy{}))
	defer hub.Close(context.Background())
	ctx := context.Background()
	pos := publishN(t, hub, "orders.42", 1, 5)
	assert.Equal(t, uint64(5), pos[4].Offset)

	page, err := hub.History(ctx, "orders.42", pos[1], 2)
	require.NoError(t, err)
	require.Len(t, page.Publications, 2)
	assert.Equal(t, "3", page.Publications[0].Message.String())
	assert.Equal(t, pos[4], page.Latest)

	_, err = hub.History(ctx, "chat", ratchet.Position{}, 0)
	assert.ErrorIs(t, err, ratchet.ErrNoHistory)
	p, _, err := hub.PublishPosition(ctx, "chat", ratchet.Text("x"))
	require.NoError(t, err)
	assert.True(t, p.IsZero(), "a topic without history has no positions")
	policy, ok := hub.HistoryPolicy("orders.1")
	assert.True(t, ok)
	assert.Equal(t, ratchet.HistoryPolicy{Size: ratchet.DefaultHistorySize, TTL: ratchet.DefaultHistoryTTL}, policy)
}

func TestParsePosition(t *testing.T) {
	p, err := ratchet.ParsePosition("k3x9:17")
	require.NoError(t, err)
	assert.Equal(t, ratchet.Position{Epoch: "k3x9", Offset: 17}, p)
	assert.Equal(t, "k3x9:17", p.String())
	zero, err := ratchet.ParsePosition("")
	require.NoError(t, err)
	assert.True(t, zero.IsZero())
	for _, bad := range []string{"k3x9", ":1", "k3x9:", "k3x9:-1", "k3x9:+1", "k3 x:1", "a:18446744073709551616", "k3x9:1:2",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1"} {
		_, err := ratchet.ParsePosition(bad)
		assert.ErrorIs(t, err, ratchet.ErrBadPosition, bad)
	}
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"", "k3x9:17", "a:0", "x:18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ratchet.ParsePosition(s)
		if err != nil {
			return
		}
		again, err := ratchet.ParsePosition(p.String())
		if err != nil || again != p {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, p, p.String(), again, err)
		}
	})
}

// 2,000 messages from two nodes while 20 subscribers keep reconnecting to
// either node: each ends with every message once, in position order.
func TestMemoryBrokerChaos(t *testing.T) {
	b := ratchet.NewMemoryBroker()
	defer b.Close()
	brokertest.RunChaos(t, func(*testing.T) ratchet.Broker { return nopClose{b} }, 2000, 20)
}

// pubConn is a Conn without a socket that takes publications itself, as an
// SSE stream or a Pusher connection does.
type pubConn struct {
	id     uint64
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	got    []ratchet.Publication
}

// pubConnIDs numbers the pubConns; they share no Hub with this package's
// connections in the tests that use them.
var pubConnIDs atomic.Uint64

func newPubConn() *pubConn {
	c := &pubConn{id: pubConnIDs.Add(1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

func (c *pubConn) SendPublication(p ratchet.Publication) error {
	c.mu.Lock()
	c.got = append(c.got, p)
	c.mu.Unlock()
	return nil
}

func (c *pubConn) ID() uint64                             { return c.id }
func (c *pubConn) Send(ratchet.Message) error             { return errors.New("not a publication") }
func (c *pubConn) Close(ratchet.StatusCode, string) error { c.cancel(); return nil }
func (c *pubConn) Request() *http.Request                 { return nil }
func (c *pubConn) RemoteAddr() string                     { return "" }
func (c *pubConn) Subprotocol() string                    { return "" }
func (c *pubConn) User() string                           { return "" }
func (c *pubConn) Context() context.Context               { return c.ctx }
func (c *pubConn) Set(string, any)                        {}
func (c *pubConn) Get(string) (any, bool)                 { return nil, false }

// Publication senders get each publication once, also when there are
// enough of them for the delivery to be split across cores.
func TestPublicationSendersFanOut(t *testing.T) {
	hub := ratchet.NewHub()
	ctx := context.Background()
	conns := make([]*pubConn, 300)
	for i := range conns {
		conns[i] = newPubConn()
		defer conns[i].cancel()
		require.NoError(t, hub.Subscribe(ctx, conns[i], "t"))
	}
	for i := range 3 {
		n, err := hub.Publish(ctx, "t", ratchet.Text(strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, len(conns), n)
	}
	for _, c := range conns {
		c.mu.Lock()
		require.Len(t, c.got, 3)
		for i, p := range c.got {
			require.Equal(t, strconv.Itoa(i), p.Message.String())
		}
		c.mu.Unlock()
	}
	require.NoError(t, hub.Close(ctx))
}
