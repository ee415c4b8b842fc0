package push

import (
	"time"

	"github.com/ratchetgo/ratchet"
)

// Defaults of the subscriber-side settings (Endpoint and SSE). Each has an
// option to change it.
const (
	DefaultMaxTopics      = 64               // topics one connection or stream may subscribe to
	DefaultMaxControlSize = 1 << 10          // bytes in one JSON control message
	DefaultMaxMalformed   = 5                // malformed control messages before a 1008 close
	DefaultHeartbeat      = 15 * time.Second // SSE comment line when the stream is idle
	DefaultRetry          = 3 * time.Second  // SSE reconnection delay hint
	DefaultWriteTimeout   = 10 * time.Second // an SSE write stuck longer ends the stream
)

// Authorizer decides whether connection c may subscribe to topic: nil
// allows it, an error refuses it. The topic has already passed
// ratchet.ValidTopic. c.User() is the identity set by the authentication
// hook of the route (ratchet.WithAuthenticate) or of the SSE handler
// (WithAuthenticate), and c.Request() the upgrade or GET request.
//
// The error's text is never sent to the client: an Endpoint replies
// {"error":"forbidden","topic":...}, an SSE handler answers 403 Forbidden,
// or the status of a *ratchet.RejectError.
//
// It is called from the connection's own goroutine, possibly from many
// connections at once, so it must be safe for concurrent use.
type Authorizer func(c ratchet.Conn, topic string) error

// Option configures an Endpoint or an SSE handler. Options that only make
// sense for one of them say so and are ignored by the other.
type Option func(*config)

type config struct {
	authorize      Authorizer
	maxTopics      int
	maxControlSize int
	maxMalformed   int
	acks           bool

	authenticate ratchet.Authenticator
	heartbeat    time.Duration
	retry        time.Duration
	sendQueue    int
	writeTimeout time.Duration
	observer     ratchet.Observer
	route        string
}

func newConfig(opts []Option) config {
	c := config{
		maxTopics:      DefaultMaxTopics,
		maxControlSize: DefaultMaxControlSize,
		maxMalformed:   DefaultMaxMalformed,
		acks:           true,
		heartbeat:      DefaultHeartbeat,
		retry:          DefaultRetry,
		sendQueue:      ratchet.DefaultSendQueue,
		writeTimeout:   DefaultWriteTimeout,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithAuthorize sets the hook deciding who may subscribe to what, for an
// Endpoint and an SSE handler alike. Without it every valid topic is
// allowed.
func WithAuthorize(f Authorizer) Option { return func(c *config) { c.authorize = f } }

// WithMaxTopics bounds how many topics one connection or stream may
// subscribe to. Default DefaultMaxTopics; n <= 0 keeps the default.
func WithMaxTopics(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxTopics = n
		}
	}
}

// WithMaxControlSize bounds an Endpoint's JSON control messages, in bytes;
// a larger one gets {"error":"too_large"} and counts as malformed. Default
// DefaultMaxControlSize; n <= 0 keeps the default. The route's
// ratchet.WithReadLimit bounds what is read off the socket at all; set it
// low too (say 4 KiB) on a push route, whose clients only send control
// messages.
func WithMaxControlSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxControlSize = n
		}
	}
}

// WithMaxMalformed sets how many malformed control messages an Endpoint
// answers with an error reply over the life of one connection: the next one
// closes it with 1008 (policy violation). Default DefaultMaxMalformed; n < 0
// never closes, n == 0 closes on the first.
func WithMaxMalformed(n int) Option { return func(c *config) { c.maxMalformed = n } }

// WithAcks turns an Endpoint's success replies ({"subscribed":...},
// {"unsubscribed":...}) on or off; error replies are always sent. Default on.
// Turn them off when the published payloads could be mistaken for them and
// the client does not need to know when a subscription took effect.
func WithAcks(on bool) Option { return func(c *config) { c.acks = on } }

// WithAuthenticate sets the SSE handler's hook that sees each GET request
// first: it returns the stream's user identity (Conn.User, reached by
// Hub.PublishToUser) or an error to refuse it, with 401 or the status of a
// *ratchet.RejectError. For an Endpoint, use the route's
// ratchet.WithAuthenticate instead.
func WithAuthenticate(f ratchet.Authenticator) Option {
	return func(c *config) { c.authenticate = f }
}

// WithHeartbeat sets how long an SSE stream may stay silent before the
// handler writes a comment line, which keeps proxies from closing it and
// finds dead clients. Default DefaultHeartbeat; 0 turns heartbeats off.
func WithHeartbeat(d time.Duration) Option { return func(c *config) { c.heartbeat = d } }

// WithRetry sets the reconnection delay an SSE stream suggests to the
// browser (the retry: field) when the stream ends. Default DefaultRetry; 0
// leaves the browser's own default.
func WithRetry(d time.Duration) Option { return func(c *config) { c.retry = d } }

// WithSendQueue sets how many messages may wait to be written to one SSE
// stream. When a publish finds the queue full, Send returns
// ratchet.ErrSlowConsumer and the stream ends (the browser reconnects).
// Default ratchet.DefaultSendQueue; n <= 0 keeps the default. For an
// Endpoint, use the route's ratchet.WithSendQueue.
func WithSendQueue(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.sendQueue = n
		}
	}
}

// WithWriteTimeout bounds each write to an SSE stream; a client that does
// not take the bytes in time loses its stream. Default DefaultWriteTimeout;
// 0 disables it.
func WithWriteTimeout(d time.Duration) Option { return func(c *config) { c.writeTimeout = d } }

// TransportSSE is the transport an Observer is given for SSE streams.
const TransportSSE = "sse"

// WithObserver makes an SSE handler's streams report to o, as
// ratchet.WithObserver does for WebSocket routes: o.Route(route,
// TransportSSE) is called once, in NewSSE, and each stream reports to what
// it returns: opened and closed, messages queued, slow-consumer closes,
// write timeouts, refused requests by reason. route names the handler in
// the labels, say its mount path. SSE has no close frame, so a stream's
// close code says how it ended: the code of Conn.Close (1001 for
// Shutdown), 1008 for a slow consumer, 1006 when a write failed, 1005 when
// the client left. An Endpoint is a WebSocket component: it is observed
// through its route's ratchet.WithObserver, and ignores this option. A nil
// o observes nothing.
func WithObserver(o ratchet.Observer, route string) Option {
	return func(c *config) { c.observer, c.route = o, route }
}
