package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
)

// Defaults of the options.
const (
	DefaultPrefix         = "ratchet:"
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultHealthInterval = 5 * time.Second
	DefaultDialTimeout    = 5 * time.Second
)

// ErrUnavailable is wrapped by the errors of a Broker whose subscriber
// connection to Redis is down.
var ErrUnavailable = errors.New("ratchet/redis: redis unavailable")

// Option configures a Broker.
type Option func(*options)

type options struct {
	prefix         string
	logger         *slog.Logger
	onError        func(error)
	onReconnect    func()
	minBackoff     time.Duration
	maxBackoff     time.Duration
	healthInterval time.Duration
	dialTimeout    time.Duration
}

// WithPrefix sets the string put in front of every topic to make its Redis
// channel name (default "ratchet:"), so that several applications can share
// one Redis. A topic "news" is then the channel "ratchet:news".
func WithPrefix(prefix string) Option { return func(o *options) { o.prefix = prefix } }

// WithLogger sets where connection losses and reconnections are logged
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithOnError sets a function called, from the broker's goroutine, with every
// connection error: the one that ended a connection (an outage begins, and
// Outages counts it) and each failed reconnection attempt after it. It is
// also called with a *ratchet.PanicError when a deliver function panics, and
// with the error of a catch-up from a topic's stream that failed (see
// SubscribePublications). It must not block.
func WithOnError(fn func(error)) Option { return func(o *options) { o.onError = fn } }

// WithOnReconnect sets a function called, from the broker's goroutine, each
// time the broker is connected again after an outage, once Redis confirmed
// the re-subscription of every topic that still has subscribers. It must not
// block.
func WithOnReconnect(fn func()) Option { return func(o *options) { o.onReconnect = fn } }

// WithBackoff sets the delays between reconnection attempts: the first
// waits min, each next one twice as long up to max, with ±20% jitter
// (defaults 100ms and 5s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithHealthInterval sets how long the subscriber connection may stay silent
// before the broker sends a PING; a connection that then stays silent for as
// long again is considered lost (default 5s). It bounds how long a Redis that
// vanished without closing its sockets goes unnoticed.
func WithHealthInterval(d time.Duration) Option { return func(o *options) { o.healthInterval = d } }

// WithDialTimeout bounds each (re)connection attempt (default 5s).
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// Broker is a ratchet.Broker on Redis pub/sub. See the package documentation.
// Its methods are safe for concurrent use.
type Broker struct {
	client *goredis.Client
	o      options
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	// ctl serialises the decisions to SUBSCRIBE or UNSUBSCRIBE a channel with
	// the writes of those commands, so that Redis sees them in the order the
	// topic map changed, and the installation of a new connection with both.
	ctl sync.Mutex

	mu      sync.Mutex
	topics  map[string]*topic // by Redis channel
	pending map[string]int    // SUBSCRIBEs sent on ps, not yet confirmed
	ps      *goredis.PubSub   // the current connection; nil while down
	lost    chan struct{}     // closed when the current connection is lost
	closed  bool

	isClosed atomic.Bool
	up       atomic.Bool
	outages  atomic.Uint64
	pubs     sync.WaitGroup // Publish calls in flight
	loopDone chan struct{}

	downSince time.Time // start of the last outage; owned by run
}

type topic struct {
	channel   string
	subs      []*subscription // copy on write: the dispatcher reads it unlocked
	confirmed chan struct{}   // closed once Redis confirmed the SUBSCRIBE
	done      bool            // confirmed is closed

	// last is the newest position delivered, anchor the newest one History
	// reported before any delivery: where a catch-up resumes (history.go).
	last, anchor ratchet.Position
}

type subscription struct {
	b       *Broker
	t       *topic
	mu      sync.Mutex // held while delivering
	deliver func(ratchet.Publication)
	once    sync.Once
}

