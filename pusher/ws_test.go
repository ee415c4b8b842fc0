package pusher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
	"github.com/ratchetgo/ratchet/pusher"
)

func TestConnectionEstablished(t *testing.T) {
	n := single(t, nil)
	a := connect(t, n, testApp.Key)
	b := connect(t, n, testApp.Key)
	assert.NotEqual(t, a.socketID, b.socketID)
	assert.Equal(t, 120, a.timeout, "Pusher's activity timeout, in seconds")
	assert.Equal(t, 2, n.srv.Len())

	short := testApp
	short.ActivityTimeout = 1500 * time.Millisecond
	assert.Equal(t, 1, connect(t, single(t, []pusher.App{short}), short.Key).timeout, "whole seconds, at least 1")
}

// Refusals happen after the upgrade, so that pusher-js sees the close code.
func TestConnectionRefusals(t *testing.T) {
	n := single(t, nil)
	refused := func(key, query string, code int) {
		t.Helper()
		c := &client{t: t, ws: dialRaw(t, n, key, query)}
		c.closed(code)
	}
	refused("nope", "?protocol=7", 4001)
	refused(testApp.Key, "?protocol=4", 4007)
	refused(testApp.Key, "?protocol=8", 4007)
	refused(testApp.Key, "?protocol=x", 4006)
	connect(t, n, testApp.Key) // no protocol parameter: taken as 7
}

func TestConnectionCap(t *testing.T) {
	capped := testApp
	capped.MaxConnections = 1
	n := single(t, []pusher.App{capped})
	first := connect(t, n, capped.Key)
	over := &client{t: t, ws: dialRaw(t, n, capped.Key, "?protocol=7")}
	over.closed(4100)
	first.close()
	require.Eventually(t, func() bool { return n.srv.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	connect(t, n, capped.Key) // room again
}

func TestShutdownClosesWith4200(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	c.join("news", "")
	done := make(chan error, 1)
	go func() { done <- n.srv.Shutdown(context.Background()) }()
	c.closed(4200)
	require.NoError(t, <-done)
}

func TestPingPong(t *testing.T) {
	idle := testApp
	idle.ActivityTimeout, idle.PongTimeout = 50*time.Millisecond, 50*time.Millisecond
	n := single(t, []pusher.App{idle})

	c := connect(t, n, idle.Key)
	c.sync() // a client's ping is answered
	// Silent for the activity timeout: pinged; an answer keeps it open,
	// so the next silence brings another ping, not a close.
	c.expect("pusher:ping")
	c.send("pusher:pong", "", map[string]any{})
	c.expect("pusher:ping")
	// No answer: 4201.
	c.closed(4201)
}

func TestSigninTimeout(t *testing.T) {
	strict := testApp
	strict.SigninTimeout = 50 * time.Millisecond
	n := single(t, []pusher.App{strict})
	c := connect(t, n, strict.Key)
	c.closed(4009)
}

func TestMalformedMessages(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	for _, m := range []string{`nope`, `[]`, `{"event":""}`, `{"event":5}`, `{"data":{}}`} {
		wstest.Write(t, c.ws, m)
		c.expect("pusher:error")
	}
	c.send("pusher:subscribe", "", "not an object")
	c.expect("pusher:error")
	c.send("pusher:whatever", "", map[string]any{})
	c.expect("pusher:error")
	c.sync() // still open

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.ws.Write(ctx, websocket.MessageBinary, []byte(`{"event":"pusher:ping"}`)))
	require.Equal(t, websocket.StatusUnsupportedData, wstest.ReadClose(t, c.ws))
}

func TestPublicChannel(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	f := c.join("news", "")
	assert.Equal(t, "{}", f.data())
	// A second subscribe to the same channel is an error, not a second
	// subscription.
	c.subscribe("news", "", "")
	c.expect("pusher:error")

	require.NoError(t, n.srv.Trigger(context.Background(), []string{"news"}, "headline", map[string]string{"title": "hi"}))
	f = c.expectOn("headline", "news")
	assert.JSONEq(t, `{"title":"hi"}`, f.data())
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"news"}, "raw", `plain "text"`))
	assert.Equal(t, `plain "text"`, c.expectOn("raw", "news").data())

	c.send("pusher:unsubscribe", "", map[string]string{"channel": "news"})
	c.sync()
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"news"}, "missed", "x"))
	c.sync() // nothing arrived before the pong
}

