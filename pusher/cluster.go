package pusher

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ratchetgo/ratchet"
)

// Subscription counts across nodes.
//
// Each node knows its own subscriptions by channel. When the HTTP API needs
// the cluster's (GET /apps/{id}/channels, the subscription_count and
// occupied of a channel), the node asks the others over the Hub: it
// publishes a query on the app's query topic, every node answers on the
// asker's reply topic with its counts, and the asker sums them up. The
// nodes serving an app are members of a Presence topic of their own, so the
// asker knows whom to wait for; a node that does not answer within
// WithQueryTimeout (it died, its entry not yet expired) is left out and
// logged. Subscribing costs nothing more than the subscription; a count
// costs one round trip through the Broker.
//
// The same topics carry the signatures of the HTTP API requests each node
// accepts, so that every node refuses a replay, not only the one that saw
// the request first (bar a replay arriving within the Broker's delivery
// time).
//
// Without a Presence on the Hub a Server takes itself for the only node.
//
// The topics end with '/', which no channel's topic does.
type cluster struct {
	s       *Server
	enabled bool
	ctl     *ratchet.TransportConn // listens on the control topics (controlConn)
	roles   map[string]topicRole   // by topic

	mu      sync.Mutex
	stopped bool
	pending map[string]chan countAnswer // by query id
	wg      sync.WaitGroup              // answers being sent
}

type topicRole struct {
	a    *app
	role byte
}

// The roles of control topics.
const (
	roleQuery = 'q' // the app's query topic
	roleReply = 'r' // this node's reply topic
	roleSeen  = 's' // the app's accepted request signatures
)

func (a *app) nodesTopic() string         { return "@pusher-nodes/" + a.TopicPrefix }
func (a *app) queryTopic() string         { return a.TopicPrefix + "#pusher/query/" }
func (a *app) replyTopic(n string) string { return a.TopicPrefix + "#pusher/reply/" + n + "/" }
func (a *app) seenTopic() string          { return a.TopicPrefix + "#pusher/seen/" }

// countQuery asks every node for its subscriptions to Channels, or to the
// channels starting with Prefix when Channels is nil.
type countQuery struct {
	ID       string   `json:"id"`
	Reply    string   `json:"reply"`
	Channels []string `json:"channels"`
	Prefix   string   `json:"prefix"`
}

type countAnswer struct {
	ID     string         `json:"id"`
	Node   string         `json:"node"`
	Counts map[string]int `json:"counts"`
}

// nodeIDLen is the length of node and query ids: hex digits.
const nodeIDLen = 24

// newNodeID returns a random id of nodeIDLen hex digits.
func newNodeID() string {
	var b [nodeIDLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// start joins the cluster: this node listens on its apps' query topics and
// its reply topics, and enters the apps' node lists.
func (c *cluster) start(ctx context.Context, s *Server) error {
	c.s = s
	c.pending = make(map[string]chan countAnswer)
	if s.own != nil {
		return nil
	}
	c.enabled = true
	c.ctl = newControlConn(c)
	c.roles = make(map[string]topicRole)
	for _, a := range s.apps {
		c.roles[a.queryTopic()] = topicRole{a, roleQuery}
		c.roles[a.replyTopic(s.nodeID)] = topicRole{a, roleReply}
		c.roles[a.seenTopic()] = topicRole{a, roleSeen}
	}
	for topic := range c.roles {
		if err := s.hub.Subscribe(ctx, c.ctl, topic); err != nil {
			c.stopControl()
			return err
		}
	}
	for i, a := range s.apps {
		if err := s.presence.Join(ctx, a.nodesTopic(), s.nodeID); err != nil {
			for _, b := range s.apps[:i] {
				_ = s.presence.Leave(ctx, b.nodesTopic(), s.nodeID)
			}
			c.stopControl()
			return err
		}
	}
	return nil
}

// stop leaves the cluster and waits for the answers being sent.
func (c *cluster) stop(ctx context.Context) error {
	c.mu.Lock()
	already := c.stopped
	c.stopped = true
	c.mu.Unlock()
	if already || !c.enabled {
		return nil
	}
	var err error
	for _, a := range c.s.apps {
		if e := c.s.presence.Leave(ctx, a.nodesTopic(), c.s.nodeID); e != nil && err == nil {
			err = e
		}
	}
	c.stopControl()
	c.wg.Wait()
	return err
}

// counts returns the subscriptions to channels (or to the channels starting
// with prefix, when channels is nil) on every node.
func (c *cluster) counts(ctx context.Context, a *app, channels []string, prefix string) (map[string]int, error) {
	total := a.localCounts(channels, prefix)
	if !c.enabled {
		return total, nil
	}
	nodes, err := c.s.presence.Members(ctx, a.nodesTopic())
	if err != nil {
		return nil, err
	}
	waiting := make(map[string]bool)
	for _, n := range nodes {
		if n != c.s.nodeID {
			waiting[n] = true
		}
	}
	if len(waiting) == 0 {
		return total, nil
	}
	q := countQuery{ID: newNodeID(), Reply: a.replyTopic(c.s.nodeID), Channels: channels, Prefix: prefix}
	answers := make(chan countAnswer, len(waiting))
	c.mu.Lock()
	c.pending[q.ID] = answers
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, q.ID)
		c.mu.Unlock()
	}()
	b, _ := json.Marshal(q)
	if _, err := c.s.hub.Publish(ctx, a.queryTopic(), ratchet.Message{Type: ratchet.MessageText, Data: b}); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.s.cfg.queryTimeout)
	defer timer.Stop()
	for len(waiting) > 0 {
		select {
		case ans := <-answers:
			if !waiting[ans.Node] {
				continue
			}
			delete(waiting, ans.Node)
			for ch, n := range ans.Counts {
				if n > 0 && (channels == nil || slices.Contains(channels, ch)) {
					total[ch] += n
				}
			}
		case <-timer.C:
			c.s.log().Warn("pusher: nodes did not answer a subscription count; they are left out",
				"app", a.ID, "nodes", slices.Sorted(maps.Keys(waiting)))
			return total, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return total, nil
}

// receive handles a publication on a control topic. It runs on the control
// conn's writer goroutine and must not block, lest the control queue
// overflow: answers are published by a goroutine of their own, which stop
// waits for.
func (c *cluster) receive(p ratchet.Publication) {
	role, ok := c.roles[p.Topic]
	switch {
	case !ok:
		return
	case role.role == roleSeen:
		if mac, ts, ok := parseSeen(p.Message.Data); ok {
			_ = c.s.replay.Check(mac, ts, c.s.cfg.now())
		}
		return
	case role.role == roleReply:
		var ans countAnswer
		if json.Unmarshal(p.Message.Data, &ans) != nil {
			return
		}
		c.mu.Lock()
		ch := c.pending[ans.ID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- ans:
			default: // a node answering twice
			}
		}
		return
	}
	var q countQuery
	if json.Unmarshal(p.Message.Data, &q) != nil || q.Reply == role.a.replyTopic(c.s.nodeID) {
		return // malformed, or our own query
	}
	node, ok := strings.CutPrefix(q.Reply, role.a.TopicPrefix+"#pusher/reply/")
	if !ok || len(node) != nodeIDLen+1 || q.Reply != role.a.replyTopic(node[:nodeIDLen]) {
		return // answers go to reply topics only
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ans := countAnswer{ID: q.ID, Node: c.s.nodeID, Counts: role.a.localCounts(q.Channels, q.Prefix)}
		b, _ := json.Marshal(ans)
		ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.queryTimeout)
		defer cancel()
		if _, err := c.s.hub.Publish(ctx, q.Reply, ratchet.Message{Type: ratchet.MessageText, Data: b}); err != nil {
			c.s.log().Warn("pusher: answering a subscription count failed", "err", err)
		}
	}()
}

