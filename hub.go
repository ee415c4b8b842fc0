package ratchet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Reserved topic names: a Hub keeps every connection it knows in topicAll,
// and each user's connections in userTopicPrefix+user, so that broadcasts and
// user sends cross nodes through the Broker like any topic. Client-chosen
// topics may not start with ReservedTopicPrefix.
const (
	ReservedTopicPrefix = "@"
	topicAll            = "@all"
	userTopicPrefix     = "@user/"
)

// MaxTopicLen is the longest topic name, in bytes, that ValidTopic accepts.
const MaxTopicLen = 256

// cleanupTimeout bounds the Broker and Presence calls that undo a join or
// end the subscriptions of a connection that ended, where no caller's
// context applies.
const cleanupTimeout = 5 * time.Second

// ErrInvalidTopic is returned for a topic name a client may not use: see
// ValidTopic.
var ErrInvalidTopic = errors.New("ratchet: invalid topic name")

// ErrReservedTopic is the former name of ErrInvalidTopic.
//
// Deprecated: use ErrInvalidTopic, which also covers names that are too
// long or not UTF-8.
var ErrReservedTopic = ErrInvalidTopic

// Hub is a registry of connections by topic, safe for concurrent use: the
// Go form of Ratchet's WAMP topics or Socket.IO rooms. Any goroutine may
// publish to a topic without touching connections, and publishing never
// blocks on a slow subscriber (see Conn.Send).
//
// A connection joins a Hub with Add or Subscribe and leaves all its topics
// when it ends. Without a Broker the Hub delivers in-process; with one
// (WithBroker), every publish goes through the Broker so that subscribers on
// every node get it.
type Hub struct {
	broker    Broker
	ownBroker bool // created for history without a Broker; closed by Close
	presence  Presence
	history   []historyRule

	maxSubs int         // WithMaxSubscriptions; 0: no limit
	obs     HubObserver // WithHubObserver; nil: not observed

	mu     sync.Mutex
	topics map[string]*hubTopic
	conns  map[Conn]*hubMember
	closed bool
}

type hubTopic struct {
	name string
	subs ConnSet // every subscriber, recovering ones included

	// deliverMu orders deliveries of the topic, and a recovering
	// subscriber's switch to live delivery with them.
	deliverMu sync.Mutex
	// modeMu guards the delivery sets' membership and pending, so that a
	// subscriber that leaves while it recovers is never added to them.
	modeMu    sync.Mutex
	plain     ConnSet // get the Message as published
	enveloped ConnSet // get it in the JSON envelope (SubscribeOptions.Envelope)
	senders   ConnSet // PublicationSenders
	pending   map[Conn]*pendingLive
	lastLive  Position // of the newest publication delivered, under deliverMu

	brokerSub Subscription
	brokerMu  sync.Mutex // serialises this topic's broker (un)subscriptions
}

type hubMember struct {
	topics memberTopics
	user   string
	hub    *Hub

	// The end-of-connection hook: for this package's connections, next
	// links the member into the connection's endHooks; for any other Conn,
	// stop stops the context.AfterFunc that removes it.
	next *hubMember
	stop func() bool
}

// memberTopics are a member's topics: the first two inline, since most
// connections have no more (topicAll and one topic, or their user's), the
// others in a map made for them, which would cost 256 B for the first.
type memberTopics struct {
	inline [2]*hubTopic
	more   map[string]*hubTopic
}

func (mt *memberTopics) get(name string) *hubTopic {
	for _, t := range mt.inline {
		if t != nil && t.name == name {
			return t
		}
	}
	return mt.more[name]
}

// set adds t, in place of the topic of its name if there is one.
func (mt *memberTopics) set(t *hubTopic) {
	free := -1
	for i, u := range mt.inline {
		switch {
		case u == nil:
			free = i
		case u.name == t.name:
			mt.inline[i] = t
			return
		}
	}
	if _, ok := mt.more[t.name]; !ok && free >= 0 {
		mt.inline[free] = t
		return
	}
	if mt.more == nil {
		mt.more = make(map[string]*hubTopic)
	}
	mt.more[t.name] = t
}

