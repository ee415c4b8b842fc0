package pusher

import (
	"context"
	"time"
)

// signIn handles pusher:signin: user authentication, auth being
// "key:hex(HMAC-SHA256(secret, socket_id + "::user::" + user_data))" and
// user_data a JSON object with a non-empty "id". A signed-in connection
// gets the events sent to its user (channel #server-to-user-{id}), can be
// terminated through the HTTP API, and may subscribe to presence channels
// without channel_data. A refused sign-in gets a pusher:error of code 4009;
// the connection stays (an App.SigninTimeout still closes it).
func (c *conn) signIn(ctx context.Context, m clientMessage) {
	var d signinData
	if decodeData(m.Data, &d) != nil {
		c.sendError(CodeUnauthorized, "pusher:signin needs data with auth and user_data")
		return
	}
	if c.user != nil {
		c.sendError(0, "Already signed in")
		return
	}
	if !c.a.checkAuth(d.Auth, c.socketID, "::user::", d.UserData) {
		c.sendError(CodeUnauthorized, "Invalid signature for pusher:signin")
		return
	}
	u, err := parseMember(d.UserData, "id")
	if err != nil {
		c.sendError(CodeUnauthorized, "user_data must be a JSON object with an id")
		return
	}
	if err := c.s.hub.Subscribe(ctx, c, c.a.topic(serverToUserPrefix+u.id)); err != nil {
		c.sendError(0, "Sign-in failed, try again later")
		return
	}
	c.user = &u
	c.signedIn.Store(true)
	if t := c.signin.Load(); t != nil {
		t.Stop()
	}
	d2 := append([]byte(`{"user_data":`), appendJSONString(nil, d.UserData)...)
	c.send(appendFrame(nil, evSigninSuccess, "", append(d2, '}'), ""))
}

// tokenBucket limits the client events of a connection: rate per second,
// in bursts of at most rate.
type tokenBucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

func (b *tokenBucket) init(rate int) { b.rate, b.tokens = float64(rate), float64(rate) }

// take spends a token, if there is one at time now.
func (b *tokenBucket) take(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
