package pusher

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

	"github.com/ratchetgo/ratchet"
)

// Types of pusher:subscription_error, with the HTTP-like status pusher-js
// passes on.
const (
	errTypeAuth        = "AuthError"      // 401: bad or missing signature
	errTypeInvalid     = "InvalidChannel" // 400: a name or channel_data the server cannot take
	errTypeLimit       = "LimitReached"   // 403: too many channels, or a full presence channel
	errTypeUnavailable = "ServerError"    // 503: the Hub, Broker or Presence failed
)

// checkAuth reports whether auth is "key:signature" for this app, the
// signature being hex(HMAC-SHA256(secret, subject...)). The signature is
// compared in constant time.
func (a *app) checkAuth(auth string, subject ...string) bool {
	key, sig, ok := strings.Cut(auth, ":")
	if !ok || subtle.ConstantTimeCompare([]byte(key), []byte(a.Key)) != 1 || len(sig) != 2*sha256.Size {
		return false
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(sig)); err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(a.Secret))
	for _, s := range subject {
		m.Write([]byte(s))
	}
	return hmac.Equal(got[:], m.Sum(nil))
}

func (c *conn) subscriptionError(channel, typ, message string, status int) {
	c.send(subscriptionErrorFrame(channel, typ, message, status))
}

// subscribe handles pusher:subscribe. The subscription_succeeded answer
// goes out when the subscription is in effect, before any event of the
// channel; for a cache channel the last event (or pusher:cache_miss)
// follows it.
func (c *conn) subscribe(ctx context.Context, m clientMessage) {
	var d subscribeData
	if decodeData(m.Data, &d) != nil || d.Channel == "" {
		c.sendError(0, "pusher:subscribe needs data with a channel")
		return
	}
	ch := d.Channel
	switch {
	case !ValidChannelName(ch) || ch[0] == '#' && channelKind(ch) != kindServerToUser:
		c.subscriptionError(truncate(ch, MaxChannelNameLength), errTypeInvalid,
			"Invalid channel name: at most "+strconv.Itoa(MaxChannelNameLength)+" characters of [A-Za-z0-9_-=@,.;]", 400)
		return
	case c.subs[ch] != nil:
		c.sendError(0, "Existing subscription to channel "+ch)
		return
	case len(c.subs) >= c.a.MaxChannels:
		c.subscriptionError(ch, errTypeLimit, "Too many channels on this connection (at most "+strconv.Itoa(c.a.MaxChannels)+")", 403)
		return
	}
	sub := &subscription{kind: channelKind(ch)}
	switch sub.kind {
	case kindServerToUser:
		// The connection is on its user's topic since it signed in.
		if c.user == nil || ch != serverToUserPrefix+c.user.id {
			c.subscriptionError(ch, errTypeAuth, "Sign in as this user first", 401)
			return
		}
		c.subs[ch] = sub
		c.send(stringFrame(evSubscriptionSucceeded, ch, "{}"))
		return
	case kindPrivate, kindEncrypted:
		if !c.a.checkAuth(d.Auth, c.socketID, ":", ch) {
			c.subscriptionError(ch, errTypeAuth, "Invalid signature for "+ch, 401)
			return
		}
	case kindPresence:
		var ok bool
		if sub.member, ok = c.presenceMember(ch, d); !ok {
			return
		}
	}
	if c.join(ctx, ch, sub) {
		c.subs[ch] = sub
	}
}

// memberOf returns the member of a presence subscription, nil for others.
func (sub *subscription) memberOf() *member {
	if sub.kind != kindPresence {
		return nil
	}
	return &sub.member
}

// presenceMember checks the authorization of a presence subscription and
// returns the member it makes of the connection: from channel_data, or the
// signed-in user when there is none (pusher-js allows that).
func (c *conn) presenceMember(ch string, d subscribeData) (member, bool) {
	if d.ChannelData == "" && c.user != nil {
		if !c.a.checkAuth(d.Auth, c.socketID, ":", ch) {
			c.subscriptionError(ch, errTypeAuth, "Invalid signature for "+ch, 401)
			return member{}, false
		}
		return *c.user, true
	}
	if !c.a.checkAuth(d.Auth, c.socketID, ":", ch, ":", d.ChannelData) {
		c.subscriptionError(ch, errTypeAuth, "Invalid signature for "+ch, 401)
		return member{}, false
	}
	m, err := parseMember(d.ChannelData, "user_id")
	if err != nil {
		c.subscriptionError(ch, errTypeInvalid, err.Error(), 400)
		return member{}, false
	}
	return m, true
}