func TestPrivateChannelAuth(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	other := connect(t, n, testApp.Key)
	for _, auth := range []string{
		"",
		"app-key",
		"app-key:zz",
		"app-key:" + strings.Repeat("0", 64),
		"wrong-key:" + hmacHex(testApp.Secret, c.socketID+":private-x"),
		channelAuth(testApp, other.socketID, "private-x", ""), // another connection's
		channelAuth(testApp, c.socketID, "private-other", ""), // another channel's
		channelAuth(pusher.App{Key: testApp.Key, Secret: "nope"}, c.socketID, "private-x", ""),
	} {
		c.subscribe("private-x", auth, "")
		f := c.expectOn("pusher:subscription_error", "private-x")
		var d struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
		}
		f.decode(t, &d)
		assert.Equal(t, "AuthError", d.Type, auth)
		assert.Equal(t, 401, d.Status)
	}
	c.join("private-x", "")
	c.join("private-encrypted-y", "")
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"private-x"}, "e", "1"))
	c.expectOn("e", "private-x")
}

func TestInvalidChannels(t *testing.T) {
	few := testApp
	few.MaxChannels = 2
	n := single(t, []pusher.App{few})
	c := connect(t, n, few.Key)
	for _, ch := range []string{"bad channel", "#anything", strings.Repeat("a", 201), "caf\u00e9"} {
		c.subscribe(ch, "", "")
		f := c.expect("pusher:subscription_error")
		assert.Contains(t, f.data(), "InvalidChannel", ch)
	}
	c.join("a", "")
	c.join("b", "")
	c.subscribe("c", "", "")
	f := c.expectOn("pusher:subscription_error", "c")
	assert.Contains(t, f.data(), "LimitReached")
}

// Hub.Publish from Go reaches a channel's subscribers as App.HubEvent, and
// Hub.Broadcast every connection as an event without a channel.
func TestHubPublishReachesChannels(t *testing.T) {
	prefixed := testApp
	prefixed.TopicPrefix = "shop:"
	prefixed.HubEvent = "update"
	n := single(t, []pusher.App{prefixed})
	c := connect(t, n, prefixed.Key)
	c.join("orders", "")
	ctx := context.Background()

	_, err := n.hub.Publish(ctx, "shop:orders", ratchet.Text(`{"id":7}`))
	require.NoError(t, err)
	f := c.expectOn("update", "orders")
	assert.Equal(t, `{"id":7}`, f.data())
	_, err = n.hub.Publish(ctx, "shop:orders", ratchet.Binary([]byte{0, 1, 2}))
	require.NoError(t, err)
	assert.Equal(t, "AAEC", c.expectOn("update", "orders").data())
	_, err = n.hub.Publish(ctx, "orders", ratchet.Text("other topic"))
	require.NoError(t, err)
	_, err = n.hub.Broadcast(ctx, ratchet.Text("to all"))
	require.NoError(t, err)
	f = c.expectOn("update", "")
	assert.Equal(t, "to all", f.data())
}

func TestNewServerRefusesBadApps(t *testing.T) {
	hub := ratchet.NewHub()
	for _, apps := range [][]pusher.App{
		nil,
		{{ID: "1", Key: "k"}},
		{{ID: "1", Key: "k/x", Secret: "s"}},
		{{ID: "1", Key: "k", Secret: "s", TopicPrefix: "x"}},
		{{ID: "1", Key: "k", Secret: "s", TopicPrefix: "@x:"}},
		{{ID: "1", Key: "k", Secret: "s"}, {ID: "1", Key: "k2", Secret: "s", TopicPrefix: "b:"}},
		{{ID: "1", Key: "k", Secret: "s"}, {ID: "2", Key: "k", Secret: "s", TopicPrefix: "b:"}},
		{{ID: "1", Key: "k", Secret: "s"}, {ID: "2", Key: "k2", Secret: "s"}},
	} {
		_, err := pusher.NewServer(hub, apps)
		require.ErrorIs(t, err, pusher.ErrInvalidApp, "%+v", apps)
	}
}
