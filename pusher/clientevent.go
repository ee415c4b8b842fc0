package pusher

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/ratchetgo/ratchet"
)

// clientEvent handles a client-* event: when the app allows client events,
// on a private or presence channel the sender has subscribed to, within
// the size and rate limits, it goes to the channel's other subscribers on
// every node, with the sender's user_id on a presence channel. The sender
// does not get it back. Refusals are pusher:error messages: 4301 for the
// limits and for apps without client events, 4009 for channels the
// connection may not send on.
func (c *conn) clientEvent(ctx context.Context, m clientMessage) {
	if !c.a.ClientEvents {
		c.sendError(CodeClientEventRejected, "Client events are not enabled for this app")
		return
	}
	if !ValidEventName(m.Event) {
		c.sendError(CodeClientEventRejected, "Event name too long (at most "+strconv.Itoa(MaxEventNameLength)+" bytes)")
		return
	}
	sub := c.subs[m.Channel]
	switch {
	case sub == nil:
		c.sendError(CodeUnauthorized, "Not subscribed to channel "+strconv.Quote(truncate(m.Channel, MaxChannelNameLength)))
		return
	case sub.kind != kindPrivate && sub.kind != kindPresence:
		c.sendError(CodeUnauthorized, "Client events are allowed on private and presence channels only")
		return
	case len(m.Data) > c.a.MaxEventDataSize:
		c.sendError(CodeClientEventRejected, "Event data too large (at most "+strconv.Itoa(c.a.MaxEventDataSize)+" bytes)")
		return
	case !c.bucket.take(c.s.cfg.now()):
		c.sendError(CodeClientEventRejected, "Client event rate limit exceeded (at most "+strconv.Itoa(c.a.ClientEventsPerSecond)+" per second)")
		return
	}
	var userID string
	if sub.kind == kindPresence {
		userID = sub.member.id
	}
	var data []byte
	if m.Data != nil {
		data = m.Data
	}
	b := appendEventHeader(nil, c.socketID)
	b = appendFrame(b, m.Event, m.Channel, data, userID)
	if _, err := c.s.hub.Publish(ctx, c.a.topic(m.Channel), ratchet.Message{Type: ratchet.MessageText, Data: b}); err != nil {
		c.sendError(0, "Client event not delivered, try again later")
		return
	}
	if c.a.hooks != nil {
		d := string(m.Data)
		var s string
		if json.Unmarshal(m.Data, &s) == nil {
			d = s // a string is sent as is, anything else as JSON
		}
		c.a.hooks.local(webhookEvent{Name: WebhookClientEvent, Channel: m.Channel, Event: m.Event, Data: &d, SocketID: c.socketID, UserID: userID})
	}
}
