package ratchet

import (
	"context"
	"encoding/base64"
	"encoding/json"
)

// SubscribeOptions are the settings of Hub.SubscribeWith. The zero value is
// a plain subscription, as Hub.Subscribe makes.
type SubscribeOptions struct {
	// Since, when not zero, is the position of the last message the client
	// has of the topic: the Hub first sends every kept message after it,
	// then the live ones, with no gap and no duplicate (the race between
	// reading history and going live is closed by buffering live messages
	// while history is read and merging by position). Recovery.Recovered
	// says whether history reached back that far.
	Since Position
	// Envelope sends each message of the topic as a JSON text message that
	// carries its topic and position, so that a client can resume:
	//
	//	{"topic":"news","position":"k3x9:17","data":"hello"}
	//	{"topic":"files","position":"k3x9:18","data":"AAECAw==","binary":true}
	//
	// position is absent for topics that keep no history. The envelope is
	// encoded once per message for every enveloped subscriber. Connections
	// that implement PublicationSender render publications themselves and
	// ignore Envelope.
	Envelope bool
	// Ready, if set, is called once, when the subscription is in effect:
	// after the recovered messages were sent and before any live one. A
	// message it sends (an acknowledgement, a "could not recover" notice)
	// reaches the client in that order. It must not block.
	Ready func(Recovery)
}

// Recovery is the outcome of Hub.SubscribeWith.
type Recovery struct {
	// Position is the topic's newest position when live delivery started,
	// zero for a topic without history or without messages yet. A client
	// that saw no message yet can resume from it.
	Position Position
	// Recovered reports that every message after SubscribeOptions.Since was
	// sent (always true without Since). When false the gap cannot be filled
	// (the topic keeps no history, the messages expired or were trimmed, the
	// stream's epoch changed, or more were missed than 16 reads of this
	// node's HistoryPolicy.Size bring): nothing was sent from history, and
	// the client must reload its state from the source of truth.
	Recovered bool
	// Sent is how many messages were sent from history.
	Sent int
}

// PublicationSender is implemented by connections that render a topic's
// messages themselves, with their topic and position: a TransportConn whose
// Transport is a PublicationWriter (an SSE stream writes the position as
// the event's id), a Pusher-protocol connection. The Hub calls
// SendPublication instead of Send for them, for many connections at once on
// a large topic (see ConnSet.Broadcast). Like Send it must not block.
type PublicationSender interface {
	SendPublication(p Publication) error
}

// maxPendingLive bounds the live messages held for one subscriber while its
// history is read; a subscriber that reaches it is closed as a slow consumer.
const maxPendingLive = 4096

// pendingLive is a subscriber that is not in the topic's delivery sets yet.
// While its history is read and sent, the live publications it receives
// are held in pubs. Then, until live delivery on this node has caught up
// with the last position it was sent (a publication already in history may
// still be on its way from the Broker), deliver sends it directly what
// follows that position.
type pendingLive struct {
	pubs     []Publication
	overflow bool

	catchingUp bool     // history is sent: deliver sends what follows skip
	skip       Position // the last position c has
	envelope   bool
}

// SubscribeWith adds c to topic like Subscribe, with the options of opts:
// recovery of missed messages from the topic's history, the JSON envelope,
// a callback that runs before live delivery starts. Subscribing c again to a
// topic it has changes nothing and reports Recovered.
func (h *Hub) SubscribeWith(ctx context.Context, c Conn, topic string, opts SubscribeOptions) (Recovery, error) {
	if !ValidTopic(topic) {
		return Recovery{}, ErrInvalidTopic
	}
	if _, err := h.member(ctx, c); err != nil {
		return Recovery{}, err
	}
	rec, err := h.join(ctx, c, topic, opts, true)
	if err == nil && h.obs != nil && !opts.Since.IsZero() {
		h.obs.Recovered(rec.Recovered)
	}
	return rec, err
}

// join adds c to topic. With needBroker, a Broker that has lost its server
// fails it with ErrBrokerUnavailable (see Subscribe). A join that fails is
// undone.
func (h *Hub) join(ctx context.Context, c Conn, topic string, opts SubscribeOptions, needBroker bool) (Recovery, error) {
	h.mu.Lock()
	m := h.conns[c]
	if m == nil {
		h.mu.Unlock()
		return Recovery{}, ErrClosed // ended meanwhile
	}
	if h.maxSubs > 0 && m.topics.get(topic) == nil && ValidTopic(topic) && len(m.clientTopicsLocked()) >= h.maxSubs {
		h.mu.Unlock()
		return Recovery{}, ErrTooManySubscriptions
	}
	t := h.topics[topic]
	if t == nil {
		t = &hubTopic{name: topic}
		h.topics[topic] = t
	}
	m.topics.set(t)
	added := t.subs.Add(c)
	user := m.user
	if added {
		t.modeMu.Lock()
		if t.pending == nil {
			t.pending = make(map[Conn]*pendingLive)
		}
		t.pending[c] = &pendingLive{}
		t.modeMu.Unlock()
	}
	h.mu.Unlock()
	if !added {
		if needBroker && !h.brokerConnected() {
			return Recovery{}, ErrBrokerUnavailable
		}
		rec := Recovery{Recovered: true}
		if opts.Ready != nil {
			opts.Ready(rec)
		}
		return rec, nil
	}
	err := h.syncBroker(ctx, t)
	if err == nil && needBroker && !h.brokerConnected() {
		err = ErrBrokerUnavailable
	}
	if err == nil {
		err = h.presenceJoin(ctx, topic, user)
	}
	var rec Recovery
	var page HistoryPage
	if err == nil {
		rec, page, err = h.readMissed(ctx, topic, opts.Since)
	}
	if err == nil {
		err = t.goLive(ctx, c, opts, &rec, page)
	}
	if err != nil {
		h.undoJoin(ctx, c, topic)
		return Recovery{}, err
	}
	return rec, nil
}

