package pusher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/replay"
)

// Defaults of the Server's options.
const (
	DefaultMaxSkew         = 600 * time.Second // how far an HTTP API request's auth_timestamp may be from the server's clock
	DefaultReplayCacheSize = 1 << 16           // HTTP API signatures remembered against replays
	DefaultMaxRequestBody  = 1 << 20           // bytes of an HTTP API request body
	DefaultQueryTimeout    = 2 * time.Second   // how long a cluster-wide count waits for the other nodes
	DefaultCacheTTL        = 30 * time.Minute  // how long a cache channel keeps its last event (CacheHistory)
)

// hubTimeout bounds one Hub or Presence call made for a client.
const hubTimeout = 10 * time.Second

// Server serves Pusher Channels apps: the WebSocket protocol (version 7) at
// /app/{key}, the same over pusher-js's HTTP transports at
// /pusher/app/{key}/... (see WithHTTPTransports), and the HTTP API at
// /apps/{id}/..., on a ratchet.Hub. It is an http.Handler: mount it at the
// root of a mux, or under a prefix with http.StripPrefix (Pusher's
// libraries sign the paths from /apps/ on).
//
// Every channel is a Hub topic (see App.TopicPrefix), and presence channels
// record their members on the Hub's Presence (ratchet.WithPresence), so
// several processes whose Hubs share a Broker and a Presence serve the same
// apps as one cluster.
type Server struct {
	hub      *ratchet.Hub
	presence ratchet.Presence
	own      *ratchet.MemoryPresence // when the Hub has no Presence
	apps     []*app
	byKey    map[string]*app
	byID     map[string]*app
	cfg      config
	ws       *ratchet.WsServer
	xhr      *xhrTransports // nil: WithoutHTTPTransports
	mux      http.ServeMux
	replay   *replay.Cache
	nodeID   string
	socketNo uint32 // first part of this node's socket ids

	closing  atomic.Bool
	conns    ratchet.ConnSet // every Pusher connection of this node
	byConnMu sync.RWMutex
	byConn   map[ratchet.Conn]*conn
	cluster  cluster

	webhookFailures   atomic.Uint64 // batches given up
	webhookDropped    atomic.Uint64 // events dropped from full queues
	webhookDeliveries atomic.Uint64 // batches answered with a 2xx
	webhookRetries    atomic.Uint64 // tries after a batch's first
}

// app is an App being served.
type app struct {
	App
	s     *Server
	conns atomic.Int64 // connections on this node

	mu       sync.Mutex
	presence map[string]*presenceState // presence channels with subscribers here
	local    map[string]int            // subscriptions on this node by channel

	raw   atomic.Pointer[rawFrame] // the last wrapped Hub message (see wrap)
	hooks *hooks                   // nil without webhooks
}

// Option configures a Server.
type Option func(*config)

type config struct {
	ws           []ratchet.WsOption
	logger       *slog.Logger
	now          func() time.Time
	maxSkew      time.Duration
	replaySize   int
	maxBody      int64
	queryTimeout time.Duration

	webhookClient   *http.Client
	webhookAttempts int
	webhookBackoff  time.Duration

	http   HTTPTransports
	noHTTP bool
}

// WithWsOptions passes options to the WebSocket side (ratchet.NewWsServer):
// WithReadLimit, WithCompression, WithSendQueue, WithWriteTimeout,
// WithOrigins, WithLogger. Unlike a plain WsServer, a Server accepts every
// Origin unless WithOrigins says otherwise (browsers on other hosts are the
// rule for Pusher), and sends no WebSocket pings of its own: the protocol's
// pusher:ping does that job (App.ActivityTimeout).
func WithWsOptions(opts ...ratchet.WsOption) Option {
	return func(c *config) { c.ws = append(c.ws, opts...) }
}

// WithLogger sets where problems without another receiver are logged (a
// node that did not answer a count, a malformed publication). Default
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithClock sets the clock HTTP API timestamps are checked against; for
// tests.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithMaxSkew sets how far an HTTP API request's auth_timestamp may be from
// the server's clock (either way), and so how long its signature is
// remembered against replays. Default DefaultMaxSkew, Pusher's.
func WithMaxSkew(d time.Duration) Option {
	return func(c *config) {
		if d >= time.Second {
			c.maxSkew = d
		}
	}
}

// WithReplayCacheSize bounds how many HTTP API signatures are remembered
// (about 100 bytes each). When more requests arrive within the skew window,
// the oldest are forgotten and requests signed at or before their timestamp
// are refused, so that no replay gets through. Default
// DefaultReplayCacheSize.
func WithReplayCacheSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.replaySize = n
		}
	}
}

// WithMaxRequestBody bounds HTTP API request bodies; larger ones get 413.
// Default DefaultMaxRequestBody.
func WithMaxRequestBody(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBody = n
		}
	}
}