// join subscribes the connection to the channel's topic, and for presence
// channels records its member first.
func (c *conn) join(ctx context.Context, ch string, sub *subscription) bool {
	topic := c.a.topic(ch)
	if sub.kind == kindPresence {
		ps, err := c.a.acquirePresence(ctx, ch)
		if err != nil {
			c.subscriptionError(ch, errTypeUnavailable, "Presence unavailable, try again later", 503)
			return false
		}
		if !ps.admits(sub.member.id) {
			c.a.releasePresence(ps)
			c.subscriptionError(ch, errTypeLimit, "The presence channel is full (at most "+strconv.Itoa(c.a.MaxPresenceMembers)+" members)", 403)
			return false
		}
		if err := c.s.presence.Join(ctx, ps.topic, sub.member.encoded); err != nil {
			c.a.releasePresence(ps)
			c.subscriptionError(ch, errTypeUnavailable, "Presence unavailable, try again later", 503)
			return false
		}
		sub.presence = ps
	}
	var opts ratchet.SubscribeOptions
	var cached *ratchet.Publication
	cache := isCacheChannel(ch)
	if cache {
		cached, opts.Since = c.a.lastEvent(ctx, topic)
	}
	opts.Ready = func(rec ratchet.Recovery) {
		if sub.presence != nil {
			sub.presence.joined(c, sub.member)
		} else {
			c.send(stringFrame(evSubscriptionSucceeded, ch, "{}"))
		}
		switch {
		case !cache || rec.Sent > 0: // newer events went out already
		case rec.Recovered && cached != nil:
			_ = c.SendPublication(*cached)
		default:
			c.send(appendFrame(nil, evCacheMiss, ch, nil, ""))
			c.a.hooks.local(webhookEvent{Name: WebhookCacheMiss, Channel: ch})
		}
	}
	// Counted before the client hears of it, so that a count it asks for
	// next includes it.
	c.a.addLocal(ch, 1)
	c.a.hooks.subscribed(ctx, ch, sub.memberOf())
	if _, err := c.s.hub.SubscribeWith(ctx, c, topic, opts); err != nil {
		c.a.addLocal(ch, -1)
		c.a.hooks.unsubscribed(context.WithoutCancel(ctx), ch, sub.memberOf())
		if sub.presence != nil {
			c.leavePresence(context.WithoutCancel(ctx), sub)
		}
		if !errors.Is(err, ratchet.ErrClosed) {
			c.subscriptionError(ch, errTypeUnavailable, "Subscription failed, try again later", 503)
		}
		return false
	}
	return true
}

// lastEvent returns the last publication kept for a cache channel's topic
// and the position to subscribe from so that nothing published meanwhile
// is missed. Without history (or when it fails) there is none and the
// subscriber gets pusher:cache_miss.
func (a *app) lastEvent(ctx context.Context, topic string) (*ratchet.Publication, ratchet.Position) {
	page, err := a.s.hub.History(ctx, topic, ratchet.Position{}, 0)
	if err != nil {
		return nil, ratchet.Position{}
	}
	n := len(page.Publications)
	if n == 0 || page.Publications[n-1].Position != page.Latest {
		return nil, page.Latest
	}
	return &page.Publications[n-1], page.Latest
}

// unsubscribe handles pusher:unsubscribe; a channel the connection is not
// on is ignored, as by Pusher.
func (c *conn) unsubscribe(ctx context.Context, m clientMessage) {
	var d subscribeData
	if decodeData(m.Data, &d) != nil {
		c.sendError(0, "pusher:unsubscribe needs data with a channel")
		return
	}
	if sub := c.subs[d.Channel]; sub != nil {
		delete(c.subs, d.Channel)
		c.leave(ctx, d.Channel, sub, true)
	}
}

// leave ends a subscription; hub tells whether the Hub topic must be left
// too (not when the connection ends: the Hub drops it by itself).
func (c *conn) leave(ctx context.Context, ch string, sub *subscription, hub bool) {
	if sub.kind == kindServerToUser {
		return // the user's topic stays while the connection is signed in
	}
	if hub {
		_ = c.s.hub.Unsubscribe(ctx, c, c.a.topic(ch))
	}
	if sub.presence != nil {
		c.leavePresence(ctx, sub)
	}
	c.a.addLocal(ch, -1)
	c.a.hooks.unsubscribed(ctx, ch, sub.memberOf())
}

func (c *conn) leavePresence(ctx context.Context, sub *subscription) {
	ps := sub.presence
	ps.left(c, sub.member)
	if err := c.s.presence.Leave(ctx, ps.topic, sub.member.encoded); err != nil {
		c.s.log().Warn("pusher: presence leave failed; the member goes when its entry expires", "channel", ps.channel, "err", err)
	}
	c.a.releasePresence(ps)
}
