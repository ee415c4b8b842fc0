package ratchet_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// hubServer subscribes each connection to the topics in its ?topic= query
// and identifies it by ?user=.
func hubServer(t *testing.T, hub *ratchet.Hub, opts ...ratchet.WsOption) (string, chan ratchet.Conn) {
	t.Helper()
	opened := make(chan ratchet.Conn, 100)
	comp := ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		ctx := context.Background()
		require.NoError(t, hub.Add(ctx, c))
		for _, topic := range c.Request().URL.Query()["topic"] {
			require.NoError(t, hub.Subscribe(ctx, c, topic))
		}
		if u := c.Request().URL.Query().Get("user"); u != "" {
			require.NoError(t, hub.SetUser(ctx, c, u))
		}
		opened <- c
	}}
	_, url := serveComponent(t, comp, opts...)
	return url, opened
}

// expectNothing checks that client has received nothing: a marker sent now
// through its server side must be the next message it reads. (A read with a
// short timeout would not do: coder/websocket closes a connection whose read
// context expires.)
func expectNothing(t *testing.T, client *websocket.Conn, server ratchet.Conn) {
	t.Helper()
	require.NoError(t, server.Send(ratchet.Text("marker")))
	_, m := read(t, client)
	require.Equal(t, "marker", m, "unexpected message")
}