// remove takes out the topic called name and returns it, nil if none.
func (mt *memberTopics) remove(name string) *hubTopic {
	for i, t := range mt.inline {
		if t != nil && t.name == name {
			mt.inline[i] = nil
			return t
		}
	}
	t := mt.more[name]
	delete(mt.more, name)
	return t
}

// all yields every topic.
func (mt *memberTopics) all(yield func(*hubTopic) bool) {
	for _, t := range mt.inline {
		if t != nil && !yield(t) {
			return
		}
	}
	for _, t := range mt.more {
		if !yield(t) {
			return
		}
	}
}

// endHooks lists the Hub members of one of this package's connections,
// under the connection's mu: the connection takes them out of their Hubs
// when it cancels its Context. A context.AfterFunc per membership would
// cost about 1 KiB of each idle connection (its context, its stop
// function, the children map it creates in the connection's context).
type endHooks struct{ first *hubMember }

// hooksEnded is endHooks.first once the connection has ended.
var hooksEnded = new(hubMember)

// addLocked adds m, unless the connection has ended (false).
func (e *endHooks) addLocked(m *hubMember) bool {
	if e.first == hooksEnded {
		return false
	}
	m.next, e.first = e.first, m
	return true
}

// removeLocked takes m out; false if it was not there (the connection has
// ended).
func (e *endHooks) removeLocked(m *hubMember) bool {
	for p := &e.first; *p != nil && *p != hooksEnded; p = &(*p).next {
		if *p == m {
			*p, m.next = m.next, nil
			return true
		}
	}
	return false
}

// endLocked marks the connection ended and returns its members.
func (e *endHooks) endLocked() *hubMember {
	first := e.first
	e.first = hooksEnded
	if first == hooksEnded {
		return nil
	}
	return first
}

// leaveHubs takes c, which has ended, out of the Hubs of members, each on a
// goroutine of its own as a context.AfterFunc would: leaving may wait on a
// Broker or Presence, which must not hold up the end of c.
func leaveHubs(c Conn, members *hubMember) {
	for m := members; m != nil; m = m.next {
		go m.hub.remove(c)
	}
}

// hooksOf returns the endHooks of c and the lock that guards them, nil for
// a Conn of any other type: one that embeds a connection of this package
// too, since its hooks would take the embedded connection out of the Hub,
// not the Conn the Hub knows.
func hooksOf(c Conn) (*endHooks, *sync.Mutex) {
	switch c := c.(type) {
	case *conn:
		return &c.hooks, &c.mu
	case *TransportConn:
		return &c.hooks, &c.mu
	}
	return nil, nil
}

// watchEnd arranges for c to leave h when it ends; false if it has ended.
func (h *Hub) watchEnd(c Conn, m *hubMember) bool {
	hooks, mu := hooksOf(c)
	if hooks == nil {
		ctx := c.Context()
		if ctx.Err() != nil {
			return false
		}
		// no goroutine waits for it
		m.stop = context.AfterFunc(ctx, func() { h.remove(c) })
		return true
	}
	mu.Lock()
	defer mu.Unlock()
	return hooks.addLocked(m)
}

// unwatchEnd undoes watchEnd.
func (h *Hub) unwatchEnd(c Conn, m *hubMember) {
	hooks, mu := hooksOf(c)
	if hooks == nil {
		m.stop()
		return
	}
	mu.Lock()
	hooks.removeLocked(m)
	mu.Unlock()
}

// HubOption configures a Hub.
type HubOption func(*Hub)

// WithBroker makes the Hub publish through b, for scale-out across processes.
// The Hub does not close b.
func WithBroker(b Broker) HubOption { return func(h *Hub) { h.broker = b } }

// WithPresence makes the Hub record, on p, which users are connected to
// which topic: a connection whose User is set joins p on each topic it
// subscribes to and leaves when it unsubscribes or ends. Read the members
// and watch joins and leaves on p. The Hub does not close p.
func WithPresence(p Presence) HubOption { return func(h *Hub) { h.presence = p } }

// Presence returns the Presence given with WithPresence, nil without one.
// Protocol packages built on a Hub (package pusher) record their own
// members on it, so that they are cluster-wide like the Hub's.
func (h *Hub) Presence() Presence { return h.presence }

