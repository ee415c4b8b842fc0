package pusher_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/pusher"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// redisNode starts a node on the Redis at addr: its own client, Broker
// and Presence, under prefix, serving apps (testApp when none).
func redisNode(t *testing.T, addr, prefix string, apps ...pusher.App) *node {
	t.Helper()
	if apps == nil {
		apps = []pusher.App{testApp}
	}
	return startNode(t, redisHub(t, addr, prefix), apps, pusher.WithLogger(quiet))
}

// redisHub is a Hub on the Redis at addr: its own client, Broker and
// Presence, under prefix, closed after the node's own cleanup.
func redisHub(t *testing.T, addr, prefix string) *ratchet.Hub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	b, err := redis.New(ctx, client, redis.WithPrefix(prefix), redis.WithLogger(quiet))
	require.NoError(t, err)
	p := redis.NewPresence(b, redis.WithPresencePrefix(prefix+"presence:"))
	t.Cleanup(func() { // after the node's own cleanup
		_ = p.Close(context.Background())
		_ = b.Close()
		_ = client.Close()
	})
	return ratchet.NewHub(ratchet.WithBroker(b), ratchet.WithPresence(p))
}

// until reads frames up to the marker event and returns the events before
// it.
func (c *client) until(marker string) []string {
	c.t.Helper()
	var seen []string
	for {
		f := c.read()
		if f.Event == marker {
			return seen
		}
		seen = append(seen, f.Event+" "+f.data())
	}
}

// Presence across two nodes on Redis, whose events travel apart from the
// subscriptions: each step is followed by a marker event, published after
// the step's presence events on the same Redis connection, so every node
// has heard them by the time its clients get the marker.
func TestPresenceAcrossNodesRedis(t *testing.T) {
	addr, prefix := needRedis(t), redisPrefix()
	a, b := redisNode(t, addr, prefix), redisNode(t, addr, prefix)
	const ch = "presence-redis"
	ctx := context.Background()
	step := func(want map[*client][]string) {
		t.Helper()
		require.NoError(t, a.srv.Trigger(ctx, []string{ch}, "marker", ""))
		for c, events := range want {
			assert.Equal(t, events, c.until("marker"))
		}
	}
	added := func(id string) string {
		return `pusher_internal:member_added {"user_id":"` + id + `","user_info":{"name":"` + id + `"}}`
	}
	removed := func(id string) string { return `pusher_internal:member_removed {"user_id":"` + id + `"}` }

	obsA := connect(t, a, testApp.Key)
	joinPresence(t, obsA, ch, "obs-a", "obs-a")
	obsB := connect(t, b, testApp.Key)
	d := joinPresence(t, obsB, ch, "obs-b", "obs-b")
	assert.Equal(t, []string{"obs-a", "obs-b"}, d.Presence.IDs)
	step(map[*client][]string{obsA: {added("obs-b")}, obsB: nil})

	tab1 := connect(t, b, testApp.Key)
	joinPresence(t, tab1, ch, "u", "u")
	step(map[*client][]string{obsA: {added("u")}, obsB: {added("u")}, tab1: nil})
	tab2 := connect(t, b, testApp.Key)
	d = joinPresence(t, tab2, ch, "u", "u")
	assert.Equal(t, []string{"obs-a", "obs-b", "u"}, d.Presence.IDs)
	tab3 := connect(t, a, testApp.Key)
	joinPresence(t, tab3, ch, "u", "u")
	step(map[*client][]string{obsA: nil, obsB: nil, tab1: nil, tab2: nil, tab3: nil})

	r := newRequest("GET", "/apps/1/channels/"+ch, nil)
	r.params["info"] = "user_count,subscription_count"
	assert.Equal(t, map[string]any{"occupied": true, "user_count": 3.0, "subscription_count": 5.0}, r.ok(t, b))

	closeAndWait(t, b, tab1, tab2)
	step(map[*client][]string{obsA: nil, obsB: nil, tab3: nil})
	closeAndWait(t, a, tab3)
	step(map[*client][]string{obsA: {removed("u")}, obsB: {removed("u")}})
}
