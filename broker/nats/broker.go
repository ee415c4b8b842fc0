package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokeropt"
	"github.com/ratchetgo/ratchet/internal/topicsubs"
)

// Defaults of the options.
const (
	DefaultPrefix         = "ratchet."
	DefaultMinBackoff     = brokeropt.DefaultMinBackoff
	DefaultMaxBackoff     = brokeropt.DefaultMaxBackoff
	DefaultHealthInterval = brokeropt.DefaultHealthInterval
	DefaultDialTimeout    = brokeropt.DefaultDialTimeout
	DefaultPublishTimeout = 5 * time.Second
)

// TypeHeader is the NATS message header that marks a binary message: a
// message with "Ratchet-Type: binary" is delivered as binary, one with
// "Ratchet-Type: text" or without the header as text. Text must be valid
// UTF-8: a payload that is not is delivered as binary, and reported to the
// logger and the WithOnError function (an error wrapping
// ratchet.ErrInvalidUTF8).
const TypeHeader = "Ratchet-Type"

var (
	// ErrUnavailable is wrapped by the errors of a Broker whose connection to
	// NATS is down. It wraps ratchet.ErrBrokerUnavailable.
	ErrUnavailable = fmt.Errorf("ratchet/nats: nats unavailable: %w", ratchet.ErrBrokerUnavailable)

	// ErrInvalidPrefix is returned by Connect for a prefix that cannot start
	// a NATS subject.
	ErrInvalidPrefix = errors.New("ratchet/nats: prefix cannot start a NATS subject")
)

// Option configures a Broker.
type Option func(*options)

type options struct {
	brokeropt.Options
	publishTimeout time.Duration
	async          bool
	natsOpts       []nats.Option
}

// WithPrefix sets the string put in front of every topic to make its NATS
// subject (default "ratchet."), so that several applications can share one
// NATS. A topic "news" is then the subject "ratchet.news". The prefix must
// start a literal subject (no whitespace, no wildcard or empty token);
// Connect returns ErrInvalidPrefix otherwise.
func WithPrefix(prefix string) Option { return func(o *options) { o.Prefix = prefix } }

// WithLogger sets where connection losses and reconnections are logged
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.Logger = l } }

// WithOnError sets a function called with every connection error: the one
// that ended a connection (an outage begins; Outages counts it once this
// function has returned), each
// failed reconnection attempt, and asynchronous errors from the server (slow
// consumer, permissions). It is also called with a *ratchet.PanicError when
// a deliver function panics, and with an error wrapping
// ratchet.ErrInvalidUTF8 for text that is not valid UTF-8 (delivered as
// binary, see TypeHeader). It must not block.
func WithOnError(fn func(error)) Option { return func(o *options) { o.OnError = fn } }

// WithOnReconnect sets a function called each time the broker is connected
// again after an outage, once the server has every subscription again. It
// must not block.
func WithOnReconnect(fn func()) Option { return func(o *options) { o.OnReconnect = fn } }

// WithBackoff sets the delays between reconnection attempts: the first
// waits min, each next one twice as long up to max, with ±20% jitter
// (defaults 100ms and 5s). Reconnection attempts never stop.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.MinBackoff, o.MaxBackoff = min, max }
}

// WithHealthInterval sets the interval of the client's PINGs; two
// unanswered ones end the connection (default 5s). It bounds how long a
// server that vanished without closing its sockets goes unnoticed.
func WithHealthInterval(d time.Duration) Option { return func(o *options) { o.HealthInterval = d } }

// WithDialTimeout bounds each (re)connection attempt (default 5s).
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.DialTimeout = d } }

// WithPublishTimeout bounds a Publish whose context has no deadline
// (default 5s).
func WithPublishTimeout(d time.Duration) Option { return func(o *options) { o.publishTimeout = d } }

