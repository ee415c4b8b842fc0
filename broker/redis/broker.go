package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokeropt"
	"github.com/ratchetgo/ratchet/internal/topicsubs"
)

// Defaults of the options.
const (
	DefaultPrefix         = "ratchet:"
	DefaultMinBackoff     = brokeropt.DefaultMinBackoff
	DefaultMaxBackoff     = brokeropt.DefaultMaxBackoff
	DefaultHealthInterval = brokeropt.DefaultHealthInterval
	DefaultDialTimeout    = brokeropt.DefaultDialTimeout
)

// ErrUnavailable is wrapped by the errors of a Broker whose subscriber
// connection to Redis is down. It wraps ratchet.ErrBrokerUnavailable.
var ErrUnavailable = fmt.Errorf("ratchet/redis: redis unavailable: %w", ratchet.ErrBrokerUnavailable)

// Option configures a Broker.
type Option func(*brokeropt.Options)

// WithPrefix sets the string put in front of every topic to make its Redis
// channel name (default "ratchet:"), so that several applications can share
// one Redis. A topic "news" is then the channel "ratchet:news".
func WithPrefix(prefix string) Option { return func(o *brokeropt.Options) { o.Prefix = prefix } }

// WithLogger sets where connection losses and reconnections are logged
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *brokeropt.Options) { o.Logger = l } }

// WithOnError sets a function called, from the broker's goroutine, with every
// connection error: the one that ended a connection (an outage begins;
// Outages counts it once this function has returned) and each failed
// reconnection attempt after it. It is
// also called with a *ratchet.PanicError when a deliver function panics,
// with an error wrapping ratchet.ErrInvalidUTF8 for a raw payload that is
// not valid UTF-8 (delivered as binary, see the package documentation), and
// with the error of a catch-up from a topic's stream that failed (see
// SubscribePublications). It must not block.
func WithOnError(fn func(error)) Option { return func(o *brokeropt.Options) { o.OnError = fn } }

// WithOnReconnect sets a function called, from the broker's goroutine, each
// time the broker is connected again after an outage, once Redis confirmed
// the re-subscription of every topic that still has subscribers. It must not
// block.
func WithOnReconnect(fn func()) Option { return func(o *brokeropt.Options) { o.OnReconnect = fn } }

// WithBackoff sets the delays between reconnection attempts: the first
// waits min, each next one twice as long up to max, with ±20% jitter
// (defaults 100ms and 5s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *brokeropt.Options) { o.MinBackoff, o.MaxBackoff = min, max }
}

// WithHealthInterval sets how long the subscriber connection may stay silent
// before the broker sends a PING; a connection that then stays silent for as
// long again is considered lost (default 5s). It bounds how long a Redis that
// vanished without closing its sockets goes unnoticed.
func WithHealthInterval(d time.Duration) Option {
	return func(o *brokeropt.Options) { o.HealthInterval = d }
}

// WithDialTimeout bounds each (re)connection attempt (default 5s).
func WithDialTimeout(d time.Duration) Option { return func(o *brokeropt.Options) { o.DialTimeout = d } }

// Broker is a ratchet.Broker on Redis pub/sub. See the package documentation.
// Its methods are safe for concurrent use.
type Broker struct {
	client *goredis.Client
	o      brokeropt.Options
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	// ctl serialises the decisions to SUBSCRIBE or UNSUBSCRIBE a channel with
	// the writes of those commands, so that Redis sees them in the order the
	// topic map changed, and the installation of a new connection with both.
	ctl sync.Mutex

	mu      sync.Mutex
	topics  map[string]*topic // by Redis channel
	pending map[string]int    // SUBSCRIBEs sent on ps, not yet confirmed
	resub   map[string]bool   // channels re-subscribed on ps, not yet confirmed
	ps      *goredis.PubSub   // the current connection; nil while down
	lost    chan struct{}     // closed when the current connection is lost

	closed   atomic.Bool // set under mu
	up       atomic.Bool
	outages  atomic.Uint64
	pubs     sync.WaitGroup // Publish calls in flight
	loopDone chan struct{}

	downSince time.Time // start of the last outage; owned by run
}

type topic struct {
	channel   string
	report    func(error) // what went wrong delivering
	subs      topicsubs.List
	confirmed chan struct{} // closed once Redis confirmed the SUBSCRIBE
	done      bool          // confirmed is closed

	// last is the newest position delivered, anchor the newest one History
	// reported before any delivery: where a catch-up resumes (history.go).
	last, anchor ratchet.Position
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
	o := brokeropt.New("ratchet/redis", DefaultPrefix)
	for _, opt := range opts {
		opt(&o)
	}
	o.Check()
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
	b.up.Store(true) // nothing to re-subscribe yet
	go b.run(ps)
	return b, nil
}

// Channel returns the Redis channel that carries topic: the prefix followed
// by the topic.
func (b *Broker) Channel(topic string) string { return b.o.Prefix + topic }

// Outages returns how many times the subscriber connection to Redis was lost
// since New.
func (b *Broker) Outages() uint64 { return b.outages.Load() }

// Connected reports whether the subscriber connection to Redis is up and,
// after an outage, Redis has confirmed the re-subscription of every topic:
// whether the broker's subscriptions are in effect. While it reports false,
// ratchet.Hub.Subscribe fails with ratchet.ErrBrokerUnavailable.
func (b *Broker) Connected() bool { return b.up.Load() }

// Publish implements ratchet.Broker: it sends msg on the topic's channel and
// returns once Redis accepted it, or with an error when Redis cannot be
// reached, the broker is closed (ratchet.ErrBrokerClosed) or ctx ends first.
func (b *Broker) Publish(ctx context.Context, topic string, msg ratchet.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
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
	return b.SubscribePublications(ctx, topicName, topicsubs.Plain(deliver))
}

