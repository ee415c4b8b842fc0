package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/ratchetgo/ratchet"
)

// Defaults of the options.
const (
	DefaultPrefix         = "ratchet."
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultHealthInterval = 5 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultPublishTimeout = 5 * time.Second
)

// TypeHeader is the NATS message header that marks a binary message: a
// message with "Ratchet-Type: binary" is delivered as binary, one with
// "Ratchet-Type: text" as text, and one without the header as text when its
// payload is valid UTF-8 (binary otherwise).
const TypeHeader = "Ratchet-Type"

var (
	// ErrUnavailable is wrapped by the errors of a Broker whose connection to
	// NATS is down.
	ErrUnavailable = errors.New("ratchet/nats: nats unavailable")

	// ErrInvalidPrefix is returned by Connect for a prefix that cannot start
	// a NATS subject.
	ErrInvalidPrefix = errors.New("ratchet/nats: prefix cannot start a NATS subject")
)

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
	publishTimeout time.Duration
	async          bool
	natsOpts       []nats.Option
}

// WithPrefix sets the string put in front of every topic to make its NATS
// subject (default "ratchet."), so that several applications can share one
// NATS. A topic "news" is then the subject "ratchet.news". The prefix must
// start a literal subject (no whitespace, no wildcard or empty token);
// Connect returns ErrInvalidPrefix otherwise.
func WithPrefix(prefix string) Option { return func(o *options) { o.prefix = prefix } }

// WithLogger sets where connection losses and reconnections are logged
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithOnError sets a function called with every connection error: the one
// that ended a connection (an outage begins, and Outages counts it), each
// failed reconnection attempt, and asynchronous errors from the server (slow
// consumer, permissions). It is also called with a *ratchet.PanicError when
// a deliver function panics. It must not block.
func WithOnError(fn func(error)) Option { return func(o *options) { o.onError = fn } }

// WithOnReconnect sets a function called each time the broker is connected
// again after an outage, once the server has every subscription again. It
// must not block.
func WithOnReconnect(fn func()) Option { return func(o *options) { o.onReconnect = fn } }

// WithBackoff sets the delays between reconnection attempts: the first
// waits min, each next one twice as long up to max, with ±20% jitter
// (defaults 100ms and 5s). Reconnection attempts never stop.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithHealthInterval sets the interval of the client's PINGs; two
// unanswered ones end the connection (default 5s). It bounds how long a
// server that vanished without closing its sockets goes unnoticed.
func WithHealthInterval(d time.Duration) Option { return func(o *options) { o.healthInterval = d } }

// WithDialTimeout bounds each (re)connection attempt (default 5s).
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithPublishTimeout bounds a Publish whose context has no deadline
// (default 5s).
func WithPublishTimeout(d time.Duration) Option { return func(o *options) { o.publishTimeout = d } }

// WithAsyncPublish makes Publish return once the message is written to the
// connection's buffer, without waiting for the server to have received it.
// Publishing gets much faster, but a message written just before the
// connection breaks, while the break is not yet detected, is lost without an
// error. By default Publish waits for the server (one round trip).
func WithAsyncPublish() Option { return func(o *options) { o.async = true } }

// WithNATSOptions adds options for nats.Connect, after the broker's own:
// credentials, TLS, more servers. Options that set the connection's
// disconnect, reconnect or error handlers, or ReconnectBufSize, would defeat
// the broker's outage reporting and must not be given.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) { o.natsOpts = append(o.natsOpts, opts...) }
}

// Broker is a ratchet.Broker on NATS core subjects. See the package
// documentation. Its methods are safe for concurrent use.
type Broker struct {
	nc *nats.Conn
	o  options

	mu     sync.Mutex
	topics map[string]*topic // by subject
	closed bool

	isClosed atomic.Bool
	outages  atomic.Uint64

	hist history
}

type topic struct {
	b         *Broker
	name      string
	subject   string
	ns        *nats.Subscription
	subs      atomic.Pointer[[]*subscription] // copy on write
	confirmed atomic.Bool                     // the server has the SUB
	order     liveOrder
}

type subscription struct {
	b       *Broker
	t       *topic
	mu      sync.Mutex // held while delivering
	deliver func(ratchet.Publication)
	once    sync.Once
}