// seen tells the other nodes that a request with signature mac, signed at
// ts, was accepted: "<hex mac> <ts>".
func (c *cluster) seen(ctx context.Context, a *app, mac [sha256.Size]byte, ts int64) {
	if !c.enabled {
		return
	}
	b := hex.AppendEncode(nil, mac[:])
	b = strconv.AppendInt(append(b, ' '), ts, 10)
	if _, err := c.s.hub.Publish(ctx, a.seenTopic(), ratchet.Message{Type: ratchet.MessageText, Data: b}); err != nil {
		c.s.log().Warn("pusher: telling the other nodes of an accepted request failed; a replay to them would pass", "err", err)
	}
}

func parseSeen(b []byte) (mac [sha256.Size]byte, ts int64, ok bool) {
	h, t, found := bytes.Cut(b, []byte{' '})
	if !found || len(h) != 2*sha256.Size {
		return mac, 0, false
	}
	if _, err := hex.Decode(mac[:], h); err != nil {
		return mac, 0, false
	}
	ts, ok = parseTimestamp(string(t))
	return mac, ts, ok
}

// controlQueue bounds the control publications waiting for receive. It
// runs without waiting on anything, so only a starved goroutine falls this
// far behind; the control conn then ends as a slow consumer, which is
// logged (the node stops answering counts and seeing replays).
const controlQueue = 1 << 16

// controlConn is how a node listens on its control topics: the transport of
// a ratchet.TransportConn without a client, whose publications go to the
// cluster in order, on the Conn's writer goroutine rather than in the
// Hub's delivery.
type controlConn struct{ c *cluster }

// newControlConn returns the open Conn of a controlConn.
func newControlConn(c *cluster) *ratchet.TransportConn {
	onError := func(_ ratchet.Conn, err error) {
		c.s.log().Error("pusher: the cluster's control topics are no longer listened to", "err", err)
	}
	tc := ratchet.NewTransportConn(ratchet.ComponentFuncs{Error: onError}, controlConn{c}, &http.Request{}, "", controlQueue)
	tc.Open()
	return tc
}

// WritePublications implements ratchet.PublicationWriter.
func (cc controlConn) WritePublications(pubs []ratchet.Publication) error {
	for _, p := range pubs {
		cc.c.receive(p)
	}
	return nil
}

// WriteMessages implements ratchet.Transport; nothing is sent to the
// control conn but publications.
func (controlConn) WriteMessages([]ratchet.Message) error { return nil }

// Close implements ratchet.Transport.
func (controlConn) Close(ratchet.StatusCode, string) error { return nil }

// stopControl ends the control conn (the Hub drops its subscriptions) and
// waits until receive has seen its last publication.
func (c *cluster) stopControl() {
	c.ctl.End(nil)
	<-c.ctl.Done()
}
