package pusher_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/pusher"
)

// A cache channel hands a new subscriber its last event, on any node, or
// pusher:cache_miss.
func TestCacheChannels(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, nil), cl.node(t, nil)
	ctx := context.Background()
	first := connect(t, a, testApp.Key)
	first.join("cache-prices", "")
	first.expectOn("pusher:cache_miss", "cache-prices")

	require.NoError(t, a.srv.Trigger(ctx, []string{"cache-prices"}, "price", "1"))
	require.NoError(t, a.srv.Trigger(ctx, []string{"cache-prices"}, "price", "2"))
	assert.Equal(t, "1", first.expectOn("price", "cache-prices").data())
	assert.Equal(t, "2", first.expectOn("price", "cache-prices").data())

	late := connect(t, b, testApp.Key)
	late.join("cache-prices", "")
	assert.Equal(t, "2", late.expectOn("price", "cache-prices").data(), "the last one only")
	late.sync()

	// private and presence cache channels too.
	p := connect(t, b, testApp.Key)
	p.join("private-cache-x", "")
	p.expectOn("pusher:cache_miss", "private-cache-x")
	require.NoError(t, a.srv.Trigger(ctx, []string{"presence-cache-y"}, "state", `{"on":true}`))
	joinPresence(t, p, "presence-cache-y", "1", "a")
	assert.JSONEq(t, `{"on":true}`, p.expectOn("state", "presence-cache-y").data())
}

// Without CacheHistory among the Hub's options, cache channels miss.
func TestCacheChannelWithoutHistory(t *testing.T) {
	n := startNode(t, ratchet.NewHub(), []pusher.App{testApp})
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"cache-x"}, "e", "1"))
	c := connect(t, n, testApp.Key)
	c.join("cache-x", "")
	c.expectOn("pusher:cache_miss", "cache-x")
}

// socket_id keeps an event from one connection, whichever node it is on.
func TestTriggerExcludesSocketAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, nil), cl.node(t, nil)
	onA, onB := connect(t, a, testApp.Key), connect(t, b, testApp.Key)
	onA.join("news", "")
	onB.join("news", "")
	trigger(t, a, map[string]any{"name": "update", "channel": "news", "data": "1", "socket_id": onB.socketID})
	trigger(t, a, map[string]any{"name": "marker", "channels": []string{"news"}, "data": "2"})
	assert.Equal(t, "1", onA.expectOn("update", "news").data())
	onA.expectOn("marker", "news")
	onB.expectOn("marker", "news") // update never came

	require.NoError(t, b.srv.TriggerEvent(context.Background(), pusher.Event{Channels: []string{"news"}, Name: "go", Data: "3", SocketID: onA.socketID}))
	assert.Equal(t, "3", onB.expectOn("go", "news").data())
	onA.sync()
}

func TestTriggerChecks(t *testing.T) {
	n := single(t, nil)
	ctx := context.Background()
	many := make([]string, pusher.MaxTriggerChannels+1)
	for i := range many {
		many[i] = "c"
	}
	for _, tc := range []struct {
		e   pusher.Event
		err error
	}{
		{pusher.Event{App: "9", Channels: []string{"a"}, Name: "e"}, pusher.ErrUnknownApp},
		{pusher.Event{Name: "e"}, pusher.ErrTooManyChannels},
		{pusher.Event{Channels: many, Name: "e"}, pusher.ErrTooManyChannels},
		{pusher.Event{Channels: []string{"a b"}, Name: "e"}, pusher.ErrInvalidChannel},
		{pusher.Event{Channels: []string{"a"}}, pusher.ErrInvalidEventName},
		{pusher.Event{Channels: []string{"a"}, Name: "e", Data: string(make([]byte, pusher.DefaultMaxEventDataSize+1))}, pusher.ErrDataTooLarge},
		{pusher.Event{Channels: []string{"a"}, Name: "e", SocketID: "1."}, pusher.ErrInvalidSocketID},
	} {
		assert.ErrorIs(t, n.srv.TriggerEvent(ctx, tc.e), tc.err, "%+v", tc.e.Name)
	}
	assert.Error(t, n.srv.Trigger(ctx, []string{"a"}, "e", func() {}), "data that JSON cannot encode")
}