// subscribeChannel is Subscribe on a Redis channel named in full.
func (b *Broker) subscribeChannel(ctx context.Context, channel string, deliver func(ratchet.Publication)) (*topicsubs.Sub, error) {
	b.ctl.Lock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		b.ctl.Unlock()
		return nil, ratchet.ErrBrokerClosed
	}
	t := b.topics[channel]
	created := t == nil
	if created {
		t = &topic{channel: channel, confirmed: make(chan struct{})}
		t.report = func(err error) { b.o.ReportDelivery("channel "+channel, err) }
		b.topics[channel] = t
	}
	s := t.subs.Add(deliver, func(ctx context.Context, s *topicsubs.Sub) error { return b.unsubscribe(ctx, t, s) })
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
	_ = brokeropt.Cleanup(s.Unsubscribe)
	if errors.Is(err, ratchet.ErrBrokerClosed) {
		return nil, err
	}
	return nil, fmt.Errorf("ratchet/redis: subscribe %q: %w", channel, err)
}

// unsubscribe is the broker's part of a subscription's Unsubscribe
// (ratchet.Subscription): the last subscription of a topic UNSUBSCRIBEs its
// channel, and an error from that command is returned. Deliveries stop
// whatever happens.
func (b *Broker) unsubscribe(ctx context.Context, t *topic, s *topicsubs.Sub) error {
	b.ctl.Lock()
	b.mu.Lock()
	var ps *goredis.PubSub
	if t.subs.Remove(s) == 0 && b.topics[t.channel] == t {
		delete(b.topics, t.channel)
		ps = b.ps
	}
	b.mu.Unlock()
	var err error
	if ps != nil {
		err = ps.Unsubscribe(ctx, t.channel)
	}
	b.ctl.Unlock()
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
	if b.closed.Load() {
		b.mu.Unlock()
		b.ctl.Unlock()
		return nil
	}
	b.closed.Store(true)
	ps := b.ps
	b.ps = nil
	var subs []*topicsubs.Sub
	for _, t := range b.topics {
		subs = append(subs, t.subs.Clear()...)
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
		s.Stop()
	}
	b.pubs.Wait()
	b.up.Store(false)
	return nil
}

// dial opens a pub/sub connection, subscribes every topic that has
// subscribers and installs it as the current connection.
func (b *Broker) dial(ctx context.Context) (*goredis.PubSub, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.DialTimeout)
	defer cancel()
	ps := b.client.Subscribe(b.ctx) // no channel: connects on first use
	if err := ps.Ping(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	b.ctl.Lock()
	defer b.ctl.Unlock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		_ = ps.Close()
		return nil, ratchet.ErrBrokerClosed
	}
	channels := make([]string, 0, len(b.topics))
	clear(b.pending)
	b.resub = make(map[string]bool, len(b.topics))
	for ch := range b.topics {
		channels = append(channels, ch)
		b.pending[ch] = 1
		b.resub[ch] = true
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
	return ps, nil
}

// run receives on the current connection and dispatches, and reconnects
// after it is lost, until Close.
func (b *Broker) run(ps *goredis.PubSub) {
	defer close(b.loopDone)
	for {
		err := b.receive(ps)
		b.drop(ps)
		if b.closed.Load() {
			return
		}
		// Report, then count: whoever sees Outages move finds the outage
		// reported.
		b.o.Report(slog.LevelWarn, "connection to redis lost; reconnecting",
			fmt.Errorf("%w: connection lost: %w", ErrUnavailable, err), "outage", b.outages.Load()+1)
		b.outages.Add(1)
		down := time.Now()
		if ps = b.reconnect(); ps == nil {
			return
		}
		b.downSince = down
	}
}

// resubscribed reports whether Redis confirmed every re-subscription made
// when the current connection was opened.
func (b *Broker) resubscribed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.resub) == 0
}

// receive reads ps until it fails or stays silent too long. After an
// outage, the broker is up again once the re-subscriptions are confirmed.
func (b *Broker) receive(ps *goredis.PubSub) error {
	pinged := false
	resubscribing := !b.downSince.IsZero()
	for {
		if resubscribing && b.resubscribed() {
			resubscribing = false
			b.up.Store(true)
			b.o.Reconnected(b.downSince)
		}
		v, err := ps.ReceiveTimeout(b.ctx, b.o.HealthInterval)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || b.closed.Load() {
				return err
			}
			if pinged {
				return fmt.Errorf("no answer to PING within %v", b.o.HealthInterval)
			}
			ctx, cancel := context.WithTimeout(b.ctx, b.o.HealthInterval)
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
	for attempt := 1; ; attempt++ {
		delay := b.o.Backoff(attempt)
		timer := time.NewTimer(delay)
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
		if b.closed.Load() {
			return nil
		}
		b.o.Report(slog.LevelDebug, "reconnection failed", fmt.Errorf("%w: reconnect: %w", ErrUnavailable, err))
	}
}

func (b *Broker) confirm(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.resub, channel) // the first confirmation after dial is dial's
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
	// Until Redis confirmed this topic's SUBSCRIBE, what arrives on the
	// channel was published for an earlier subscription, already gone.
	ready := t != nil && t.done && t.subs.Len() > 0
	b.mu.Unlock()
	if !ready {
		return
	}
	msg, pos := decode(payload)
	p := ratchet.Publication{Topic: strings.TrimPrefix(channel, b.o.Prefix), Position: pos, Message: msg}
	if !pos.IsZero() && !b.inOrder(t, p) {
		return
	}
	t.subs.Deliver(p, t.report)
}