// brokerConnected reports whether the Broker, if it can tell, has its
// subscriptions in effect.
func (h *Hub) brokerConnected() bool {
	bh, ok := h.broker.(brokerHealth)
	return !ok || bh.Connected()
}

// maxRecoveryPages bounds the history reads of one recovery. A read
// returns up to the node's HistoryPolicy.Size messages, while the stream may
// keep more (it was written by nodes given a larger Size): a recovery reads
// on from the last message read until it has the topic's newest, and gives
// up (Recovered false) after this many reads.
const maxRecoveryPages = 16

// readMissed reads what a subscriber that has seen since missed: every kept
// message after it, or, without since, only the newest position.
func (h *Hub) readMissed(ctx context.Context, topic string, since Position) (Recovery, HistoryPage, error) {
	policy, ok := h.HistoryPolicy(topic)
	if !ok {
		return Recovery{Recovered: since.IsZero()}, HistoryPage{}, nil
	}
	hb := h.historyBroker()
	if since.IsZero() {
		page, err := hb.History(ctx, topic, since, 0)
		if err != nil {
			return Recovery{}, page, err
		}
		// The client starts from Latest.
		return Recovery{Position: page.Latest, Recovered: true}, HistoryPage{Latest: page.Latest}, nil
	}
	page, err := hb.History(ctx, topic, since, policy.Size)
	if err != nil {
		return Recovery{}, page, err
	}
	// Messages after newest are held live meanwhile: reading up to it is
	// enough.
	newest := page.Latest
	for pages := 1; !page.Lost; pages++ {
		n := len(page.Publications)
		if n == 0 || !follows(newest, page.Publications[n-1].Position) {
			break // all read
		}
		if pages == maxRecoveryPages {
			page.Lost = true
			break
		}
		next, err := hb.History(ctx, topic, page.Publications[n-1].Position, policy.Size)
		if err != nil {
			return Recovery{}, page, err
		}
		// An empty page short of newest: the messages are no longer kept.
		page.Lost = next.Lost || len(next.Publications) == 0
		page.Latest = next.Latest
		page.Publications = append(page.Publications, next.Publications...)
	}
	if page.Lost {
		page.Publications = nil // the client starts from Latest
	}
	return Recovery{Position: page.Latest, Recovered: !page.Lost}, page, nil
}

// goLive sends c what it missed, then moves it to live delivery. History
// is sent without holding up the topic's deliveries (live ones are held for
// c meanwhile), and may wait for room in c's queue when c can wait for it;
// the switch to live delivery happens while no delivery of the topic runs.
func (t *hubTopic) goLive(ctx context.Context, c Conn, opts SubscribeOptions, rec *Recovery, page HistoryPage) error {
	// last is what the client has: live messages up to it are dropped
	// (they are in history, or older than the client's position).
	last := page.Latest
	if rec.Recovered && !opts.Since.IsZero() {
		last = opts.Since
	}
	for _, p := range page.Publications {
		if err := sendHistory(ctx, c, p, opts.Envelope); err != nil {
			return err
		}
		last = p.Position
	}
	rec.Sent = len(page.Publications)

	t.deliverMu.Lock()
	defer t.deliverMu.Unlock()
	t.modeMu.Lock()
	defer t.modeMu.Unlock()
	pl := t.pending[c]
	if pl == nil {
		return ErrClosed // left while recovering
	}
	if pl.overflow {
		t.unpendLocked(c)
		_ = c.Close(StatusPolicyViolation, "slow consumer")
		return ErrSlowConsumer
	}
	if opts.Ready != nil {
		opts.Ready(*rec)
	}
	for _, p := range pl.pubs {
		if !follows(p.Position, last) {
			continue
		}
		sendPublication(c, p, opts.Envelope)
		if !p.Position.IsZero() {
			last = p.Position
		}
	}
	if last.IsZero() || !follows(last, t.lastLive) {
		t.unpendLocked(c) // live delivery is at or past last
		t.liveSet(c, opts.Envelope).Add(c)
		return nil
	}
	*pl = pendingLive{catchingUp: true, skip: last, envelope: opts.Envelope}
	return nil
}