// New returns a Broker publishing with client and receiving on one pub/sub
// connection of its own, opened from client's options, that carries every
// topic of this process. It fails when that connection cannot be opened
// within ctx; after that the broker reconnects by itself.
//
// The broker does not close client: close it after the broker.
//
// Publish honours its context's deadline and cancellation whatever client's
// ContextTimeoutEnabled says: a call that outlives its context returns the
// context's error, while the command finishes (or times out per client's
// ReadTimeout) in the background.
func New(ctx context.Context, client *goredis.Client, opts ...Option) (*Broker, error) {
	o := options{
		prefix:         DefaultPrefix,
		minBackoff:     DefaultMinBackoff,
		maxBackoff:     DefaultMaxBackoff,
		healthInterval: DefaultHealthInterval,
		dialTimeout:    DefaultDialTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.minBackoff <= 0 {
		o.minBackoff = DefaultMinBackoff
	}
	if o.maxBackoff < o.minBackoff {
		o.maxBackoff = o.minBackoff
	}
	if o.healthInterval <= 0 {
		o.healthInterval = DefaultHealthInterval
	}
	if o.dialTimeout <= 0 {
		o.dialTimeout = DefaultDialTimeout
	}
	b := &Broker{
		client:   client,
		o:        o,
		topics:   make(map[string]*topic),
		pending:  make(map[string]int),
		lost:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	ps, err := b.dial(ctx)
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("ratchet/redis: connect: %w", err)
	}
	go b.run(ps)
	return b, nil
}

// Channel returns the Redis channel that carries topic: the prefix followed
// by the topic.
func (b *Broker) Channel(topic string) string { return b.o.prefix + topic }

// Outages returns how many times the subscriber connection to Redis was lost
// since New.
func (b *Broker) Outages() uint64 { return b.outages.Load() }

// Connected reports whether the subscriber connection to Redis is up.
func (b *Broker) Connected() bool { return b.up.Load() }

// Publish implements ratchet.Broker: it sends msg on the topic's channel and
// returns once Redis accepted it, or with an error when Redis cannot be
// reached, the broker is closed (ratchet.ErrBrokerClosed) or ctx ends first.
func (b *Broker) Publish(ctx context.Context, topic string, msg ratchet.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.isClosed.Load() {
		return ratchet.ErrBrokerClosed
	}
	channel, payload := b.Channel(topic), Encode(msg)
	return wrapPublish(b.call(ctx, func() error { return b.client.Publish(ctx, channel, payload).Err() }))
}

// call runs the Redis command fn and returns its error, or ctx's error as
// soon as ctx ends: fn then finishes in the background (Close waits for it).
func (b *Broker) call(ctx context.Context, fn func() error) error {
	if ctx.Done() == nil {
		// Nothing to honour beyond the client's own timeouts.
		return fn()
	}
	b.pubs.Add(1)
	res := make(chan error, 1)
	go func() {
		defer b.pubs.Done()
		res <- fn()
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func wrapPublish(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("ratchet/redis: publish: %w", err)
}

// Subscribe implements ratchet.Broker. The first subscription to a topic
// SUBSCRIBEs its channel on Redis and returns once Redis confirmed it, so a
// message published after Subscribe returns is delivered. While Redis is
// unreachable, Subscribe registers the subscription and returns at once: the
// channel is subscribed as soon as the broker has reconnected.
//
// deliver is called on the broker's single receiving goroutine, so it must
// return quickly, and must not call Unsubscribe on its own subscription (that
// waits for deliver to return) or Close.
func (b *Broker) Subscribe(ctx context.Context, topicName string, deliver func(ratchet.Message)) (ratchet.Subscription, error) {
	if deliver == nil {
		return nil, errNilDeliver
	}
	return b.SubscribePublications(ctx, topicName, func(p ratchet.Publication) { deliver(p.Message) })
}

// subscribeChannel is Subscribe on a Redis channel named in full.
func (b *Broker) subscribeChannel(ctx context.Context, channel string, deliver func(ratchet.Publication)) (*subscription, error) {

	b.ctl.Lock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.ctl.Unlock()
		return nil, ratchet.ErrBrokerClosed
	}
	t := b.topics[channel]
	created := t == nil
	if created {
		t = &topic{channel: channel, confirmed: make(chan struct{})}
		b.topics[channel] = t
	}
	s := &subscription{b: b, t: t, deliver: deliver}
	subs := make([]*subscription, len(t.subs), len(t.subs)+1)
	copy(subs, t.subs)
	t.subs = append(subs, s)
	ps, lost := b.ps, b.lost
	if created && ps != nil {
		b.pending[channel]++
	}
	b.mu.Unlock()
	var err error
	if created && ps != nil {
		err = ps.Subscribe(ctx, channel)
	}
	b.ctl.Unlock()

	if ps == nil || err != nil && ctx.Err() == nil {
		// Down, or just went down: the reconnection subscribes the channel.
		return s, nil
	}
	if err == nil {
		select {
		case <-t.confirmed:
			return s, nil
		case <-lost:
			return s, nil
		case <-ctx.Done():
			err = ctx.Err()
		case <-b.ctx.Done():
			err = ratchet.ErrBrokerClosed
		}
	}
	s.Unsubscribe(context.Background())
	if errors.Is(err, ratchet.ErrBrokerClosed) {
		return nil, err
	}
	return nil, fmt.Errorf("ratchet/redis: subscribe %q: %w", channel, err)
}

// Unsubscribe implements ratchet.Subscription. Deliveries stop whatever
// happens; the last subscription of a topic then UNSUBSCRIBEs its channel,
// and an error from that command is returned.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	var err error
	s.once.Do(func() { err = s.b.unsubscribe(ctx, s) })
	return err
}

func (b *Broker) unsubscribe(ctx context.Context, s *subscription) error {
	b.ctl.Lock()
	b.mu.Lock()
	t := s.t
	var ps *goredis.PubSub
	for i, x := range t.subs {
		if x == s {
			subs := make([]*subscription, 0, len(t.subs)-1)
			subs = append(subs, t.subs[:i]...)
			t.subs = append(subs, t.subs[i+1:]...)
			break
		}
	}
	if len(t.subs) == 0 && b.topics[t.channel] == t {
		delete(b.topics, t.channel)
		ps = b.ps
	}
	b.mu.Unlock()
	var err error
	if ps != nil {
		err = ps.Unsubscribe(ctx, t.channel)
	}
	b.ctl.Unlock()

	s.mu.Lock() // waits for a delivery in progress
	s.deliver = nil
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ratchet/redis: unsubscribe: %w", err)
	}
	return nil
}