// WithQueryTimeout bounds how long a cluster-wide subscription count (HTTP
// API) waits for the other nodes. Default DefaultQueryTimeout.
func WithQueryTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.queryTimeout = d
		}
	}
}

// WithWebhookClient sets the HTTP client webhooks are sent with. Default
// http.DefaultClient (each try is bounded by 10 s anyway).
func WithWebhookClient(c *http.Client) Option { return func(cfg *config) { cfg.webhookClient = c } }

// WithWebhookRetries sets how many times a webhook batch is tried
// (DefaultWebhookAttempts) and the wait before the second try
// (DefaultWebhookBackoff), doubled before each next one. A batch still not
// answered with a 2xx status is logged and counted (WebhookFailures).
func WithWebhookRetries(attempts int, backoff time.Duration) Option {
	return func(cfg *config) {
		if attempts > 0 {
			cfg.webhookAttempts = attempts
		}
		if backoff > 0 {
			cfg.webhookBackoff = backoff
		}
	}
}

// NewServer returns a Server for apps on hub. It fails with ErrInvalidApp
// for apps it cannot serve (missing credentials, a TopicPrefix, ID or Key
// used twice), or when the Hub's Broker or Presence cannot be reached.
//
// For cache channels the Hub needs CacheHistory(apps...) among its options;
// without it every subscription to a cache channel gets pusher:cache_miss.
// Shutdown releases what the Server holds: its place in the cluster and the
// webhook senders.
func NewServer(hub *ratchet.Hub, apps []App, opts ...Option) (*Server, error) {
	s := &Server{
		hub:    hub,
		byConn: make(map[ratchet.Conn]*conn),
		byKey:  make(map[string]*app),
		byID:   make(map[string]*app),
		cfg: config{
			now:          time.Now,
			maxSkew:      DefaultMaxSkew,
			replaySize:   DefaultReplayCacheSize,
			maxBody:      DefaultMaxRequestBody,
			queryTimeout: DefaultQueryTimeout,

			webhookClient:   http.DefaultClient,
			webhookAttempts: DefaultWebhookAttempts,
			webhookBackoff:  DefaultWebhookBackoff,
		},
		nodeID:   newNodeID(),
		socketNo: rand.Uint32N(1 << 31),
	}
	for _, o := range opts {
		o(&s.cfg)
	}
	if len(apps) == 0 {
		return nil, fmt.Errorf("%w: no app", ErrInvalidApp)
	}
	prefixes := make(map[string]bool)
	for _, a := range apps {
		if err := a.validate(); err != nil {
			return nil, err
		}
		switch {
		case s.byID[a.ID] != nil:
			return nil, fmt.Errorf("%w: ID %q used twice", ErrInvalidApp, a.ID)
		case s.byKey[a.Key] != nil:
			return nil, fmt.Errorf("%w: Key %q used twice", ErrInvalidApp, a.Key)
		case prefixes[a.TopicPrefix]:
			return nil, fmt.Errorf("%w %q: TopicPrefix %q used twice: give each app its own", ErrInvalidApp, a.ID, a.TopicPrefix)
		}
		prefixes[a.TopicPrefix] = true
		ap := &app{App: a.withDefaults(), s: s, presence: make(map[string]*presenceState), local: make(map[string]int)}
		s.apps = append(s.apps, ap)
		s.byID[a.ID], s.byKey[a.Key] = ap, ap
	}
	for _, a := range s.apps {
		if _, ok := hub.HistoryPolicy(a.topic("cache-x")); !ok {
			s.log().Warn("pusher: the Hub keeps no history for cache channels; they will always miss (add pusher.CacheHistory to the Hub's options)", "app", a.ID)
		}
	}
	s.presence = hub.Presence()
	if s.presence == nil {
		s.own = ratchet.NewMemoryPresence()
		s.presence = s.own
	}
	s.replay = replay.New(s.cfg.replaySize, s.cfg.maxSkew)
	ws := append([]ratchet.WsOption{ratchet.WithOrigins("*"), ratchet.WithKeepalive(0, 0)}, s.cfg.ws...)
	s.ws = ratchet.NewWsServer(component{s}, ws...)
	s.routes()
	if err := s.xhrRoutes(); err != nil {
		s.closeOwn()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), hubTimeout)
	defer cancel()
	if err := s.cluster.start(ctx, s); err != nil {
		s.closeOwn()
		return nil, err
	}
	for _, a := range s.apps {
		if err := a.startHooks(ctx); err != nil {
			s.stopHooks(ctx)
			_ = s.cluster.stop(ctx)
			s.closeOwn()
			return nil, err
		}
	}
	return s, nil
}

