package push

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ratchetgo/ratchet"
)

// Endpoint is a ratchet.MessageComponent that lets browsers subscribe to Hub
// topics with the plain WebSocket API. Route it like any component:
//
//	hub := ratchet.NewHub()
//	app.Route("/push", push.NewEndpoint(hub), nil, ratchet.WithReadLimit(4<<10))
//
// A client picks its first topics in the URL (ws://host/push?topic=a&topic=b)
// and changes them later with JSON control messages; everything published
// to its topics, to its user (Hub.PublishToUser) or to all (Hub.Broadcast)
// arrives as plain text or binary frames, unwrapped. See the package
// documentation for the wire format.
//
// Every connection is added to the Hub when it opens and leaves all its
// topics when it ends.
type Endpoint struct {
	hub *ratchet.Hub
	cfg config
}

// NewEndpoint returns an Endpoint subscribing connections to hub.
func NewEndpoint(hub *ratchet.Hub, opts ...Option) *Endpoint {
	return &Endpoint{hub: hub, cfg: newConfig(opts)}
}

// malformedKey is where an Endpoint counts a connection's malformed control
// messages (Conn.Set).
const malformedKey = "github.com/ratchetgo/ratchet/push.malformed"

// hubTimeout bounds one Hub call made for a client (it matters with a
// Broker).
const hubTimeout = 10 * time.Second

// OnOpen adds c to the Hub and subscribes it to the topics of the URL's
// topic parameters, in order, each answered like a subscribe control
// message. More topic parameters than WithMaxTopics allows close the
// connection with 1008 before any is subscribed.
func (e *Endpoint) OnOpen(c ratchet.Conn) {
	ctx, cancel := context.WithTimeout(c.Context(), hubTimeout)
	defer cancel()
	if err := e.hub.Add(ctx, c); err != nil {
		_ = c.Close(ratchet.StatusTryAgainLater, "hub unavailable")
		return
	}
	q := c.Request().URL.Query()
	topics := q["topic"]
	if len(topics) > e.cfg.maxTopics {
		_ = c.Close(ratchet.StatusPolicyViolation, CodeTooManyTopics)
		return
	}
	since := make([]ratchet.Position, len(topics))
	if s := q.Get("since"); s != "" {
		var err error
		if since, err = parseCursor(s, len(topics)); err != nil {
			_ = c.Close(ratchet.StatusPolicyViolation, CodeInvalidSince)
			return
		}
	}
	envelope := q.Get("envelope") == "1" // one Request for all the topics: each call rebuilds it
	for i, t := range topics {
		e.subscribe(ctx, c, t, since[i], envelope)
	}
}

// OnMessage handles one control message. A binary message closes the
// connection with 1003 (unsupported data); a malformed or oversized text
// message gets an error reply and counts towards WithMaxMalformed.
func (e *Endpoint) OnMessage(c ratchet.Conn, msg ratchet.Message) {
	if msg.Type != ratchet.MessageText {
		_ = c.Close(ratchet.StatusUnsupportedData, "control messages are JSON text")
		return
	}
	ctl, err := parseControl(msg.Data, e.cfg.maxControlSize)
	if err != nil {
		code := CodeMalformed
		if errors.Is(err, errControlTooLarge) {
			code = CodeTooLarge
		}
		e.malformed(c, code)
		return
	}
	ctx, cancel := context.WithTimeout(c.Context(), hubTimeout)
	defer cancel()
	if ctl.subscribe {
		e.subscribe(ctx, c, ctl.topic, ctl.since, envelopeWanted(c))
	} else {
		e.unsubscribe(ctx, c, ctl.topic)
	}
}

// OnClose does nothing: the Hub drops a connection from all its topics by
// itself when it ends.
func (e *Endpoint) OnClose(ratchet.Conn) {}

// OnError does nothing; wrap the Endpoint to log errors.
func (e *Endpoint) OnError(ratchet.Conn, error) {}

func (e *Endpoint) subscribe(ctx context.Context, c ratchet.Conn, topic string, since ratchet.Position, envelope bool) {
	if code := e.check(c, topic); code != "" {
		e.replyError(c, code, topic)
		return
	}
	subs := e.hub.TopicsOf(c)
	if len(subs) >= e.cfg.maxTopics && !slices.Contains(subs, topic) {
		e.replyError(c, CodeTooManyTopics, topic)
		return
	}
	// The reply goes out from Ready: after the recovered messages, before
	// any live one.
	_, err := e.hub.SubscribeWith(ctx, c, topic, ratchet.SubscribeOptions{
		Since:    since,
		Envelope: envelope,
		Ready: func(rec ratchet.Recovery) {
			r := reply{Subscribed: &topic, Position: rec.Position.String()}
			if !since.IsZero() {
				r.Recovered = &rec.Recovered
			} else if !e.cfg.acks {
				return
			}
			_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: r.encode()})
		},
	})
	if err != nil {
		e.replyError(c, CodeUnavailable, topic)
	}
}

// envelopeWanted reports whether c asked for every message in the JSON
// envelope that carries its topic and position (?envelope=1).
func envelopeWanted(c ratchet.Conn) bool {
	return c.Request().URL.Query().Get("envelope") == "1"
}

func (e *Endpoint) unsubscribe(ctx context.Context, c ratchet.Conn, topic string) {
	if !ratchet.ValidTopic(topic) {
		e.replyError(c, CodeInvalidTopic, topic)
		return
	}
	if err := e.hub.Unsubscribe(ctx, c, topic); err != nil {
		e.replyError(c, CodeUnavailable, topic)
		return
	}
	if e.cfg.acks {
		_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: reply{Unsubscribed: &topic}.encode()})
	}
}

// check validates and authorizes a subscription; it returns an error code,
// or "" when the subscription is allowed.
func (e *Endpoint) check(c ratchet.Conn, topic string) string {
	return checkTopic(e.cfg.authorize, c, topic)
}

func checkTopic(authorize Authorizer, c ratchet.Conn, topic string) string {
	if !ratchet.ValidTopic(topic) {
		return CodeInvalidTopic
	}
	if authorize != nil && authorize(c, topic) != nil {
		return CodeForbidden
	}
	return ""
}

func (e *Endpoint) malformed(c ratchet.Conn, code string) {
	n := 0
	if v, ok := c.Get(malformedKey); ok {
		n, _ = v.(int)
	}
	n++
	c.Set(malformedKey, n)
	if e.cfg.maxMalformed >= 0 && n > e.cfg.maxMalformed {
		_ = c.Close(ratchet.StatusPolicyViolation, "too many malformed control messages")
		return
	}
	e.replyError(c, code, "")
}

func (e *Endpoint) replyError(c ratchet.Conn, code, topic string) {
	r := reply{Error: code}
	if topic != "" || code == CodeInvalidTopic {
		topic = echoTopic(topic)
		r.Topic = &topic
	}
	_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: r.encode()})
}

// echoTopic shortens a topic repeated in a reply: an invalid one may be long.
func echoTopic(t string) string {
	if len(t) > ratchet.MaxTopicLen {
		return t[:ratchet.MaxTopicLen]
	}
	return t
}