// Close implements ratchet.Broker: it ends every subscription, waits for a
// delivery in progress and for Publish calls in flight, and closes the
// broker's pub/sub connection. It does not close the client given to New.
func (b *Broker) Close() error {
	b.ctl.Lock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.ctl.Unlock()
		return nil
	}
	b.closed = true
	b.isClosed.Store(true)
	ps := b.ps
	b.ps = nil
	var subs []*subscription
	for _, t := range b.topics {
		subs = append(subs, t.subs...)
	}
	b.topics = nil
	b.mu.Unlock()
	b.ctl.Unlock()

	b.cancel()
	if ps != nil {
		_ = ps.Close()
	}
	<-b.loopDone
	for _, s := range subs {
		s.mu.Lock()
		s.deliver = nil
		s.mu.Unlock()
	}
	b.pubs.Wait()
	b.up.Store(false)
	return nil
}

// dial opens a pub/sub connection, subscribes every topic that has
// subscribers and installs it as the current connection.
func (b *Broker) dial(ctx context.Context) (*goredis.PubSub, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.dialTimeout)
	defer cancel()
	ps := b.client.Subscribe(b.ctx) // no channel: connects on first use
	if err := ps.Ping(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	b.ctl.Lock()
	defer b.ctl.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ps.Close()
		return nil, ratchet.ErrBrokerClosed
	}
	channels := make([]string, 0, len(b.topics))
	clear(b.pending)
	for ch := range b.topics {
		channels = append(channels, ch)
		b.pending[ch] = 1
	}
	b.ps = ps
	b.mu.Unlock()
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			b.mu.Lock()
			b.ps = nil
			b.mu.Unlock()
			_ = ps.Close()
			return nil, err
		}
	}
	b.up.Store(true)
	return ps, nil
}

