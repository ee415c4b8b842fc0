package ratchet

import (
	"errors"
	"net"
	"strings"
	"time"
)

// Observer is told what the WebSocket servers do, for metrics: package
// metrics implements it on Prometheus. Set it with WithObserver; without
// one, nothing is measured and nothing is paid.
//
// Route is called once per server, when it is built, so that an
// implementation resolves its labels there and not per message.
type Observer interface {
	// Route returns the observer of one server: route is the host and path
	// pattern of an App route ("" for a WsServer made with NewWsServer, and
	// for requests an App refuses before choosing a route), transport the
	// kind of connection ("websocket").
	Route(route, transport string) RouteObserver
}

// RouteObserver receives the events of one server. Its methods are called
// on the connections' own goroutines, some for every message, so they must
// be cheap and must not block.
type RouteObserver interface {
	// HandshakeRejected: an upgrade request was refused, before any upgrade.
	HandshakeRejected(reason RejectReason)
	// ConnOpened: a connection was upgraded and is about to see OnOpen.
	ConnOpened()
	// ConnClosed: a connection has ended (after OnClose), with the close
	// code sent or received; StatusAbnormalClosure when the socket was
	// dropped without one.
	ConnClosed(code StatusCode)
	// MessageIn: a message of n bytes arrived.
	MessageIn(n int)
	// MessageOut: a message of n bytes was queued for the peer.
	MessageOut(n int)
	// SlowConsumer: a connection was closed because its send queue was full.
	SlowConsumer()
	// WriteTimeout: a write to the socket did not finish within the write
	// timeout.
	WriteTimeout()
	// Panic: a callback of the component panicked.
	Panic()
	// KeepaliveTimeout: a peer did not answer a ping in time.
	KeepaliveTimeout()
}

// RejectReason says why an upgrade request was refused.
type RejectReason uint8

// The reasons of RouteObserver.HandshakeRejected.
const (
	RejectOrigin    RejectReason = iota + 1 // a foreign Origin (403)
	RejectHost                              // a host the App does not serve (404)
	RejectAuth                              // refused by the Authenticator
	RejectLimit                             // over a limit (WithMaxConns and the like)
	RejectMalformed                         // not a valid WebSocket handshake
	RejectShutdown                          // the server is shutting down (503)
)

// RejectReasons lists every RejectReason, for observers that resolve
// their labels up front.
var RejectReasons = []RejectReason{RejectOrigin, RejectHost, RejectAuth, RejectLimit, RejectMalformed, RejectShutdown}

// String returns the reason as a metric label: "origin", "host", "auth",
// "limit", "malformed" or "shutdown".
func (r RejectReason) String() string {
	switch r {
	case RejectOrigin:
		return "origin"
	case RejectHost:
		return "host"
	case RejectAuth:
		return "auth"
	case RejectLimit:
		return "limit"
	case RejectMalformed:
		return "malformed"
	case RejectShutdown:
		return "shutdown"
	}
	return "unknown"
}

// HubObserver is told what a Hub does, for metrics; set it with
// WithHubObserver. Its methods are called on the publishing and delivering
// goroutines, so they must be cheap and must not block.
type HubObserver interface {
	// Published: a Publish, Broadcast or PublishToUser call returned after
	// d, with err (the Broker's, with one).
	Published(d time.Duration, err error)
	// Delivered: a published message was queued for n local connections.
	Delivered(n int)
	// HistoryPublished: a publish to a topic that keeps history (see
	// WithHistory) was stored with its position, or failed with err. It is
	// also counted by Published.
	HistoryPublished(err error)
	// Recovered: a SubscribeWith given SubscribeOptions.Since succeeded,
	// with every missed message sent (ok, Recovery.Recovered) or a gap it
	// could not fill (the client must reset). Called once per such call.
	Recovered(ok bool)
}

// WithObserver makes the servers report to o; see Observer. Given to
// NewApp, it observes every route, each under its own pattern.
func WithObserver(o Observer) WsOption { return func(c *wsConfig) { c.observer = o } }

// withRouteName names the route a server is built for, for its Observer.
func withRouteName(name string) WsOption { return func(c *wsConfig) { c.routeName = name } }

// WithHubObserver makes the Hub report to o; see HubObserver.
func WithHubObserver(o HubObserver) HubOption { return func(h *Hub) { h.obs = o } }

// HubStats is a snapshot of a Hub's size, for gauges.
type HubStats struct {
	Conns         int // connections known to the Hub
	Topics        int // client topics with local subscribers (reserved ones left out)
	Subscriptions int // subscriptions to those topics
}

// Stats returns the Hub's current size.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HubStats{Conns: len(h.conns)}
	for name, t := range h.topics {
		if !strings.HasPrefix(name, ReservedTopicPrefix) {
			s.Topics++
			s.Subscriptions += t.subs.Len()
		}
	}
	return s
}

// observePublish reports a publish that began at start.
func (h *Hub) observePublish(start time.Time, err *error) {
	h.obs.Published(time.Since(start), *err)
}

// delivered reports a local fan-out of n.
func (h *Hub) delivered(n int) int {
	if h.obs != nil {
		h.obs.Delivered(n)
	}
	return n
}

// observeSend reports a Send of n bytes that returned err.
func (c *conn) observeSend(n int, err error) {
	o := c.srv.obs
	switch {
	case o == nil:
	case err == nil:
		o.MessageOut(n)
	case err == ErrSlowConsumer:
		o.SlowConsumer()
	}
}

// observeWriteErr reports the first write error of a connection.
func (c *conn) observeWriteErr(err error) {
	var ne net.Error
	if o := c.srv.obs; o != nil && errors.As(err, &ne) && ne.Timeout() {
		o.WriteTimeout()
	}
}

// closeStatus returns the close code a connection ended with.
func (c *conn) closeStatus() StatusCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *CloseError
	switch {
	case c.closeCode != 0:
		return c.closeCode
	case errors.As(c.readErr, &ce):
		return ce.Code
	case c.peerClosed:
		return StatusNormalClosure
	}
	return StatusAbnormalClosure
}

// reject reports a refused upgrade.
func (s *WsServer) reject(reason RejectReason) {
	if s.obs != nil {
		s.obs.HandshakeRejected(reason)
	}
}