// follows reports whether a publication at p comes after the position
// last: a publication without position always does, and so does one of
// another epoch.
func follows(p, last Position) bool {
	return p.IsZero() || p.Epoch != last.Epoch || p.Offset > last.Offset
}

// waitSender is implemented by connections that can wait for room in their
// send queue (this package's WebSocket connections and TransportConns): a
// recovery larger than the queue then slows down instead of failing.
type waitSender interface {
	sendWait(ctx context.Context, msg Message) error
}

// sendHistory sends one recovered publication to c, waiting for room in
// its queue when c can.
func sendHistory(ctx context.Context, c Conn, p Publication, envelope bool) error {
	if tc, ok := c.(*TransportConn); ok && tc.writesPublications() {
		return tc.enqueueWait(ctx, p)
	}
	ws, ok := c.(waitSender)
	if !ok || isPublicationSender(c) {
		sendPublication(c, p, envelope)
		return nil
	}
	msg := p.Message
	if envelope {
		msg = Message{Type: MessageText, Data: appendEnvelope(nil, p)}
	}
	return ws.sendWait(ctx, msg)
}

// liveSet is the delivery set c belongs in.
func (t *hubTopic) liveSet(c Conn, envelope bool) *ConnSet {
	switch {
	case isPublicationSender(c):
		return &t.senders
	case envelope:
		return &t.enveloped
	}
	return &t.plain
}

// isPublicationSender reports whether the Hub hands c publications: a
// TransportConn is a PublicationSender for every Transport, but renders
// them only for a PublicationWriter.
func isPublicationSender(c Conn) bool {
	if tc, ok := c.(*TransportConn); ok {
		return tc.writesPublications()
	}
	_, ok := c.(PublicationSender)
	return ok
}

// unpendLocked takes c out of pending, under modeMu. The emptied map is
// dropped while the topic has one subscriber (a user's own topic, mostly):
// it would hold 256 B of the subscriber's for nothing. A topic of many
// keeps it, not to make it again for each join.
func (t *hubTopic) unpendLocked(c Conn) {
	delete(t.pending, c)
	if len(t.pending) == 0 && t.subs.Len() <= 1 {
		t.pending = nil
	}
}

// dropMode takes c out of every delivery set of t.
func (t *hubTopic) dropMode(c Conn) {
	t.modeMu.Lock()
	t.unpendLocked(c)
	t.plain.Remove(c)
	t.enveloped.Remove(c)
	t.senders.Remove(c)
	t.modeMu.Unlock()
}

// deliver sends p to every subscriber of t and returns how many it was
// queued for. Deliveries of one topic are serialised, so every subscriber
// gets them in the order the Broker hands them over.
func (t *hubTopic) deliver(p Publication) int {
	t.deliverMu.Lock()
	defer t.deliverMu.Unlock()
	if !p.Position.IsZero() {
		t.lastLive = p.Position
	}
	t.modeMu.Lock()
	for c, pl := range t.pending {
		switch {
		case pl.catchingUp:
			switch {
			case p.Position.IsZero(): // new, but says nothing of catching up
				sendPublication(c, p, pl.envelope)
			case follows(p.Position, pl.skip): // caught up: p goes out below
				t.unpendLocked(c)
				t.liveSet(c, pl.envelope).Add(c)
			} // else it was sent from history
		case len(pl.pubs) == maxPendingLive:
			pl.overflow = true
		default:
			pl.pubs = append(pl.pubs, p)
		}
	}
	t.modeMu.Unlock()
	n := t.plain.Broadcast(p.Message)
	if t.enveloped.Len() > 0 {
		n += t.enveloped.Broadcast(Message{Type: MessageText, Data: appendEnvelope(nil, p)})
	}
	return n + fanOut(t.senders.Conns(), func(part []Conn) int {
		sent := 0
		for _, c := range part {
			if c.(PublicationSender).SendPublication(p) == nil {
				sent++
			}
		}
		return sent
	})
}

func sendPublication(c Conn, p Publication, envelope bool) {
	switch {
	case isPublicationSender(c):
		_ = c.(PublicationSender).SendPublication(p)
	case envelope:
		_ = c.Send(Message{Type: MessageText, Data: appendEnvelope(nil, p)})
	default:
		_ = c.Send(p.Message)
	}
}

// appendEnvelope appends the JSON envelope of p (see
// SubscribeOptions.Envelope) to b.
func appendEnvelope(b []byte, p Publication) []byte {
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, p.Topic)
	if !p.Position.IsZero() {
		b = append(b, `,"position":"`...)
		b, _ = p.Position.AppendText(b)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	if p.Message.Type == MessageBinary {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, p.Message.Data)
		return append(b, `","binary":true}`...)
	}
	b = appendJSONString(b, string(p.Message.Data))
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	enc, _ := json.Marshal(s) // a string always encodes
	return append(b, enc...)
}