// run receives on the current connection and dispatches, and reconnects
// after it is lost, until Close.
func (b *Broker) run(ps *goredis.PubSub) {
	defer close(b.loopDone)
	for {
		err := b.receive(ps)
		b.drop(ps)
		if b.isClosed.Load() {
			return
		}
		n := b.outages.Add(1)
		b.o.logger.Warn("ratchet/redis: connection to redis lost; reconnecting", "error", err, "outage", n)
		b.report(fmt.Errorf("%w: connection lost: %w", ErrUnavailable, err))
		down := time.Now()
		if ps = b.reconnect(); ps == nil {
			return
		}
		b.downSince = down
	}
}

// reconnected announces the end of an outage.
func (b *Broker) reconnected() {
	b.o.logger.Info("ratchet/redis: reconnected to redis", "downtime", time.Since(b.downSince).Round(time.Millisecond))
	if b.o.onReconnect != nil {
		b.o.onReconnect()
	}
}

func (b *Broker) confirmedAll() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) == 0
}

func (b *Broker) report(err error) {
	if b.o.onError != nil {
		b.o.onError(err)
	}
}

// receive reads ps until it fails or stays silent too long.
func (b *Broker) receive(ps *goredis.PubSub) error {
	pinged := false
	announce := !b.downSince.IsZero()
	for {
		if announce && b.confirmedAll() {
			announce = false
			b.reconnected()
		}
		v, err := ps.ReceiveTimeout(b.ctx, b.o.healthInterval)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || b.isClosed.Load() {
				return err
			}
			if pinged {
				return fmt.Errorf("no answer to PING within %v", b.o.healthInterval)
			}
			ctx, cancel := context.WithTimeout(b.ctx, b.o.healthInterval)
			err = ps.Ping(ctx)
			cancel()
			if err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := v.(type) {
		case *goredis.Message:
			b.dispatch(m.Channel, m.Payload)
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				b.confirm(m.Channel)
				b.catchUp(m.Channel)
			}
		}
	}
}

// drop uninstalls ps after it failed.
func (b *Broker) drop(ps *goredis.PubSub) {
	b.ctl.Lock()
	b.mu.Lock()
	if b.ps == ps {
		b.ps = nil
	}
	b.up.Store(false)
	close(b.lost)
	b.lost = make(chan struct{})
	b.mu.Unlock()
	b.ctl.Unlock()
	_ = ps.Close()
}

// reconnect dials with backoff until it succeeds (it returns the new
// connection) or the broker is closed (it returns nil).
func (b *Broker) reconnect() *goredis.PubSub {
	delay := b.o.minBackoff
	for {
		jittered := time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
		timer := time.NewTimer(jittered)
		select {
		case <-b.ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		ps, err := b.dial(b.ctx)
		if err == nil {
			return ps
		}
		if b.isClosed.Load() {
			return nil
		}
		b.o.logger.Debug("ratchet/redis: reconnection failed", "error", err, "retry_in", delay)
		b.report(fmt.Errorf("%w: reconnect: %w", ErrUnavailable, err))
		delay = min(2*delay, b.o.maxBackoff)
	}
}

func (b *Broker) confirm(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.pending[channel] - 1; n > 0 {
		b.pending[channel] = n
		return
	}
	delete(b.pending, channel)
	if t := b.topics[channel]; t != nil && !t.done {
		t.done = true
		close(t.confirmed)
	}
}

func (b *Broker) dispatch(channel, payload string) {
	b.mu.Lock()
	t := b.topics[channel]
	var subs []*subscription
	// Until Redis confirmed this topic's SUBSCRIBE, what arrives on the
	// channel was published for an earlier subscription, already gone.
	if t != nil && t.done {
		subs = t.subs
	}
	b.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	msg, pos := decodeString(payload)
	p := ratchet.Publication{Topic: strings.TrimPrefix(channel, b.o.prefix), Position: pos, Message: msg}
	if !pos.IsZero() && !b.inOrder(t, p) {
		return
	}
	for _, s := range subs {
		b.deliver(s, p)
	}
}

func (b *Broker) deliver(s *subscription, p ratchet.Publication) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deliver == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			b.o.logger.Error("ratchet/redis: panic in deliver", "panic", v)
			b.report(&ratchet.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	s.deliver(p)
}
