package pusher_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/pusher"
)

// The Go helpers of an app's auth endpoints sign what the server accepts.
func TestAuthorizeHelpers(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)

	auth, err := testApp.AuthorizeChannel(c.socketID, "private-a", nil)
	require.NoError(t, err)
	assert.Equal(t, channelAuth(testApp, c.socketID, "private-a", ""), auth.Auth)
	c.subscribe("private-a", auth.Auth, "")
	c.expectOn("pusher_internal:subscription_succeeded", "private-a")

	auth, err = testApp.AuthorizeChannel(c.socketID, "presence-b", &pusher.PresenceMember{UserID: "7", UserInfo: map[string]string{"name": "Ann"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"user_id":"7","user_info":{"name":"Ann"}}`, auth.ChannelData)
	c.subscribe("presence-b", auth.Auth, auth.ChannelData)
	var d presenceData
	c.expectOn("pusher_internal:subscription_succeeded", "presence-b").decode(t, &d)
	assert.Equal(t, []string{"7"}, d.Presence.IDs)

	user, err := testApp.AuthenticateUser(c.socketID, map[string]any{"id": "u1", "user_info": map[string]string{"name": "Ann"}})
	require.NoError(t, err)
	c.send("pusher:signin", "", user)
	c.expect("pusher:signin_success")

	for _, tc := range []struct {
		channel string
		member  *pusher.PresenceMember
	}{{"public", nil}, {"presence-c", nil}, {"presence-c", &pusher.PresenceMember{}}, {"private-encrypted-d", nil}} {
		_, err := testApp.AuthorizeChannel(c.socketID, tc.channel, tc.member)
		assert.ErrorIs(t, err, pusher.ErrNotAuthorizable, tc.channel)
	}
	_, err = testApp.AuthenticateUser(c.socketID, map[string]any{"name": "no id"})
	assert.ErrorIs(t, err, pusher.ErrNotAuthorizable)
}
