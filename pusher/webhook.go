package pusher

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ratchetgo/ratchet"
)

// Webhook is a URL that gets an app's events, as Pusher's webhooks do: a
// POST of {"time_ms":...,"events":[...]} with the headers X-Pusher-Key
// (the app's key) and X-Pusher-Signature (hex HMAC-SHA256 of the body
// with the app's secret), which the server libraries' webhook().isValid()
// check.
type Webhook struct {
	URL string
	// Events are the names to send (WebhookChannelOccupied, ...); all when
	// empty.
	Events []string
}

// The events of webhooks.
const (
	WebhookChannelOccupied = "channel_occupied" // {"channel"}: the first subscriber on any node
	WebhookChannelVacated  = "channel_vacated"  // {"channel"}: the last subscriber left, on every node
	WebhookMemberAdded     = "member_added"     // {"channel","user_id"}: a user's first connection joined a presence channel
	WebhookMemberRemoved   = "member_removed"   // {"channel","user_id"}: its last connection left
	WebhookClientEvent     = "client_event"     // {"channel","event","data","socket_id","user_id"}
	WebhookCacheMiss       = "cache_miss"       // {"channel"}: a subscriber to a cache channel found no event
)

// Webhook defaults.
const (
	DefaultWebhookGrace    = 3 * time.Second        // how long channel_vacated and member_removed wait for a return
	DefaultWebhookAttempts = 5                      // tries of one batch
	DefaultWebhookBackoff  = 500 * time.Millisecond // wait before the second try, doubled for each next one
	WebhookBatchWait       = 100 * time.Millisecond // how long events gather before a batch is sent
	MaxWebhookBatch        = 100                    // events of one batch
	MaxWebhookQueue        = 10000                  // events waiting per webhook; more are dropped and counted
)

// webhookEvent is one event of a batch.
type webhookEvent struct {
	Name     string  `json:"name"`
	Channel  string  `json:"channel"`
	UserID   string  `json:"user_id,omitempty"`
	Event    string  `json:"event,omitempty"`
	Data     *string `json:"data,omitempty"`
	SocketID string  `json:"socket_id,omitempty"`
}

// hooks is the webhook machinery of one app on one node.
//
// client_event and cache_miss happen on one node, which sends them. The
// others are about the whole cluster and are sent by one node, the leader:
// the node of the app with the smallest id. To that end every node keeps,
// on the Presence, the channels it has subscribers to (topic
// "@pusher-channels/" + prefix) and its presence members (topic
// "@pusher-members/" + prefix, "channel\n" + member), and follows them and
// the app's nodes from the start, so that any node can take over as leader
// with the whole picture. A channel_vacated or member_removed waits
// App.WebhookGrace: when the channel or user is back by then, neither it
// nor the new channel_occupied or member_added is sent. Events while a
// dead leader's entries have not yet expired (the Presence TTL) are lost.
type hooks struct {
	a       *app
	senders []*hookSender
	stops   []func()

	mu       sync.Mutex
	loading  bool
	buffered []ratchet.PresenceEvent
	nodes    map[string]bool
	channels map[string]bool
	members  map[string]userMembers     // by channel
	pending  map[pendingKey]*time.Timer // vacated and removed events in their grace
	closed   bool
	stopped  sync.Once
}

type pendingKey struct{ channel, user string } // user "" for a channel

func (a *app) channelsTopic() string { return "@pusher-channels/" + a.TopicPrefix }
func (a *app) membersTopic() string  { return "@pusher-members/" + a.TopicPrefix }

// startHooks starts the app's webhook senders and follows what the leader
// reports.
func (a *app) startHooks(ctx context.Context) error {
	if len(a.Webhooks) == 0 {
		return nil
	}
	h := &hooks{
		a:        a,
		loading:  true,
		nodes:    make(map[string]bool),
		channels: make(map[string]bool),
		members:  make(map[string]userMembers),
		pending:  make(map[pendingKey]*time.Timer),
	}
	for _, w := range a.Webhooks {
		h.senders = append(h.senders, newHookSender(a, w))
	}
	a.hooks = h
	p := a.s.presence
	for _, topic := range []string{a.nodesTopic(), a.channelsTopic(), a.membersTopic()} {
		stop, err := p.Watch(ctx, topic, h.onEvent)
		if err != nil {
			h.stop(ctx)
			return err
		}
		h.stops = append(h.stops, stop)
	}
	var events []ratchet.PresenceEvent
	for _, topic := range []string{a.nodesTopic(), a.channelsTopic(), a.membersTopic()} {
		users, err := p.Members(ctx, topic)
		if err != nil {
			h.stop(ctx)
			return err
		}
		for _, u := range users {
			events = append(events, ratchet.PresenceEvent{Kind: ratchet.PresenceJoin, Topic: topic, User: u})
		}
	}
	h.mu.Lock()
	for _, ev := range append(events, h.buffered...) {
		h.apply(ev, false)
	}
	h.buffered, h.loading = nil, false
	h.mu.Unlock()
	return nil
}