func TestHubPublishReachesExactlyTheSubscribers(t *testing.T) {
	hub := ratchet.NewHub()
	url, opened := hubServer(t, hub)
	a := dial(t, url+"?topic=news&topic=sport", nil)
	<-opened
	b := dial(t, url+"?topic=news", nil)
	connB := <-opened
	c := dial(t, url+"?topic=weather", nil)
	connC := <-opened

	ctx := context.Background()
	n, err := hub.Publish(ctx, "news", ratchet.Text("headline"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, conn := range []*websocket.Conn{a, b} {
		_, m := read(t, conn)
		assert.Equal(t, "headline", m)
	}
	n, err = hub.Publish(ctx, "sport", ratchet.Binary([]byte{1, 2}))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	typ, m := read(t, a)
	assert.Equal(t, websocket.MessageBinary, typ)
	assert.Equal(t, "\x01\x02", m)
	expectNothing(t, b, connB)
	expectNothing(t, c, connC)

	n, err = hub.Publish(ctx, "nobody", ratchet.Text("x"))
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, []string{"news", "sport", "weather"}, hub.Topics())
	assert.Equal(t, 2, hub.Subscribers("news"))
	assert.Equal(t, 3, hub.Len())

	_, err = hub.Publish(ctx, "news", ratchet.Message{Type: ratchet.MessageText, Data: []byte{0xff}})
	assert.ErrorIs(t, err, ratchet.ErrInvalidUTF8)
}

func TestHubUnsubscribeAndDisconnect(t *testing.T) {
	hub := ratchet.NewHub()
	url, opened := hubServer(t, hub)
	a := dial(t, url+"?topic=news", nil)
	connA := <-opened
	b := dial(t, url+"?topic=news", nil)
	<-opened
	ctx := context.Background()

	require.NoError(t, hub.Unsubscribe(ctx, connA, "news"))
	assert.Empty(t, hub.TopicsOf(connA))
	n, err := hub.Publish(ctx, "news", ratchet.Text("1"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, m := read(t, b)
	assert.Equal(t, "1", m)
	expectNothing(t, a, connA)

	require.NoError(t, b.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return hub.Subscribers("news") == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Empty(t, hub.Topics(), "an emptied topic is forgotten")
	assert.Equal(t, 1, hub.Len())
	n, err = hub.Publish(ctx, "news", ratchet.Text("2"))
	require.NoError(t, err)
	assert.Zero(t, n)

	assert.ErrorIs(t, hub.Subscribe(ctx, connA, "@all"), ratchet.ErrInvalidTopic)
	assert.ErrorIs(t, hub.Subscribe(ctx, connA, ""), ratchet.ErrInvalidTopic)
}

func TestHubUserAndBroadcast(t *testing.T) {
	hub := ratchet.NewHub()
	url, opened := hubServer(t, hub)
	alice1 := dial(t, url+"?user=alice", nil)
	<-opened
	alice2 := dial(t, url+"?user=alice", nil)
	<-opened
	bob := dial(t, url+"?user=bob", nil)
	bobConn := <-opened
	assert.Equal(t, "bob", bobConn.User())

	ctx := context.Background()
	n, err := hub.PublishToUser(ctx, "alice", ratchet.Text("for alice"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, c := range []*websocket.Conn{alice1, alice2} {
		_, m := read(t, c)
		assert.Equal(t, "for alice", m)
	}
	expectNothing(t, bob, bobConn)

	require.NoError(t, hub.SetUser(ctx, bobConn, "carol"))
	n, _ = hub.PublishToUser(ctx, "bob", ratchet.Text("x"))
	assert.Zero(t, n)
	n, _ = hub.PublishToUser(ctx, "carol", ratchet.Text("for carol"))
	assert.Equal(t, 1, n)
	_, m := read(t, bob)
	assert.Equal(t, "for carol", m)

	n, err = hub.Broadcast(ctx, ratchet.Text("all"))
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	for _, c := range []*websocket.Conn{alice1, alice2, bob} {
		_, m := read(t, c)
		assert.Equal(t, "all", m)
	}
}

// The authenticate hook's identity is what PublishToUser reaches.
func TestHubUserFromAuthenticate(t *testing.T) {
	hub := ratchet.NewHub()
	auth := ratchet.WithAuthenticate(func(r *http.Request) (string, error) { return r.URL.Query().Get("as"), nil })
	opened := make(chan struct{}, 1)
	_, url := serveComponent(t, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		_ = hub.Add(context.Background(), c)
		opened <- struct{}{}
	}}, auth)
	c := dial(t, url+"?as=dave", nil)
	<-opened
	n, err := hub.PublishToUser(context.Background(), "dave", ratchet.Text("hi dave"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, m := read(t, c)
	assert.Equal(t, "hi dave", m)
}

// One subscriber that stops reading is cut off; the others get everything
// and are not slowed down.
func TestHubSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	hub := ratchet.NewHub()
	url, opened := hubServer(t, hub, ratchet.WithSendQueue(128), ratchet.WithWriteTimeout(time.Second))
	fast := make([]*websocket.Conn, 5)
	for i := range fast {
		fast[i] = dial(t, url+"?topic=t", nil)
		<-opened
	}
	slowNet, err := net.Dial("tcp", strings.TrimPrefix(url, "ws://"))
	require.NoError(t, err)
	defer slowNet.Close()
	_, err = fmt.Fprintf(slowNet, "GET /?topic=t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	require.NoError(t, err)
	slow := <-opened

	payload := strings.Repeat("x", 16<<10)
	const n = 2000 // 32 MiB per subscriber: far more than socket buffers hold
	received := make([]atomic.Int64, len(fast))
	done := make(chan struct{})
	for i, c := range fast {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range n {
				_, m := read(t, c)
				if !assert.Equal(t, fmt.Sprintf("%d:%s", j, payload), m, "subscriber %d", i) {
					return
				}
				received[i].Add(1)
			}
		}()
	}
	// The publisher keeps at most a window of messages ahead of the fast
	// subscribers, so they are never slow themselves; the slow one falls
	// behind without holding anyone back.
	// A subscriber stalls if it makes no progress for 30 s: a bound on a
	// stall, not on the run, which may be slow on a loaded machine.
	const window = 64
	for j := range n {
		for i := range received {
			last, deadline := received[i].Load(), time.Now().Add(30*time.Second)
			for got := last; int64(j)-got > window; got = received[i].Load() {
				if got != last {
					last, deadline = got, time.Now().Add(30*time.Second)
				}
				require.True(t, time.Now().Before(deadline), "fast subscriber %d stalled at %d", i, got)
				time.Sleep(50 * time.Microsecond)
			}
		}
		_, err := hub.Publish(context.Background(), "t", ratchet.Text(fmt.Sprintf("%d:%s", j, payload)))
		require.NoError(t, err)
	}
	for range fast {
		<-done
	}
	require.Eventually(t, func() bool { return slow.Context().Err() != nil }, 10*time.Second, 10*time.Millisecond,
		"the slow subscriber is cut off")
	assert.Equal(t, 5, hub.Subscribers("t"))
}

// Two Apps (two nodes) share topics through a Broker.
func TestHubAcrossNodesWithMemoryBroker(t *testing.T) {
	broker := ratchet.NewMemoryBroker()
	defer broker.Close()
	hubA, hubB := ratchet.NewHub(ratchet.WithBroker(broker)), ratchet.NewHub(ratchet.WithBroker(broker))
	urlA, openedA := hubServer(t, hubA)
	urlB, openedB := hubServer(t, hubB)
	a := dial(t, urlA+"?topic=news&user=ann", nil)
	<-openedA
	b := dial(t, urlB+"?topic=news&user=ann", nil)
	<-openedB

	ctx := context.Background()
	for i := range 100 {
		_, err := hubA.Publish(ctx, "news", ratchet.Text(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	for i := range 100 {
		for _, c := range []*websocket.Conn{a, b} {
			_, m := read(t, c)
			require.Equal(t, fmt.Sprint(i), m, "per-topic order from one publisher")
		}
	}
	_, err := hubB.PublishToUser(ctx, "ann", ratchet.Text("both nodes"))
	require.NoError(t, err)
	for _, c := range []*websocket.Conn{a, b} {
		_, m := read(t, c)
		assert.Equal(t, "both nodes", m)
	}
	require.NoError(t, b.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return hubB.Subscribers("news") == 0 }, 5*time.Second, 5*time.Millisecond)
	_, err = hubB.Publish(ctx, "news", ratchet.Text("after"))
	require.NoError(t, err)
	_, m := read(t, a)
	assert.Equal(t, "after", m)
	require.NoError(t, hubA.Close(ctx))
	require.NoError(t, hubB.Close(ctx))
	_, err = hubA.Publish(ctx, "news", ratchet.Text("x"))
	assert.ErrorIs(t, err, ratchet.ErrHubClosed)
}

// With a Presence, the Hub records which users are on which topic.
func TestHubPresence(t *testing.T) {
	presence := ratchet.NewMemoryPresence()
	defer presence.Close(context.Background())
	hub := ratchet.NewHub(ratchet.WithPresence(presence))
	assert.Same(t, presence, hub.Presence())
	assert.Nil(t, ratchet.NewHub().Presence())
	ctx := context.Background()
	events := make(chan ratchet.PresenceEvent, 10)
	stop, err := presence.Watch(ctx, "room", func(ev ratchet.PresenceEvent) { events <- ev })
	require.NoError(t, err)
	defer stop()
	next := func() ratchet.PresenceEvent {
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no presence event")
			return ratchet.PresenceEvent{}
		}
	}
	members := func() []string {
		m, err := presence.Members(ctx, "room")
		require.NoError(t, err)
		return m
	}

	url, opened := hubServer(t, hub)
	a1 := dial(t, url+"?topic=room&user=ann", nil)
	<-opened
	assert.Equal(t, ratchet.PresenceEvent{Kind: ratchet.PresenceJoin, Topic: "room", User: "ann"}, next())
	a2 := dial(t, url+"?topic=room&user=ann", nil) // a second tab: no new event
	<-opened
	b := dial(t, url+"?topic=room", nil) // anonymous: not recorded
	connB := <-opened
	assert.Equal(t, []string{"ann"}, members())

	require.NoError(t, hub.SetUser(ctx, connB, "bob"))
	assert.Equal(t, ratchet.PresenceEvent{Kind: ratchet.PresenceJoin, Topic: "room", User: "bob"}, next())
	assert.Equal(t, []string{"ann", "bob"}, members())

	require.NoError(t, a1.Close(websocket.StatusNormalClosure, ""))
	require.NoError(t, a2.Close(websocket.StatusNormalClosure, ""))
	assert.Equal(t, ratchet.PresenceEvent{Kind: ratchet.PresenceLeave, Topic: "room", User: "ann"}, next())
	require.NoError(t, hub.Unsubscribe(ctx, connB, "room"))
	assert.Equal(t, ratchet.PresenceEvent{Kind: ratchet.PresenceLeave, Topic: "room", User: "bob"}, next())
	assert.Empty(t, members())
	b.Close(websocket.StatusNormalClosure, "")
}

// A MemoryBroker never hands its subscribers text that is not UTF-8: a
// browser would fail its connection.
func TestMemoryBrokerRefusesInvalidText(t *testing.T) {
	b := ratchet.NewMemoryBroker()
	defer b.Close()
	ctx := context.Background()
	var got []ratchet.Message
	s, err := b.Subscribe(ctx, "t", func(m ratchet.Message) { got = append(got, m) })
	require.NoError(t, err)
	defer s.Unsubscribe(ctx)
	require.ErrorIs(t, b.Publish(ctx, "t", ratchet.Message{Type: ratchet.MessageText, Data: []byte("\xff")}), ratchet.ErrInvalidUTF8)
	require.NoError(t, b.Publish(ctx, "t", ratchet.Binary([]byte("\xff"))))
	assert.Equal(t, []ratchet.Message{ratchet.Binary([]byte("\xff"))}, got)
}
