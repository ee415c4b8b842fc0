package pusher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// ChannelAuthorization is what an app's channel authorization endpoint
// answers pusher-js (Laravel's /broadcasting/auth): JSON-encode it as the
// response.
type ChannelAuthorization struct {
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data,omitempty"`
}

// PresenceMember is a connection's identity in a presence channel.
type PresenceMember struct {
	UserID   string `json:"user_id"`
	UserInfo any    `json:"user_info,omitempty"`
}

// UserAuthentication is what an app's user authentication endpoint answers
// pusher-js for pusher.signin() (Laravel's /broadcasting/user-auth).
type UserAuthentication struct {
	Auth     string `json:"auth"`
	UserData string `json:"user_data"`
}

// ErrNotAuthorizable is returned for what the helpers cannot sign: a
// channel that takes no authorization, a presence channel without a member,
// an encrypted channel (it needs a shared secret derived from an
// encryption master key, which this package does not hold), user data
// without an id.
var ErrNotAuthorizable = errors.New("pusher: cannot authorize")

// AuthorizeChannel signs the subscription of socketID to a private or
// presence channel, as the server libraries' authorizeChannel: the Go side
// of an app's auth endpoint, once the app has decided the user may
// subscribe. member is required for presence channels and not used for
// others.
func (a App) AuthorizeChannel(socketID, channel string, member *PresenceMember) (ChannelAuthorization, error) {
	switch channelKind(channel) {
	case kindPrivate:
		return ChannelAuthorization{Auth: a.sign(socketID + ":" + channel)}, nil
	case kindPresence:
		if member == nil || member.UserID == "" {
			return ChannelAuthorization{}, fmt.Errorf("%w: presence channel %q needs a member with a user id", ErrNotAuthorizable, channel)
		}
		data, err := json.Marshal(member)
		if err != nil {
			return ChannelAuthorization{}, fmt.Errorf("pusher: member: %w", err)
		}
		return ChannelAuthorization{Auth: a.sign(socketID + ":" + channel + ":" + string(data)), ChannelData: string(data)}, nil
	}
	return ChannelAuthorization{}, fmt.Errorf("%w: channel %q (private-* and presence-* only)", ErrNotAuthorizable, channel)
}

// AuthenticateUser signs the sign-in of socketID as user, as the server
// libraries' authenticateUser. user must hold a non-empty string "id"; its
// "user_info" is what presence channels show of the user when it
// subscribes without channel_data.
func (a App) AuthenticateUser(socketID string, user map[string]any) (UserAuthentication, error) {
	if id, _ := user["id"].(string); id == "" {
		return UserAuthentication{}, fmt.Errorf("%w: user data needs a string id", ErrNotAuthorizable)
	}
	data, err := json.Marshal(user)
	if err != nil {
		return UserAuthentication{}, fmt.Errorf("pusher: user data: %w", err)
	}
	return UserAuthentication{Auth: a.sign(socketID + "::user::" + string(data)), UserData: string(data)}, nil
}

// sign returns "key:hex(HMAC-SHA256(secret, s))".
func (a App) sign(s string) string {
	m := hmac.New(sha256.New, []byte(a.Secret))
	m.Write([]byte(s))
	return a.Key + ":" + hex.EncodeToString(m.Sum(nil))
}