// Connect connects to the NATS server(s) at url (a comma-separated list is
// accepted, as by nats.Connect) and returns a Broker on that connection. The
// broker owns the connection, which carries every topic of this process, and
// reconnects it by itself after the first connection succeeded.
func Connect(url string, opts ...Option) (*Broker, error) {
	o := options{
		prefix:         DefaultPrefix,
		minBackoff:     DefaultMinBackoff,
		maxBackoff:     DefaultMaxBackoff,
		healthInterval: DefaultHealthInterval,
		dialTimeout:    DefaultDialTimeout,
		publishTimeout: DefaultPublishTimeout,
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
	if o.publishTimeout <= 0 {
		o.publishTimeout = DefaultPublishTimeout
	}
	if !validSubject(subject(o.prefix, "x")) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidPrefix, o.prefix)
	}
	b := &Broker{o: o, topics: make(map[string]*topic)}
	var downSince atomic.Int64
	nopts := []nats.Option{
		nats.Name("ratchet"),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1), // publishing while down fails instead of buffering
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := o.minBackoff
			for i := 1; i < attempts && d < o.maxBackoff; i++ {
				d *= 2
			}
			d = min(d, o.maxBackoff)
			return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
		}),
		nats.Timeout(o.dialTimeout),
		nats.PingInterval(o.healthInterval),
		nats.MaxPingsOutstanding(2),
		nats.NoCallbacksAfterClientClose(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.isClosed.Load() {
				return
			}
			if err == nil {
				err = errors.New("disconnected")
			}
			downSince.Store(time.Now().UnixNano())
			n := b.outages.Add(1)
			b.o.logger.Warn("ratchet/nats: connection to nats lost; reconnecting", "error", err, "outage", n)
			b.report(fmt.Errorf("%w: connection lost: %w", ErrUnavailable, err))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.isClosed.Load() {
				return
			}
			b.o.logger.Debug("ratchet/nats: reconnection failed", "error", err)
			b.report(fmt.Errorf("%w: reconnect: %w", ErrUnavailable, err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			// The client has sent every subscription again; wait until the
			// server has processed them before announcing it.
			ctx, cancel := context.WithTimeout(context.Background(), o.dialTimeout)
			err := nc.FlushWithContext(ctx)
			cancel()
			if err != nil {
				return // lost again: the disconnect handler reports it
			}
			downtime := time.Duration(time.Now().UnixNano() - downSince.Load())
			b.o.logger.Info("ratchet/nats: reconnected to nats", "url", nc.ConnectedUrlRedacted(), "downtime", downtime.Round(time.Millisecond))
			b.refill("") // what the topics with history missed meanwhile
			if b.o.onReconnect != nil {
				b.o.onReconnect()
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			if s != nil && errors.Is(err, nats.ErrSlowConsumer) {
				b.refill(s.Subject) // what the client dropped
			}
			if s != nil {
				err = fmt.Errorf("ratchet/nats: subject %s: %w", s.Subject, err)
			}
			b.o.logger.Error("ratchet/nats: asynchronous error", "error", err)
			b.report(err)
		}),
	}
	nc, err := nats.Connect(url, append(nopts, o.natsOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("ratchet/nats: connect: %w", err)
	}
	b.nc = nc
	return b, nil
}

// Conn returns the broker's NATS connection, for instance to use JetStream
// on it. Do not close it: Close the broker.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// Subject returns the NATS subject that carries topic: the prefix followed
// by the topic when that makes a literal subject and the topic does not
// start with "~", else the prefix followed by "~" and the topic in unpadded
// base64url. See the package documentation.
func (b *Broker) Subject(topic string) string { return subject(b.o.prefix, topic) }

func subject(prefix, topic string) string {
	if !strings.HasPrefix(topic, "~") {
		if s := prefix + topic; validSubject(s) {
			return s
		}
	}
	return prefix + "~" + base64.RawURLEncoding.EncodeToString([]byte(topic))
}

// Outages returns how many times the connection to NATS was lost since
// Connect.
func (b *Broker) Outages() uint64 { return b.outages.Load() }

// Connected reports whether the connection to NATS is up.
func (b *Broker) Connected() bool { return b.nc.IsConnected() }

func (b *Broker) report(err error) {
	if b.o.onError != nil {
		b.o.onError(err)
	}
}

func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// Publish implements ratchet.Broker: it sends msg on the topic's subject
// and, unless WithAsyncPublish was given, returns once the server has it. It
// returns an error wrapping ErrUnavailable at once while the connection is
// down (nothing is buffered to be sent later), ratchet.ErrBrokerClosed after
// Close, and the context's error when ctx ends first.
func (b *Broker) Publish(ctx context.Context, topic string, msg ratchet.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.isClosed.Load() {
		return ratchet.ErrBrokerClosed
	}
	subject := b.Subject(topic)
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w (%s)", ErrUnavailable, b.nc.Status())
	}
	m := &nats.Msg{Subject: subject, Data: msg.Data}
	if msg.Type == ratchet.MessageBinary {
		m.Header = nats.Header{TypeHeader: []string{"binary"}}
	}
	if err := b.nc.PublishMsg(m); err != nil {
		if errors.Is(err, nats.ErrReconnectBufExceeded) {
			err = fmt.Errorf("%w (%w)", ErrUnavailable, err)
		}
		if errors.Is(err, nats.ErrConnectionClosed) && b.isClosed.Load() {
			return ratchet.ErrBrokerClosed
		}
		return fmt.Errorf("ratchet/nats: publish: %w", err)
	}
	if b.o.async {
		return nil
	}
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("ratchet/nats: publish: %w", err)
	}
	return nil
}

// flush waits for the server to have processed everything sent so far.
func (b *Broker) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.o.publishTimeout)
		defer cancel()
	}
	err := b.nc.FlushWithContext(ctx)
	if err != nil && !b.nc.IsConnected() {
		err = fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	return err
}

