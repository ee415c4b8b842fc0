package engineio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/forward"
)

// WithBroker makes the handler one node of a cluster whose nodes share b,
// so that a load balancer may send each request of a polling session to
// any node, round robin, with no sticky sessions: a session id names the
// node that owns the session, and a request arriving at another node is
// forwarded to the owner over b (a topic per node) and answered by it.
// Nothing else changes for the clients; a node that is gone answers
// through the others with a 502 that names it, and its clients open new
// sessions.
//
// A WebSocket upgrade of a session owned by another node is refused with
// a 400 (its frames are not relayed): engine.io-client then keeps the
// session on polling, and a client whose upgrade request lands on the
// owner upgrades as usual. A WebSocket-only client (no polling) has no
// sid to route and opens its session where it lands.
//
// Use the same b as the Hub's (ratchet.WithBroker), with Redis or NATS
// (broker/redis, broker/nats). The handler subscribes to its node's topic
// in NewHandler; if that fails, every request is answered 503 with the
// reason. Shutdown unsubscribes it.
func WithBroker(b ratchet.Broker) Option {
	return func(c *config) { c.broker = b }
}

// clusterSubscribeTimeout bounds NewHandler's subscription to its node's
// topic.
const clusterSubscribeTimeout = 10 * time.Second

// joinCluster subscribes the handler to its node's topic on the broker of
// WithBroker.
func (h *Handler) joinCluster() {
	if h.cfg.broker == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterSubscribeTimeout)
	defer cancel()
	h.node, h.nodeErr = forward.New(ctx, h.cfg.broker, forward.Config{
		Handler: h,
		// The longest a poll is held is a ping interval; a POST is read at
		// once. The ping timeout is the margin.
		Timeout: h.cfg.pingInterval + h.cfg.pingTimeout,
		MaxBody: h.cfg.maxPayload,
	})
	if h.nodeErr != nil {
		h.nodeErr = fmt.Errorf("engineio: cluster: %w", h.nodeErr)
	}
}

// leaveCluster unsubscribes the node's topic, once the sessions ended.
func (h *Handler) leaveCluster(ctx context.Context) error {
	if h.node == nil {
		return nil
	}
	return h.node.Close(ctx)
}

// sidSeparator separates the node id from the random part of a session id.
const sidSeparator = "."

// newSessionID returns 128 random bits, URL-safe, after the id of the
// handler's node and a dot when it is in a cluster (WithBroker).
func (h *Handler) newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	id := base64.RawURLEncoding.EncodeToString(b[:])
	if h.node != nil {
		id = h.node.ID() + sidSeparator + id
	}
	return id
}

// forwarded serves a request of a session owned by another node of the
// cluster, and reports whether it did.
func (h *Handler) forwarded(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.broker == nil {
		return false
	}
	if h.nodeErr != nil {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, h.nodeErr.Error(), http.StatusServiceUnavailable)
		return true
	}
	q := r.URL.Query()
	node, _, ok := strings.Cut(q.Get("sid"), sidSeparator)
	if !ok || node == h.node.ID() || !forward.ValidID(node) {
		return false // a local session, or no session at all
	}
	if q.Get("transport") == "websocket" {
		// Refused, so that engine.io-client stays on polling.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}{codeBadRequest, "Bad request: the session is on node " + node + ", and WebSocket upgrades are not relayed between nodes; keep polling"})
		return true
	}
	h.node.Forward(w, r, node)
	return true
}