// WithMaxSubscriptions bounds the topics one connection may subscribe to
// through the Hub (reserved topics, and Add, not counted): past n,
// Subscribe returns ErrTooManySubscriptions, so that code subscribing on a
// client's request cannot be made to hold unbounded state. Default: no
// limit (n <= 0).
func WithMaxSubscriptions(n int) HubOption { return func(h *Hub) { h.maxSubs = max(n, 0) } }

// NewHub returns an empty Hub.
func NewHub(opts ...HubOption) *Hub {
	h := &Hub{topics: make(map[string]*hubTopic), conns: make(map[Conn]*hubMember)}
	for _, o := range opts {
		o(h)
	}
	if len(h.history) > 0 {
		if h.broker == nil {
			h.broker, h.ownBroker = NewMemoryBroker(), true
		} else if _, ok := h.broker.(HistoryBroker); !ok {
			panic("ratchet: WithHistory needs a Broker that keeps history (a HistoryBroker)")
		}
	}
	return h
}

// ValidTopic reports whether name may be chosen by a client: not empty, not
// reserved, valid UTF-8 and at most MaxTopicLen bytes.
func ValidTopic(name string) bool {
	return name != "" && len(name) <= MaxTopicLen && !strings.HasPrefix(name, ReservedTopicPrefix) && utf8.ValidString(name)
}

// Add makes c known to the Hub, for Broadcast and PublishToUser, until it
// ends. Subscribe adds it too.
func (h *Hub) Add(ctx context.Context, c Conn) error {
	_, err := h.member(ctx, c)
	return err
}

// Subscribe adds c to topic, and returns once the subscription is in
// effect: with a Broker, once the Broker has subscribed the topic. It
// returns ErrInvalidTopic for a name ValidTopic refuses, ErrClosed if c has
// ended, ErrHubClosed after Close, ErrBrokerUnavailable while the Broker has
// lost its server (c is then not added; if it was subscribed before, it
// stays so), ErrTooManySubscriptions past WithMaxSubscriptions, or the
// Broker's error.
func (h *Hub) Subscribe(ctx context.Context, c Conn, topic string) error {
	_, err := h.SubscribeWith(ctx, c, topic, SubscribeOptions{})
	return err
}

// Unsubscribe removes c from topic.
func (h *Hub) Unsubscribe(ctx context.Context, c Conn, topic string) error {
	return h.leave(ctx, c, topic)
}

// userSetter is implemented by the connections whose identity Hub.SetUser
// can change: this package's WebSocket connections and TransportConns.
type userSetter interface {
	setUser(user string)
}

// SetUser changes the identity of c (see Conn.User) and the user it is
// reached by with PublishToUser. c must be a connection of this package: a
// WebSocket connection or a TransportConn (SSE streams and Engine.IO
// sessions are TransportConns).
func (h *Hub) SetUser(ctx context.Context, c Conn, user string) error {
	us, ok := c.(userSetter)
	if !ok {
		return fmt.Errorf("ratchet: SetUser: %T is not a connection of package ratchet (a WebSocket connection or a TransportConn)", c)
	}
	m, err := h.member(ctx, c)
	if err != nil {
		return err
	}
	h.mu.Lock()
	old := m.user
	m.user = user
	topics := m.clientTopicsLocked()
	h.mu.Unlock()
	us.setUser(user)
	if old == user {
		return nil
	}
	for _, topic := range topics {
		if err := h.presenceLeave(ctx, topic, old); err != nil {
			return err
		}
		if err := h.presenceJoin(ctx, topic, user); err != nil {
			return err
		}
	}
	if old != "" {
		if err := h.leave(ctx, c, userTopicPrefix+old); err != nil {
			return err
		}
	}
	if user != "" {
		_, err := h.join(ctx, c, userTopicPrefix+user, SubscribeOptions{}, false)
		return err
	}
	return nil
}

// Publish sends msg to every subscriber of topic and returns how many
// connections it was queued for. With a Broker the message travels through
// it to every node, delivery is asynchronous, and the count is this node's
// subscribers at the time of the call. It returns ErrInvalidTopic for an
// empty topic, ErrInvalidUTF8 for text that is not UTF-8, ErrHubClosed after
// Close, or the Broker's error.
func (h *Hub) Publish(ctx context.Context, topic string, msg Message) (int, error) {
	if topic == "" {
		return 0, ErrInvalidTopic
	}
	return h.publish(ctx, topic, msg)
}