// Subscribe implements ratchet.Broker. The first subscription to a topic
// subscribes its subject on the server; Subscribe returns once the server
// has it, so a message published after Subscribe returns is delivered.
// While NATS is unreachable, Subscribe registers the subscription and
// returns at once: the client sends it when it has reconnected.
//
// Each topic has its own delivering goroutine, so deliver is called in
// order, one message at a time, for a subscription. It must return quickly,
// and must not call Unsubscribe on its own subscription (that waits for
// deliver to return) or Close.
func (b *Broker) Subscribe(ctx context.Context, topicName string, deliver func(ratchet.Message)) (ratchet.Subscription, error) {
	if deliver == nil {
		return nil, errors.New("ratchet/nats: nil deliver function")
	}
	return b.subscribe(ctx, topicName, func(p ratchet.Publication) { deliver(p.Message) })
}

func (b *Broker) subscribe(ctx context.Context, topicName string, deliver func(ratchet.Publication)) (ratchet.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	subject := b.Subject(topicName)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ratchet.ErrBrokerClosed
	}
	t := b.topics[subject]
	created := t == nil
	if created {
		t = &topic{b: b, name: topicName, subject: subject}
		t.subs.Store(&[]*subscription{})
		ns, err := b.nc.Subscribe(subject, t.handle)
		if err != nil {
			b.mu.Unlock()
			return nil, fmt.Errorf("ratchet/nats: subscribe %q: %w", topicName, err)
		}
		t.ns = ns
		b.topics[subject] = t
	}
	s := &subscription{b: b, t: t, deliver: deliver}
	old := *t.subs.Load()
	subs := make([]*subscription, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, s)
	t.subs.Store(&subs)
	b.mu.Unlock()

	if t.confirmed.Load() || !b.nc.IsConnected() {
		return s, nil
	}
	err := b.flush(ctx)
	if err == nil {
		t.confirmed.Store(true)
		if created {
			b.startOrder(ctx, t)
		}
		return s, nil
	}
	if ctx.Err() == nil && !b.nc.IsConnected() {
		return s, nil // sent again on reconnection
	}
	_ = s.Unsubscribe(context.Background())
	if b.isClosed.Load() {
		return nil, ratchet.ErrBrokerClosed
	}
	return nil, fmt.Errorf("ratchet/nats: subscribe %q: %w", topicName, err)
}

func (t *topic) handle(m *nats.Msg) {
	if len(*t.subs.Load()) == 0 || t.b.receiveHistory(t, m) {
		return
	}
	t.deliverAll(ratchet.Publication{Topic: t.name, Message: Decode(m)})
}

func (t *topic) deliverAll(p ratchet.Publication) {
	for _, s := range *t.subs.Load() {
		t.b.deliver(s, p)
	}
}

// Decode returns the message a NATS message carries, per TypeHeader.
func Decode(m *nats.Msg) ratchet.Message {
	switch m.Header.Get(TypeHeader) {
	case "binary":
		return ratchet.Message{Type: ratchet.MessageBinary, Data: m.Data}
	case "text":
		return ratchet.Message{Type: ratchet.MessageText, Data: m.Data}
	}
	if utf8.Valid(m.Data) {
		return ratchet.Message{Type: ratchet.MessageText, Data: m.Data}
	}
	return ratchet.Message{Type: ratchet.MessageBinary, Data: m.Data}
}

func (b *Broker) deliver(s *subscription, p ratchet.Publication) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deliver == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			b.o.logger.Error("ratchet/nats: panic in deliver", "panic", v)
			b.report(&ratchet.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	s.deliver(p)
}

// Unsubscribe implements ratchet.Subscription. Deliveries stop whatever
// happens; the last subscription of a topic then unsubscribes its subject on
// the server, and an error from that is returned.
func (s *subscription) Unsubscribe(context.Context) error {
	var err error
	s.once.Do(func() { err = s.b.unsubscribe(s) })
	return err
}

func (b *Broker) unsubscribe(s *subscription) error {
	t := s.t
	b.mu.Lock()
	old := *t.subs.Load()
	subs := make([]*subscription, 0, len(old))
	for _, x := range old {
		if x != s {
			subs = append(subs, x)
		}
	}
	t.subs.Store(&subs)
	var ns *nats.Subscription
	if len(subs) == 0 && b.topics[t.subject] == t {
		delete(b.topics, t.subject)
		ns = t.ns
	}
	b.mu.Unlock()
	var err error
	if ns != nil && !b.isClosed.Load() {
		err = ns.Unsubscribe()
	}
	s.mu.Lock() // waits for a delivery in progress
	s.deliver = nil
	s.mu.Unlock()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("ratchet/nats: unsubscribe: %w", err)
	}
	return nil
}

// Close implements ratchet.Broker: it ends every subscription, waits for
// deliveries in progress, and closes the NATS connection.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.isClosed.Store(true)
	var subs []*subscription
	for _, t := range b.topics {
		subs = append(subs, *t.subs.Load()...)
		t.subs.Store(&[]*subscription{})
	}
	b.topics = nil
	b.mu.Unlock()
	b.nc.Close()
	b.hist.refills.Wait()
	for _, s := range subs {
		s.mu.Lock()
		s.deliver = nil
		s.mu.Unlock()
	}
	return nil
}
