package engineio

import (
	"time"

	"github.com/ratchetgo/ratchet"
)

type config struct {
	pingInterval time.Duration
	pingTimeout  time.Duration
	maxPayload   int64
	maxPackets   int
	writeTimeout time.Duration
	sendQueue    int
	origins      []string
	authenticate ratchet.Authenticator
	observer     ratchet.Observer
	route        string
	broker       ratchet.Broker // WithBroker
}

// Option configures a Handler.
type Option func(*config)

// WithPing sets how often the server pings each session and how long the
// client has to answer before the session ends (ratchet.ErrKeepaliveTimeout).
// Both are sent to the client in the handshake. Defaults
// DefaultPingInterval and DefaultPingTimeout; non-positive values keep them.
func WithPing(interval, timeout time.Duration) Option {
	return func(c *config) {
		if interval > 0 {
			c.pingInterval = interval
		}
		if timeout > 0 {
			c.pingTimeout = timeout
		}
	}
}

// WithMaxPayload bounds a POST body and a WebSocket message, in bytes; a
// larger one ends the session (ErrProtocol). It is sent to the client in
// the handshake, which then splits its POSTs to fit. Default
// DefaultMaxPayload.
func WithMaxPayload(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxPayload = n
		}
	}
}

// WithMaxPacketsPerPost bounds how many packets one POST body may carry; a
// POST with more gets 413 and ends the session (ErrProtocol), before any of
// its packets reaches the component. Default DefaultMaxPacketsPerPost.
func WithMaxPacketsPerPost(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxPackets = n
		}
	}
}

// WithSendQueue sets how many messages may wait for the client per session
// (for its next poll, or for the WebSocket), as ratchet.WithSendQueue does
// for a WebSocket connection: a Send that finds it full fails with
// ratchet.ErrSlowConsumer and closes the session. On top of the queue, the
// session holds the batch handed to it for the next poll, at most as many
// messages again. Default ratchet.DefaultSendQueue.
func WithSendQueue(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.sendQueue = n
		}
	}
}

// WithWriteTimeout bounds the writing of a poll response or of a WebSocket
// message; a client that does not take the bytes in time loses its
// session. Default DefaultWriteTimeout.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.writeTimeout = d
		}
	}
}

// WithOrigins sets which browser origins may use the handler, with the
// rules of ratchet.WithOrigins; without it, only pages from the request's
// own host.
func WithOrigins(patterns ...string) Option {
	return func(c *config) { c.origins = append([]string(nil), patterns...) }
}

// WithAuthenticate sets a hook that sees each handshake request and may
// refuse it; the identity it returns is the session's Conn.User. Later
// requests of a session are bound to it by its unguessable sid.
func WithAuthenticate(f ratchet.Authenticator) Option {
	return func(c *config) { c.authenticate = f }
}

// TransportLabel is the transport an Observer is given for Engine.IO
// sessions. A session starts on long polling and usually moves to a
// WebSocket within its first second; one label for both keeps a session
// counted once, from its handshake to its end.
const TransportLabel = "engineio"

// WithObserver makes the sessions report to o, as ratchet.WithObserver does
// for WebSocket routes: o.Route(route, TransportLabel) is called once, here,
// and each session reports to what it returns (opened and closed with its
// close code, messages in and out, slow consumers, panics, write and ping
// timeouts) and refused handshakes by reason. route names the handler in
// the labels, say its mount path. A nil o observes nothing.
func WithObserver(o ratchet.Observer, route string) Option {
	return func(c *config) { c.observer, c.route = o, route }
}