// Broadcast sends msg to every connection added to the Hub (on every node,
// with a Broker).
func (h *Hub) Broadcast(ctx context.Context, msg Message) (int, error) {
	return h.publish(ctx, topicAll, msg)
}

// PublishToUser sends msg to every connection of user (on every node, with a
// Broker).
func (h *Hub) PublishToUser(ctx context.Context, user string, msg Message) (int, error) {
	if user == "" {
		return 0, errors.New("ratchet: empty user")
	}
	return h.publish(ctx, userTopicPrefix+user, msg)
}

func (h *Hub) publish(ctx context.Context, topic string, msg Message) (int, error) {
	_, n, err := h.publishPosition(ctx, topic, msg)
	return n, err
}

// PublishPosition is Publish that also returns where msg stands in the
// history of topic (see WithHistory): the zero Position when topic keeps
// none.
func (h *Hub) PublishPosition(ctx context.Context, topic string, msg Message) (Position, int, error) {
	if topic == "" {
		return Position{}, 0, ErrInvalidTopic
	}
	return h.publishPosition(ctx, topic, msg)
}

func (h *Hub) publishPosition(ctx context.Context, topic string, msg Message) (_ Position, _ int, err error) {
	if h.obs != nil {
		defer h.observePublish(time.Now(), &err)
	}
	if err := ctx.Err(); err != nil {
		return Position{}, 0, err
	}
	if !msg.validText() {
		return Position{}, 0, ErrInvalidUTF8
	}
	h.mu.Lock()
	t, closed := h.topics[topic], h.closed
	h.mu.Unlock()
	if closed {
		return Position{}, 0, ErrHubClosed
	}
	n := 0
	if t != nil {
		n = t.subs.Len()
	}
	if policy, ok := h.HistoryPolicy(topic); ok {
		pos, err := h.historyBroker().PublishHistory(ctx, topic, msg, policy)
		if h.obs != nil {
			h.obs.HistoryPublished(err)
		}
		return pos, n, err
	}
	if h.broker != nil {
		return Position{}, n, h.broker.Publish(ctx, topic, msg)
	}
	if t == nil {
		return Position{}, 0, nil
	}
	return Position{}, h.delivered(t.deliver(Publication{Topic: topic, Message: msg})), nil
}

// Subscribers returns how many local connections subscribe to topic.
func (h *Hub) Subscribers(topic string) int {
	h.mu.Lock()
	t := h.topics[topic]
	h.mu.Unlock()
	if t == nil {
		return 0
	}
	return t.subs.Len()
}

// Topics returns the topics with local subscribers, sorted, reserved ones
// left out.
func (h *Hub) Topics() []string {
	h.mu.Lock()
	names := make([]string, 0, len(h.topics))
	for name := range h.topics {
		if !strings.HasPrefix(name, ReservedTopicPrefix) {
			names = append(names, name)
		}
	}
	h.mu.Unlock()
	sort.Strings(names)
	return names
}

// TopicsOf returns the topics c subscribes to, sorted.
func (h *Hub) TopicsOf(c Conn) []string {
	h.mu.Lock()
	var names []string
	if m := h.conns[c]; m != nil {
		for t := range m.topics.all {
			if !strings.HasPrefix(t.name, ReservedTopicPrefix) {
				names = append(names, t.name)
			}
		}
	}
	h.mu.Unlock()
	sort.Strings(names)
	return names
}

// Len returns the number of connections the Hub knows.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Close drops every subscription, local and on the Broker. Publishing,
// adding and subscribing after Close return ErrHubClosed.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	topics := h.topics
	for c, m := range h.conns {
		h.unwatchEnd(c, m)
		delete(h.conns, c)
	}
	h.topics = make(map[string]*hubTopic)
	h.mu.Unlock()
	var errs []error
	for _, t := range topics {
		for _, c := range t.subs.Conns() {
			t.subs.Remove(c)
		}
		errs = append(errs, h.syncBroker(ctx, t))
	}
	if h.ownBroker {
		errs = append(errs, h.broker.Close())
	}
	return errors.Join(errs...)
}