func (h *hooks) onEvent(ev ratchet.PresenceEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.loading {
		h.buffered = append(h.buffered, ev)
		return
	}
	h.apply(ev, true)
}

// leaderLocked reports whether this node sends the cluster's events.
func (h *hooks) leaderLocked() bool {
	self := h.a.s.nodeID
	if !h.a.s.cluster.enabled {
		return true
	}
	for n := range h.nodes {
		if n < self {
			return false
		}
	}
	return h.nodes[self]
}

// apply records an event of the app's nodes, channels or members and, if
// notify and this node leads, reports what it changed.
func (h *hooks) apply(ev ratchet.PresenceEvent, notify bool) {
	join := ev.Kind == ratchet.PresenceJoin
	switch ev.Topic {
	case h.a.nodesTopic():
		if join {
			h.nodes[ev.User] = true
		} else {
			delete(h.nodes, ev.User)
		}
	case h.a.channelsTopic():
		if h.channels[ev.User] == join {
			return
		}
		if join {
			h.channels[ev.User] = true
		} else {
			delete(h.channels, ev.User)
		}
		if notify && h.leaderLocked() {
			h.reportLocked(pendingKey{channel: ev.User}, join, webhookEvent{Name: WebhookChannelOccupied, Channel: ev.User})
		}
	case h.a.membersTopic():
		channel, m, ok := strings.Cut(ev.User, "\n")
		id, _, valid := decodeMember(m)
		if !ok || !valid {
			return
		}
		users := h.members[channel]
		if users == nil {
			users = make(userMembers)
			h.members[channel] = users
		}
		changed := join && users.join(id, m, nil) || !join && users.leave(id, m)
		if len(users) == 0 {
			delete(h.members, channel)
		}
		if notify && changed && h.leaderLocked() {
			h.reportLocked(pendingKey{channel, id}, join, webhookEvent{Name: WebhookMemberAdded, Channel: channel, UserID: id})
		}
	}
}

// reportLocked sends an arrival (occupied, added) or holds a departure
// (vacated, removed) for the grace period; an arrival within it cancels
// both.
func (h *hooks) reportLocked(k pendingKey, arrival bool, ev webhookEvent) {
	if arrival {
		if t := h.pending[k]; t != nil && t.Stop() {
			delete(h.pending, k)
			return
		}
		h.send(ev)
		return
	}
	if ev.Name == WebhookChannelOccupied {
		ev.Name = WebhookChannelVacated
	} else {
		ev.Name = WebhookMemberRemoved
	}
	if h.a.WebhookGrace < 0 || h.closed {
		h.send(ev)
		return
	}
	if old := h.pending[k]; old != nil {
		old.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(h.a.webhookGrace(), func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.pending[k] == t {
			delete(h.pending, k)
			h.send(ev)
		}
	})
	h.pending[k] = t
}

func (a *app) webhookGrace() time.Duration {
	if a.WebhookGrace == 0 {
		return DefaultWebhookGrace
	}
	return a.WebhookGrace
}

// send queues ev for every webhook that wants it.
func (h *hooks) send(ev webhookEvent) {
	b, _ := json.Marshal(ev)
	for _, s := range h.senders {
		s.add(ev.Name, b)
	}
}

// subscribed records a subscription of this node for the leader: the
// channel, and for presence channels the member. unsubscribed undoes it.
// The Presence counts them, so their order does not matter.
func (h *hooks) subscribed(ctx context.Context, channel string, m *member) {
	if h == nil {
		return
	}
	p := h.a.s.presence
	err := p.Join(ctx, h.a.channelsTopic(), channel)
	if err == nil && m != nil {
		err = p.Join(ctx, h.a.membersTopic(), channel+"\n"+m.encoded)
	}
	if err != nil {
		h.a.s.log().Warn("pusher: webhooks will miss a subscription", "channel", channel, "err", err)
	}
}

func (h *hooks) unsubscribed(ctx context.Context, channel string, m *member) {
	if h == nil {
		return
	}
	p := h.a.s.presence
	var err error
	if m != nil {
		err = p.Leave(ctx, h.a.membersTopic(), channel+"\n"+m.encoded)
	}
	if e := p.Leave(ctx, h.a.channelsTopic(), channel); err == nil {
		err = e
	}
	if err != nil {
		h.a.s.log().Warn("pusher: webhooks will see an unsubscription late", "channel", channel, "err", err)
	}
}

// local sends an event that happens on this node only.
func (h *hooks) local(ev webhookEvent) {
	if h != nil {
		h.send(ev)
	}
}

