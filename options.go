package ratchet

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the connection settings. Each has an option to change it.
const (
	DefaultReadLimit         = 64 << 10         // bytes per message; larger ones close with 1009
	DefaultSendQueue         = 256              // messages waiting per connection before ErrSlowConsumer
	DefaultWriteTimeout      = 10 * time.Second // a write stuck longer ends the connection
	DefaultKeepaliveInterval = 30 * time.Second // Ratchet's ping interval
	DefaultKeepaliveTimeout  = 20 * time.Second // how long a pong may take
	DefaultHandshakeTimeout  = 10 * time.Second // to read the HTTP upgrade request (App.Run/Serve)
	DefaultMaxHeaderBytes    = 32 << 10         // request headers (App.Run/Serve); Conn.Request keeps them
	DefaultReadTimeout       = 30 * time.Second // to read a whole request, body included (App.Run/Serve)
	DefaultIdleTimeout       = 60 * time.Second // a keep-alive connection waiting for its next request (App.Run/Serve)
	DefaultAddress           = "127.0.0.1"      // where App.Run listens, as Ratchet does
)

// Authenticator sees the upgrade request before the handshake. It returns
// the user identity of the connection (Conn.User; "" for anonymous), or an
// error to refuse the handshake: a *RejectError chooses the HTTP status,
// any other error gives 401 Unauthorized.
type Authenticator func(r *http.Request) (user string, err error)

// wsConfig holds the settings of one WsServer.
type wsConfig struct {
	readLimit         int64
	sendQueue         int
	writeTimeout      time.Duration
	keepaliveInterval time.Duration
	keepaliveTimeout  time.Duration
	compression       bool
	authenticate      Authenticator
	logger            *slog.Logger
	origins           []string // nil: coder's same-host rule; "*" any

	// limits (limits.go); the shared ones are pointers, see WithMaxConns
	connLimits     []*connLimit
	ipLimits       []*ipConnLimit
	handshakeRates []*ipRateLimit
	messageRate    rate.Limit
	messageBurst   int
	trustedProxies []netip.Prefix

	observer  Observer // WithObserver
	routeName string   // the App route, for the observer
}

func defaultWsConfig() wsConfig {
	return wsConfig{
		readLimit:         DefaultReadLimit,
		sendQueue:         DefaultSendQueue,
		writeTimeout:      DefaultWriteTimeout,
		keepaliveInterval: DefaultKeepaliveInterval,
		keepaliveTimeout:  DefaultKeepaliveTimeout,
	}
}

func (c *wsConfig) log() *slog.Logger {
	if c.logger != nil {
		return c.logger
	}
	return slog.Default()
}

// WsOption configures connections. It is accepted by NewWsServer, by
// App.Route for one route, and by NewApp as the default of every route.
type WsOption func(*wsConfig)

func (o WsOption) applyApp(a *App)        { a.defaults = append(a.defaults, o) }
func (o WsOption) applyRoute(r *routeCfg) { r.ws = append(r.ws, o) }

// WithReadLimit sets the largest message, in bytes, a peer may send. A larger
// one closes the connection with StatusMessageTooBig (1009). What a message
// takes on the wire is bounded too, at twice the limit plus 4 KiB (frame
// headers, fragments, control frames between them, compressed data): a
// message of a million empty fragments, or of megabytes of deflate blocks
// that inflate to nothing, also closes with 1009. Default DefaultReadLimit
// (64 KiB); -1 removes both bounds.
func WithReadLimit(n int64) WsOption { return func(c *wsConfig) { c.readLimit = n } }

// WithSendQueue sets how many messages may wait to be written to one
// connection. When a Send finds the queue full, it returns ErrSlowConsumer
// and the connection is closed with StatusPolicyViolation (1008). While half
// of the queue or more waits, the connection is not read after OnOpen or
// OnMessage returns until the writer has taken it: a client that writes
// requests far ahead of reading the replies is slowed down, as TCP would,
// instead of being cut off by its own replies. Default DefaultSendQueue.
func WithSendQueue(n int) WsOption {
	return func(c *wsConfig) {
		if n > 0 {
			c.sendQueue = n
		}
	}
}

// WithWriteTimeout bounds every write to the socket; a peer that does not
// take the bytes in time loses its connection. Default DefaultWriteTimeout;
// 0 disables it.
func WithWriteTimeout(d time.Duration) WsOption { return func(c *wsConfig) { c.writeTimeout = d } }

// WithKeepalive pings every connection each interval and closes those that do
// not answer within timeout (OnError gets ErrKeepaliveTimeout). Defaults
// DefaultKeepaliveInterval and DefaultKeepaliveTimeout; an interval of 0
// turns pings off. One timer per WsServer serves all its connections, so a
// ping or a timeout comes up to a quarter of the shorter of the two late.
func WithKeepalive(interval, timeout time.Duration) WsOption {
	return func(c *wsConfig) { c.keepaliveInterval, c.keepaliveTimeout = interval, timeout }
}