// WithAsyncPublish makes Publish return once the message is written to the
// connection's buffer, without waiting for the server to have received it.
// Publishing gets much faster, but a message written just before the
// connection breaks, while the break is not yet detected, is lost without an
// error. By default Publish waits for the server (one round trip).
func WithAsyncPublish() Option { return func(o *options) { o.async = true } }

// maxPingsOutstanding is how many PINGs may go unanswered before the client
// drops the connection: two health intervals of silence.
const maxPingsOutstanding = 2

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

	closed  atomic.Bool // set under mu
	outages atomic.Uint64
	// resubscribed is the client's reconnection count once the server has
	// every subscription sent again after it.
	resubscribed atomic.Uint64

	hist history
}

type topic struct {
	b         *Broker
	name      string
	subject   string
	report    func(error) // what went wrong delivering
	ns        *nats.Subscription
	subs      topicsubs.List
	confirmed atomic.Bool // the server has the SUB
	order     liveOrder
}

// Connect connects to the NATS server(s) at url (a comma-separated list is
// accepted, as by nats.Connect) and returns a Broker on that connection. The
// broker owns the connection, which carries every topic of this process, and
// reconnects it by itself after the first connection succeeded.
func Connect(url string, opts ...Option) (*Broker, error) {
	o := options{Options: brokeropt.New("ratchet/nats", DefaultPrefix), publishTimeout: DefaultPublishTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	o.Check()
	if o.publishTimeout <= 0 {
		o.publishTimeout = DefaultPublishTimeout
	}
	if !validSubject(subject(o.Prefix, "x")) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidPrefix, o.Prefix)
	}
	b := &Broker{o: o, topics: make(map[string]*topic)}
	var downSince atomic.Int64 // Unix ns; written and read on the client's callback goroutine
	nopts := []nats.Option{
		nats.Name("ratchet"),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1), // publishing while down fails instead of buffering
		nats.CustomReconnectDelay(b.o.Backoff),
		nats.Timeout(o.DialTimeout),
		nats.PingInterval(o.HealthInterval),
		nats.MaxPingsOutstanding(maxPingsOutstanding),
		nats.NoCallbacksAfterClientClose(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closed.Load() {
				return
			}
			if err == nil {
				err = errors.New("disconnected")
			}
			downSince.Store(time.Now().UnixNano())
			// Report, then count: whoever sees Outages move finds the
			// outage reported.
			b.o.Report(slog.LevelWarn, "connection to nats lost; reconnecting",
				fmt.Errorf("%w: connection lost: %w", ErrUnavailable, err), "outage", b.outages.Load()+1)
			b.outages.Add(1)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closed.Load() {
				return
			}
			b.o.Report(slog.LevelDebug, "reconnection failed", fmt.Errorf("%w: reconnect: %w", ErrUnavailable, err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			// The client has sent every subscription again; wait until the
			// server has processed them before announcing it.
			reconnects := nc.Stats().Reconnects
			ctx, cancel := context.WithTimeout(context.Background(), o.DialTimeout)
			err := nc.FlushWithContext(ctx)
			cancel()
			if err != nil {
				return // lost again: the disconnect handler reports it
			}
			b.resubscribed.Store(reconnects)
			b.refill("") // what the topics with history missed meanwhile
			b.o.Reconnected(time.Unix(0, downSince.Load()), "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			if s != nil && errors.Is(err, nats.ErrSlowConsumer) {
				b.refill(s.Subject) // what the client dropped
			}
			if s != nil {
				err = fmt.Errorf("ratchet/nats: subject %s: %w", s.Subject, err)
			}
			b.o.Report(slog.LevelError, "asynchronous error", err)
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
func (b *Broker) Subject(topic string) string { return subject(b.o.Prefix, topic) }

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

// Connected reports whether the connection to NATS is up and, after an
// outage, the server has every subscription again: whether the broker's
// subscriptions are in effect. While it reports false,
// ratchet.Hub.Subscribe fails with ratchet.ErrBrokerUnavailable.
func (b *Broker) Connected() bool {
	return b.nc.IsConnected() && b.resubscribed.Load() == b.nc.Stats().Reconnects
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
	if b.closed.Load() {
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
		if errors.Is(err, nats.ErrConnectionClosed) && b.closed.Load() {
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
	return b.SubscribePublications(ctx, topicName, topicsubs.Plain(deliver))
}

// subscribe is SubscribePublications once deliver is checked.
func (b *Broker) subscribe(ctx context.Context, topicName string, deliver func(ratchet.Publication)) (ratchet.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	subject := b.Subject(topicName)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return nil, ratchet.ErrBrokerClosed
	}
	t := b.topics[subject]
	created := t == nil
	if created {
		t = &topic{b: b, name: topicName, subject: subject}
		t.report = func(err error) { b.o.ReportDelivery("subject "+subject, err) }
		ns, err := b.nc.Subscribe(subject, t.handle)
		if err != nil {
			b.mu.Unlock()
			return nil, fmt.Errorf("ratchet/nats: subscribe %q: %w", topicName, err)
		}
		t.ns = ns
		b.topics[subject] = t
	}
	s := t.subs.Add(deliver, func(_ context.Context, s *topicsubs.Sub) error { return b.unsubscribe(t, s) })
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
	_ = brokeropt.Cleanup(s.Unsubscribe)
	if b.closed.Load() {
		return nil, ratchet.ErrBrokerClosed
	}
	return nil, fmt.Errorf("ratchet/nats: subscribe %q: %w", topicName, err)
}

func (t *topic) handle(m *nats.Msg) {
	if t.subs.Len() == 0 || t.b.receiveHistory(t, m) {
		return
	}
	t.deliver(ratchet.Publication{Topic: t.name, Message: decode(m)})
}

// deliver hands p to the topic's subscriptions.
func (t *topic) deliver(p ratchet.Publication) { t.subs.Deliver(p, t.report) }

// Decode returns the message a NATS message carries, per TypeHeader: binary
// when the header says so, else text, or binary when the payload is not
// valid UTF-8, which a text message must be.
func Decode(m *nats.Msg) ratchet.Message {
	msg, _ := topicsubs.Checked(decode(m))
	return msg
}

// decode is Decode without the UTF-8 check: the delivery makes it, and
// reports a payload that fails it.
func decode(m *nats.Msg) ratchet.Message {
	if m.Header.Get(TypeHeader) == "binary" {
		return ratchet.Message{Type: ratchet.MessageBinary, Data: m.Data}
	}
	return ratchet.Message{Type: ratchet.MessageText, Data: m.Data}
}

// unsubscribe is the broker's part of a subscription's Unsubscribe
// (ratchet.Subscription): the last subscription of a topic unsubscribes its
// subject on the server, and an error from that is returned. Deliveries stop
// whatever happens.
func (b *Broker) unsubscribe(t *topic, s *topicsubs.Sub) error {
	b.mu.Lock()
	var ns *nats.Subscription
	if t.subs.Remove(s) == 0 && b.topics[t.subject] == t {
		delete(b.topics, t.subject)
		ns = t.ns
	}
	b.mu.Unlock()
	var err error
	if ns != nil && !b.closed.Load() {
		err = ns.Unsubscribe()
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("ratchet/nats: unsubscribe: %w", err)
	}
	return nil
}

// Close implements ratchet.Broker: it ends every subscription, waits for
// deliveries in progress, and closes the NATS connection.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return nil
	}
	b.closed.Store(true)
	var subs []*topicsubs.Sub
	for _, t := range b.topics {
		subs = append(subs, t.subs.Clear()...)
	}
	b.topics = nil
	b.mu.Unlock()
	b.nc.Close()
	b.hist.refills.Wait()
	for _, s := range subs {
		s.Stop()
	}
	return nil
}