// member returns c's membership, adding c (to topicAll and its user topic)
// on first sight.
func (h *Hub) member(ctx context.Context, c Conn) (*hubMember, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrHubClosed
	}
	if m := h.conns[c]; m != nil {
		h.mu.Unlock()
		return m, nil
	}
	m := &hubMember{user: c.User(), hub: h}
	if !h.watchEnd(c, m) { // c ended since
		h.mu.Unlock()
		return nil, ErrClosed
	}
	h.conns[c] = m
	h.mu.Unlock()

	_, err := h.join(ctx, c, topicAll, SubscribeOptions{}, false)
	if err == nil && m.user != "" {
		_, err = h.join(ctx, c, userTopicPrefix+m.user, SubscribeOptions{}, false)
	}
	return m, err
}

// undoJoin takes c out of topic again, within cleanupTimeout whatever ctx
// says.
func (h *Hub) undoJoin(ctx context.Context, c Conn, topic string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = h.leave(ctx, c, topic)
}

// presenceJoin and presenceLeave record users on client topics only.
func (h *Hub) presenceJoin(ctx context.Context, topic, user string) error {
	if h.presence == nil || user == "" || !ValidTopic(topic) {
		return nil
	}
	return h.presence.Join(ctx, topic, user)
}

func (h *Hub) presenceLeave(ctx context.Context, topic, user string) error {
	if h.presence == nil || user == "" || !ValidTopic(topic) {
		return nil
	}
	return h.presence.Leave(ctx, topic, user)
}

// clientTopicsLocked returns the member's topics that are not reserved.
func (m *hubMember) clientTopicsLocked() []string {
	var names []string
	for t := range m.topics.all {
		if ValidTopic(t.name) {
			names = append(names, t.name)
		}
	}
	return names
}

func (h *Hub) leave(ctx context.Context, c Conn, topic string) error {
	h.mu.Lock()
	var t *hubTopic
	var user string
	if m := h.conns[c]; m != nil {
		t = m.topics.remove(topic)
		user = m.user
	}
	if t == nil {
		h.mu.Unlock()
		return nil
	}
	emptied := h.dropLocked(t, c)
	h.mu.Unlock()
	err := h.presenceLeave(ctx, topic, user)
	if emptied {
		err = errors.Join(err, h.syncBroker(ctx, t))
	}
	return err
}

// dropLocked removes c from t and forgets t once it is empty; it reports
// whether t became empty.
func (h *Hub) dropLocked(t *hubTopic, c Conn) bool {
	t.dropMode(c)
	if !t.subs.Remove(c) || t.subs.Len() > 0 {
		return false
	}
	if h.topics[t.name] == t {
		delete(h.topics, t.name)
	}
	return true
}

// remove runs when c ends: it leaves every topic.
func (h *Hub) remove(c Conn) {
	h.mu.Lock()
	m := h.conns[c]
	delete(h.conns, c)
	var emptied []*hubTopic
	var topics []string
	var user string
	if m != nil {
		for t := range m.topics.all {
			if h.dropLocked(t, c) {
				emptied = append(emptied, t)
			}
		}
		topics, user = m.clientTopicsLocked(), m.user
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, topic := range topics {
		_ = h.presenceLeave(ctx, topic, user)
	}
	for _, t := range emptied {
		_ = h.syncBroker(ctx, t)
	}
}

// syncBroker makes the topic's Broker subscription match whether it has
// local subscribers. The deliver function is bound to t, not to the name,
// so a topic emptied and re-created never receives a message twice.
func (h *Hub) syncBroker(ctx context.Context, t *hubTopic) error {
	if h.broker == nil {
		return nil
	}
	t.brokerMu.Lock()
	defer t.brokerMu.Unlock()
	want := t.subs.Len() > 0
	switch {
	case want && t.brokerSub == nil:
		var sub Subscription
		var err error
		if hb, ok := h.broker.(HistoryBroker); ok {
			sub, err = hb.SubscribePublications(ctx, t.name, func(p Publication) { h.delivered(t.deliver(p)) })
		} else {
			sub, err = h.broker.Subscribe(ctx, t.name, func(m Message) {
				h.delivered(t.deliver(Publication{Topic: t.name, Message: m}))
			})
		}
		if err != nil {
			return err
		}
		t.brokerSub = sub
	case !want && t.brokerSub != nil:
		err := t.brokerSub.Unsubscribe(ctx)
		t.brokerSub = nil
		return err
	}
	return nil
}