// stop sends the events still in their grace, then what is queued, within
// ctx. Later events are not sent.
func (h *hooks) stop(ctx context.Context) { h.stopped.Do(func() { h.stopOnce(ctx) }) }

func (h *hooks) stopOnce(ctx context.Context) {
	for _, stop := range h.stops {
		stop()
	}
	h.mu.Lock()
	h.closed = true
	for k, t := range h.pending {
		if t.Stop() {
			delete(h.pending, k)
			name := WebhookMemberRemoved
			if k.user == "" {
				name = WebhookChannelVacated
			}
			h.send(webhookEvent{Name: name, Channel: k.channel, UserID: k.user})
		}
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range h.senders {
		wg.Add(1)
		go func() { defer wg.Done(); s.close(ctx) }()
	}
	wg.Wait()
}

// hookSender delivers the events of one webhook, in batches, retrying with
// backoff. It has one goroutine, from startHooks to stop.
type hookSender struct {
	a      *app
	hook   Webhook
	want   map[string]bool // nil: every event
	client *http.Client

	mu    sync.Mutex
	queue []json.RawMessage
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	ctx   context.Context // ends the tries when stop's ctx ends
	abort context.CancelFunc
}

func newHookSender(a *app, w Webhook) *hookSender {
	s := &hookSender{a: a, hook: w, client: a.s.cfg.webhookClient,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if len(w.Events) > 0 {
		s.want = make(map[string]bool)
		for _, e := range w.Events {
			s.want[e] = true
		}
	}
	s.ctx, s.abort = context.WithCancel(context.Background())
	go s.run()
	return s
}

func (s *hookSender) add(name string, ev json.RawMessage) {
	if s.want != nil && !s.want[name] {
		return
	}
	select {
	case <-s.quit:
		return // stopped: nothing sends it any more
	default:
	}
	s.mu.Lock()
	full := len(s.queue) >= MaxWebhookQueue
	if !full {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	if full {
		s.a.s.webhookDropped.Add(1)
		s.a.s.log().Error("pusher: webhook queue full, event dropped", "url", s.hook.URL)
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *hookSender) run() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			s.flush()
			return
		}
		select { // let a burst gather into one batch
		case <-time.After(WebhookBatchWait):
		case <-s.quit:
		}
		s.flush()
	}
}

// flush sends everything queued, in batches.
func (s *hookSender) flush() {
	for {
		s.mu.Lock()
		n := min(len(s.queue), MaxWebhookBatch)
		batch := slices.Clone(s.queue[:n])
		s.queue = s.queue[n:]
		s.mu.Unlock()
		if n == 0 {
			return
		}
		s.post(batch)
	}
}

// post sends one batch, retrying on errors and non-2xx answers.
func (s *hookSender) post(events []json.RawMessage) {
	var body bytes.Buffer
	body.WriteString(`{"time_ms":`)
	body.WriteString(strconv.FormatInt(s.a.s.cfg.now().UnixMilli(), 10))
	body.WriteString(`,"events":[`)
	for i, ev := range events {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(ev)
	}
	body.WriteString(`]}`)
	m := hmac.New(sha256.New, []byte(s.a.Secret))
	m.Write(body.Bytes())
	sig := hex.EncodeToString(m.Sum(nil))
	backoff := s.a.s.cfg.webhookBackoff
	var lastErr string
	for attempt := 1; attempt <= s.a.s.cfg.webhookAttempts; attempt++ {
		if attempt > 1 {
			select {
			case <-time.After(backoff):
				backoff *= 2
				s.a.s.webhookRetries.Add(1)
			case <-s.ctx.Done():
				attempt = s.a.s.cfg.webhookAttempts + 1
				continue
			}
		}
		status, err := s.try(body.Bytes(), sig)
		if err == nil && status >= 200 && status < 300 {
			s.a.s.webhookDeliveries.Add(1)
			return
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = http.StatusText(status)
		}
	}
	s.a.s.webhookFailures.Add(1)
	s.a.s.log().Error("pusher: webhook batch not delivered", "url", s.hook.URL, "events", len(events), "err", lastErr)
}

func (s *hookSender) try(body []byte, sig string) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, hubTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.hook.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Pusher-Key", s.a.Key)
	req.Header.Set("X-Pusher-Signature", sig)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// close sends what is queued and ends the goroutine; when ctx ends first,
// the tries in progress stop.
func (s *hookSender) close(ctx context.Context) {
	close(s.quit)
	select {
	case <-s.done:
	case <-ctx.Done():
		s.abort()
		<-s.done
	}
	s.abort()
}

// WebhookFailures returns how many webhook batches were given up after
// their last try, and how many events were dropped from full queues.
func (s *Server) WebhookFailures() (batches, dropped uint64) {
	return s.webhookFailures.Load(), s.webhookDropped.Load()
}
