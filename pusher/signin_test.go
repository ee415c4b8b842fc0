package pusher_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signin signs c in as pusher-http-node's authenticateUser would have it.
func (c *client) signin(userData string) {
	c.t.Helper()
	auth := testApp.Key + ":" + hmacHex(testApp.Secret, c.socketID+"::user::"+userData)
	c.send("pusher:signin", "", map[string]string{"auth": auth, "user_data": userData})
	f := c.expect("pusher:signin_success")
	var d struct {
		UserData string `json:"user_data"`
	}
	f.decode(c.t, &d)
	require.Equal(c.t, userData, d.UserData)
}

func TestSignin(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	const userData = `{"id":"u1","user_info":{"name":"Ann"}}`
	for _, auth := range []string{"", "app-key:" + hmacHex(testApp.Secret, "other::user::"+userData)} {
		c.send("pusher:signin", "", map[string]string{"auth": auth, "user_data": userData})
		expectErrorCode(t, c, 4009)
	}
	bad := `{"name":"no id"}`
	c.send("pusher:signin", "", map[string]string{"auth": testApp.Key + ":" + hmacHex(testApp.Secret, c.socketID+"::user::"+bad), "user_data": bad})
	expectErrorCode(t, c, 4009)

	c.signin(userData)
	c.send("pusher:signin", "", map[string]string{"auth": "x", "user_data": userData})
	c.expect("pusher:error")

	// pusher-js subscribes to its user's channel after signing in.
	c.subscribe("#server-to-user-u1", "", "")
	c.expectOn("pusher_internal:subscription_succeeded", "#server-to-user-u1")
	c.subscribe("#server-to-user-u2", "", "")
	assert.Contains(t, c.expectOn("pusher:subscription_error", "#server-to-user-u2").data(), "AuthError")

	// pusher-node's sendToUser is a trigger on that channel.
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"#server-to-user-u1"}, "hello", "you"))
	assert.Equal(t, "you", c.expectOn("hello", "#server-to-user-u1").data())

	// A signed-in user joins presence channels without channel_data.
	const ch = "presence-signed"
	c.subscribe(ch, channelAuth(testApp, c.socketID, ch, ""), "")
	var d presenceData
	c.expectOn("pusher_internal:subscription_succeeded", ch).decode(t, &d)
	assert.Equal(t, []string{"u1"}, d.Presence.IDs)
	assert.Equal(t, map[string]any{"name": "Ann"}, d.Presence.Hash["u1"])
}

func TestTerminateUserConnections(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, nil), cl.node(t, nil)
	u1a, u1b, u2 := connect(t, a, testApp.Key), connect(t, b, testApp.Key), connect(t, b, testApp.Key)
	u1a.signin(`{"id":"u1"}`)
	u1b.signin(`{"id":"u1"}`)
	u2.signin(`{"id":"u2"}`)
	out := newRequest("POST", "/apps/1/users/u1/terminate_connections", []byte("{}")).ok(t, a)
	assert.Empty(t, out)
	u1a.closed(4009)
	u1b.closed(4009)
	u2.sync()
}