// WithCompression turns permessage-deflate (RFC 7692) on or off. It is off by
// default: it costs CPU and mostly pays off for large, repetitive text. It is
// negotiated without context takeover, so each message is compressed on its
// own: payloads of 512 bytes and more, and a broadcast only once for all the
// connections that negotiated it.
func WithCompression(on bool) WsOption { return func(c *wsConfig) { c.compression = on } }

// WithAuthenticate sets a hook that sees each upgrade request first and may
// refuse it before any upgrade; see Authenticator.
func WithAuthenticate(f Authenticator) WsOption { return func(c *wsConfig) { c.authenticate = f } }

// WithLogger sets where connection-level problems that have no other
// receiver are logged (a panic inside OnError, say). Given to NewApp, it is
// also where the App logs requests refused for their host (at debug
// level). Default slog.Default().
func WithLogger(l *slog.Logger) WsOption { return func(c *wsConfig) { c.logger = l } }

// WithOrigins sets which browser origins may connect, for a WsServer used on
// its own. "*" allows any origin, the opaque origin "null" included; other
// entries are host patterns matched case-insensitively with path.Match
// against the origin's host name (or host:port when the pattern has a port,
// or scheme://host when it has a scheme). "null", the Origin of pages opened
// from a file:// URL and of sandboxed frames, matches no host pattern: list
// "null" itself to let such pages in. Without WithOrigins, only pages from
// the request's own host may connect.
// Requests with no Origin header (non-browser clients) are always allowed.
// App.Route sets this from its allowedOrigins argument.
func WithOrigins(patterns ...string) WsOption {
	return func(c *wsConfig) { c.origins = append([]string(nil), patterns...) }
}

// Option configures an App. Every WsOption is also an Option, applying to
// all routes.
type Option interface{ applyApp(*App) }

type appOption func(*App)

func (o appOption) applyApp(a *App) { o(a) }

// WithAddress sets the address App.Run listens on; DefaultAddress
// (127.0.0.1, loopback only) unless set. Use "0.0.0.0" or "" for every
// interface.
func WithAddress(addr string) Option { return appOption(func(a *App) { a.address = addr }) }

// WithTLSConfig makes App.Run and App.Serve speak TLS (wss://) with cfg. See
// also App.RunTLS.
func WithTLSConfig(cfg *tls.Config) Option { return appOption(func(a *App) { a.tlsConfig = cfg }) }

// WithHandshakeTimeout bounds how long a client may take to send its HTTP
// request headers on a server started by App.Run or App.Serve, so that
// half-sent requests cannot hold connections (slowloris). Default
// DefaultHandshakeTimeout.
func WithHandshakeTimeout(d time.Duration) Option {
	return appOption(func(a *App) { a.handshakeTimeout = d })
}

// WithReadTimeout bounds how long a client may take to send a whole request,
// body included, on a server started by App.Run or App.Serve
// (http.Server.ReadTimeout), so that a body trickling in cannot hold a
// connection. WebSocket connections and event streams, once started, are
// not bound by it. Default DefaultReadTimeout.
func WithReadTimeout(d time.Duration) Option {
	return appOption(func(a *App) { a.readTimeout = d })
}

// WithIdleTimeout bounds how long a keep-alive connection may wait for its
// next request on a server started by App.Run or App.Serve
// (http.Server.IdleTimeout). Default DefaultIdleTimeout.
func WithIdleTimeout(d time.Duration) Option {
	return appOption(func(a *App) { a.idleTimeout = d })
}

// WithMaxHeaderBytes bounds the request headers, request line included, on
// a server started by App.Run or App.Serve (http.Server.MaxHeaderBytes);
// larger ones get 431 Request Header Fields Too Large. A WebSocket
// connection keeps its upgrade request (Conn.Request) for its whole life, so
// this bounds what each connection can pin in memory. Default
// DefaultMaxHeaderBytes; n <= 0 keeps the default. When mounting an App or
// a WsServer on a server of your own, set its MaxHeaderBytes: net/http's
// default is 1 MB.
func WithMaxHeaderBytes(n int) Option {
	return appOption(func(a *App) {
		if n > 0 {
			a.maxHeaderBytes = n
		}
	})
}

// RouteOption configures one route of an App. Every WsOption is also a
// RouteOption.
type RouteOption interface{ applyRoute(*routeCfg) }

type routeCfg struct {
	host string
	ws   []WsOption
}

type routeOption func(*routeCfg)

func (o routeOption) applyRoute(r *routeCfg) { o(r) }

// WithHost makes a route answer requests for host instead of the App's
// httpHost ("" or "*": any host), like the $httpHost argument of Ratchet's
// App::route.
func WithHost(host string) RouteOption {
	return routeOption(func(r *routeCfg) { r.host = host })
}