// CacheHistory returns the Hub option that keeps the last event of the
// cache channels (cache-*, private-cache-*, private-encrypted-cache-*,
// presence-cache-*) of apps, for DefaultCacheTTL, in the Hub's Broker,
// which must keep history (a ratchet.HistoryBroker, such as MemoryBroker).
// Give it to ratchet.NewHub on every node:
//
//	hub := ratchet.NewHub(ratchet.WithBroker(b), ratchet.WithPresence(p), pusher.CacheHistory(apps...))
func CacheHistory(apps ...App) ratchet.HubOption {
	return func(h *ratchet.Hub) {
		for _, a := range apps {
			for _, p := range cachePrefixes {
				ratchet.WithHistory(a.TopicPrefix+p+"*", ratchet.HistoryPolicy{Size: 1, TTL: DefaultCacheTTL})(h)
			}
		}
	}
}

func (s *Server) log() *slog.Logger {
	if s.cfg.logger != nil {
		return s.cfg.logger
	}
	return slog.Default()
}

// ServeHTTP serves the WebSocket endpoint, the HTTP transports and the
// HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Len returns the number of Pusher connections on this node.
func (s *Server) Len() int { return s.conns.Len() }

// Shutdown closes every connection with a pusher:error and close code 4200
// (pusher-js reconnects at once, to another node behind a load balancer),
// refuses new ones, and waits until each has been through its end or ctx
// is done. It then sends the webhooks still due (those in their grace
// period at once), within ctx, and leaves the cluster. Run it before http.Server.Shutdown.
// ratchet.App.Handle does it for a Server given to it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.conns.Each(func(c ratchet.Conn) { c.(*conn).refuse(CodeReconnect, "Server is shutting down. Please reconnect.") })
	err := errors.Join(s.ws.Shutdown(ctx), s.xhr.shutdown(ctx))
	s.stopHooks(ctx)
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hubTimeout)
	defer cancel()
	err = errors.Join(err, s.cluster.stop(lctx))
	s.closeOwn()
	return err
}

// stopHooks sends the webhooks still due, within ctx, and stops their
// senders.
func (s *Server) stopHooks(ctx context.Context) {
	for _, a := range s.apps {
		if a.hooks != nil {
			a.hooks.stop(ctx)
		}
	}
}

func (s *Server) closeOwn() {
	if s.own != nil {
		_ = s.own.Close(context.Background())
	}
}

// app returns the app with id, or the first one for "".
func (s *Server) app(id string) (*app, error) {
	if id == "" {
		return s.apps[0], nil
	}
	if a := s.byID[id]; a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownApp, id)
}

// topic returns the Hub topic of a channel.
func (a *app) topic(channel string) string { return a.TopicPrefix + channel }

// addLocal counts a subscription to channel on this node (n = 1) or its end
// (n = -1).
func (a *app) addLocal(channel string, n int) {
	a.mu.Lock()
	if a.local[channel] += n; a.local[channel] <= 0 {
		delete(a.local, channel)
	}
	a.mu.Unlock()
}

// localCounts returns this node's subscriptions by channel, for the
// channels given, or for every channel starting with prefix when channels
// is nil.
func (a *app) localCounts(channels []string, prefix string) map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int)
	if channels != nil {
		for _, ch := range channels {
			if n := a.local[ch]; n > 0 {
				out[ch] = n
			}
		}
		return out
	}
	for ch, n := range a.local {
		if len(ch) >= len(prefix) && ch[:len(prefix)] == prefix {
			out[ch] = n
		}
	}
	return out
}

// Stats is a snapshot of what a Server does on this node, for metrics
// (package metrics exports it with WatchPusher).
type Stats struct {
	Apps []AppStats // in the order given to NewServer

	WebhookDeliveries uint64 // batches delivered (answered with a 2xx)
	WebhookRetries    uint64 // tries after a batch's first one
	WebhookFailures   uint64 // batches given up after their last try
	WebhookDropped    uint64 // events dropped from full queues
}

// AppStats is the share of one app in Stats.
type AppStats struct {
	ID       string // App.ID
	Conns    int    // connections on this node
	Channels int    // channels occupied on this node: with a subscriber here
}

// Stats returns the Server's counts on this node. The cluster's channels
// are those of the HTTP API (GET /apps/{id}/channels), which asks every
// node; Stats asks none, so that each node's metrics add up.
func (s *Server) Stats() Stats {
	st := Stats{
		Apps:              make([]AppStats, len(s.apps)),
		WebhookDeliveries: s.webhookDeliveries.Load(),
		WebhookRetries:    s.webhookRetries.Load(),
		WebhookFailures:   s.webhookFailures.Load(),
		WebhookDropped:    s.webhookDropped.Load(),
	}
	for i, a := range s.apps {
		a.mu.Lock()
		n := len(a.local)
		a.mu.Unlock()
		st.Apps[i] = AppStats{ID: a.ID, Conns: int(a.conns.Load()), Channels: n}
	}
	return st
}
