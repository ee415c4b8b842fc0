package pusher_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/pusher"
)

func expectErrorCode(t *testing.T, c *client, code int) string {
	t.Helper()
	var d struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	c.expect("pusher:error").decode(t, &d)
	require.Equal(t, code, d.Code, d.Message)
	return d.Message
}

func TestClientEventsOff(t *testing.T) {
	off := testApp
	off.ClientEvents = false
	n := single(t, []pusher.App{off})
	c := connect(t, n, off.Key)
	c.join("private-x", "")
	c.send("client-typing", "private-x", map[string]any{})
	expectErrorCode(t, c, 4301)
}

// A client event reaches the channel's other subscribers on every node,
// never the sender, with user_id on presence channels.
func TestClientEventsAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, nil), cl.node(t, nil)
	sender, near, far := connect(t, a, testApp.Key), connect(t, a, testApp.Key), connect(t, b, testApp.Key)
	for _, c := range []*client{sender, near, far} {
		c.join("private-room", "")
	}
	sender.send("client-typing", "private-room", map[string]any{"who": "me"})
	for _, c := range []*client{near, far} {
		f := c.expectOn("client-typing", "private-room")
		assert.JSONEq(t, `{"who":"me"}`, string(f.Data))
		assert.Nil(t, f.UserID)
	}
	sender.sync() // not echoed

	joinPresence(t, sender, "presence-room", "42", "Ann")
	joinPresence(t, far, "presence-room", "7", "Bob")
	expectMember(t, sender, "pusher_internal:member_added", "presence-room")
	sender.send("client-whisper", "presence-room", "psst")
	f := far.expectOn("client-whisper", "presence-room")
	assert.Equal(t, "psst", f.data())
	require.NotNil(t, f.UserID)
	assert.Equal(t, "42", *f.UserID)
	sender.sync()
}

func TestClientEventRefusals(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	other := connect(t, n, testApp.Key)
	c.join("news", "")
	c.join("private-encrypted-e", "")
	c.join("private-x", "")
	other.join("private-x", "")
	for _, tc := range []struct {
		channel string
		data    any
		code    int
	}{
		{"news", "x", 4009},                // public channel
		{"private-encrypted-e", "x", 4009}, // encrypted channel
		{"private-y", "x", 4009},           // not subscribed
		{"private-x", strings.Repeat("x", pusher.DefaultMaxEventDataSize), 4301},
	} {
		c.send("client-e", tc.channel, tc.data)
		expectErrorCode(t, c, tc.code)
	}
	c.send("client-"+strings.Repeat("e", pusher.MaxEventNameLength), "private-x", "x")
	expectErrorCode(t, c, 4301)
	other.sync() // none of it arrived
}

func TestClientEventRateLimit(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	n := single(t, nil, pusher.WithClock(clock.Now))
	c, other := connect(t, n, testApp.Key), connect(t, n, testApp.Key)
	c.join("private-x", "")
	other.join("private-x", "")
	for i := 0; i < pusher.DefaultClientEventsPerSecond; i++ {
		c.send("client-e", "private-x", i)
	}
	c.send("client-e", "private-x", "one too many")
	expectErrorCode(t, c, 4301)
	for i := 0; i < pusher.DefaultClientEventsPerSecond; i++ {
		assert.Equal(t, string(rune('0'+i)), other.expect("client-e").data())
	}
	clock.Add(200 * time.Millisecond) // two more
	c.send("client-e", "private-x", "a")
	c.send("client-e", "private-x", "b")
	c.send("client-e", "private-x", "c")
	expectErrorCode(t, c, 4301)
	assert.Equal(t, "a", other.expect("client-e").data())
	assert.Equal(t, "b", other.expect("client-e").data())
	other.sync()
	c.sync() // the connection stays
}
