package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokeropt"
)

// SizeHeader is the header of a message published with history that
// carries its HistoryPolicy.Size: the history of a topic is the newest Size
// messages of its subject in the stream, Size read from the newest message
// (see the package documentation).
const SizeHeader = "Ratchet-History-Size"

// historyStreamPrefix starts the name of the JetStream stream a Broker keeps
// history in; the name goes on with the broker's prefix and ends with
// "_" and the stream's epoch.
const historyStreamPrefix = "RATCHET_HISTORY_"

var (
	// ErrHistoryPrefix is returned by the history methods of a Broker whose
	// prefix does not end with ".": JetStream can republish a stored
	// message to the live subject only token by token.
	ErrHistoryPrefix = errors.New(`ratchet/nats: history needs a prefix that ends with "."`)

	// ErrLiveGap is reported to the WithOnError function when the live
	// delivery of a topic with history found a message missing (the
	// connection dropped it, or it was published during an outage) and could
	// not read it back from the stream any more: subscribers of the node did
	// not get it.
	ErrLiveGap = errors.New("ratchet/nats: live messages lost")
)

const (
	// historyScanBatch bounds one pull request of a history read.
	historyScanBatch = 1024
	// readConsumerIdle is the InactiveThreshold of the ephemeral consumers
	// history reads make: the server drops one left behind after that.
	readConsumerIdle = 10 * time.Second
	// historyReadAttempts bounds how often a read from the oldest kept
	// message starts over because the stream trimmed what it was reading.
	historyReadAttempts = 3
	// errCodeSubjectOverlap is JetStream's error for a stream whose subjects
	// another stream has: another node created the history stream first.
	errCodeSubjectOverlap = 10065
	// errCodeStreamNotMatch is JetStream's error for a message published
	// with an expected stream that is not the one its subject is in.
	errCodeStreamNotMatch = 10060
	// minMaxAge is the smallest MaxAge nats-server takes for a stream.
	minMaxAge = 100 * time.Millisecond
	// epochBits is the size of the random epoch of a new history stream.
	epochBits = 48
)

// history is a Broker's view of its history stream.
type history struct {
	jsOnce sync.Once
	js     jetstream.JetStream
	jsErr  error

	setup   sync.Mutex     // serialises lookups, creation and updates of the stream
	refills sync.WaitGroup // the goroutines of refill

	mu     sync.Mutex
	looked bool             // looked up since the last change seen
	stream jetstream.Stream // nil: none
	size   int64            // its MaxMsgsPerSubject, -1 for no limit
	age    time.Duration    // its MaxAge, 0 for no limit
	name   atomic.Pointer[string]
}

func (b *Broker) jetStream() (jetstream.JetStream, error) {
	h := &b.hist
	h.jsOnce.Do(func() { h.js, h.jsErr = jetstream.New(b.nc) })
	return h.js, h.jsErr
}

// historyPrefix is the start of the history subjects: the prefix's last
// token followed by "_h", so that no live subject is a history subject.
func (b *Broker) historyPrefix() (string, error) {
	base, ok := strings.CutSuffix(b.o.Prefix, ".")
	if !ok {
		return "", ErrHistoryPrefix
	}
	return base + "_h.", nil
}

// HistorySubject returns the subject a message of topic published with
// history goes to: the stream stores it, then republishes it to
// Subject(topic) with its position. It returns "" when the prefix does not
// end with "." (ErrHistoryPrefix).
func (b *Broker) HistorySubject(topic string) string {
	return b.historySubjectOf(b.Subject(topic))
}

func (b *Broker) historySubjectOf(live string) string {
	hp, err := b.historyPrefix()
	if err != nil {
		return ""
	}
	return hp + live[len(b.o.Prefix):]
}

// epochOf returns the epoch of the history stream named stream: the text
// after its last "_", a fresh random word for every stream the broker
// creates, so that a stream deleted and created again never passes for the
// old one.
func epochOf(stream string) (string, bool) {
	e := stream[strings.LastIndexByte(stream, '_')+1:]
	if _, err := ratchet.ParsePosition(e + ":1"); err != nil {
		return "", false
	}
	return e, true
}

func streamName(prefix string) string {
	base := []byte(strings.TrimSuffix(prefix, "."))
	for i, c := range base {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			base[i] = '-'
		}
	}
	if len(base) > 32 {
		base = base[:32]
	}
	epoch := strconv.FormatUint(rand.Uint64()>>(64-epochBits), 36)
	return historyStreamPrefix + string(base) + "_" + epoch
}

// policyDefaults fills the zero fields of p as ratchet.WithHistory does,
// and raises TTL to the smallest age a stream can keep.
func policyDefaults(p ratchet.HistoryPolicy) ratchet.HistoryPolicy {
	p = brokeropt.HistoryPolicy(p)
	p.TTL = max(p.TTL, minMaxAge)
	return p
}

// covers reports whether stream limits keep what policy asks for: one
// message more than Size per subject (the one before the oldest kept, so a
// client that has it is known to have missed nothing), for TTL.
func covers(size int64, age time.Duration, p ratchet.HistoryPolicy) bool {
	return (size < 0 || size > int64(p.Size)) && (age == 0 || age >= p.TTL)
}

// cached returns the known stream, and whether it was looked up.
func (h *history) cached() (jetstream.Stream, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stream, h.looked
}

func (h *history) set(st jetstream.Stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stream, h.looked = st, true
	name := ""
	if st != nil {
		cfg := st.CachedInfo().Config
		h.size, h.age, name = cfg.MaxMsgsPerSubject, cfg.MaxAge, cfg.Name
	}
	h.name.Store(&name)
}

// forget drops the stream named name (it is gone, or another replaced it),
// so that the next use looks it up again.
func (h *history) forget(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stream == nil || h.stream.CachedInfo().Config.Name == name {
		h.stream, h.looked = nil, false
		h.name.Store(nil)
	}
}

// seen notes a live message from stream: when it is not the one known, the
// next subscription looks the stream up again.
func (h *history) seen(stream string) {
	if p := h.name.Load(); p == nil || *p != stream {
		h.mu.Lock()
		h.looked = false
		h.mu.Unlock()
	}
}

// historyJS returns JetStream and the start of the history subjects.
func (b *Broker) historyJS() (jetstream.JetStream, string, error) {
	hp, err := b.historyPrefix()
	if err != nil {
		return nil, "", err
	}
	js, err := b.jetStream()
	return js, hp, err
}

// lookup finds the stream that holds the history subjects, nil if none.
func (b *Broker) lookup(ctx context.Context) (jetstream.Stream, error) {
	js, hp, err := b.historyJS()
	if err != nil {
		return nil, err
	}
	name, err := js.StreamNameBySubject(ctx, hp+">")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		b.hist.set(nil)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, ok := epochOf(name); !ok {
		return nil, fmt.Errorf("ratchet/nats: stream %q holds the history subjects %s> but its name does not end with _<epoch>", name, hp)
	}
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) { // deleted meanwhile
		b.hist.set(nil)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.hist.set(st)
	return st, nil
}

// findStream returns the history stream, nil if there is none.
func (b *Broker) findStream(ctx context.Context) (jetstream.Stream, error) {
	if st, _ := b.hist.cached(); st != nil {
		return st, nil
	}
	b.hist.setup.Lock()
	defer b.hist.setup.Unlock()
	return b.lookup(ctx)
}

// readStream returns the history stream for a read. When there is none it
// creates an empty one, so that the read has an epoch to give positions
// in; it keeps nothing (one message per subject, minMaxAge) until a publish
// raises its limits to the publish's policy.
func (b *Broker) readStream(ctx context.Context) (jetstream.Stream, error) {
	if st, _ := b.hist.cached(); st != nil {
		return st, nil
	}
	b.hist.setup.Lock()
	defer b.hist.setup.Unlock()
	st, err := b.lookup(ctx)
	if err != nil || st != nil {
		return st, err
	}
	return b.createStream(ctx, 1, minMaxAge)
}

// publishStream returns the history stream, created or with its limits
// raised so that it keeps what policy asks for.
func (b *Broker) publishStream(ctx context.Context, policy ratchet.HistoryPolicy) (jetstream.Stream, error) {
	h := &b.hist
	h.mu.Lock()
	st, ok := h.stream, h.stream != nil && covers(h.size, h.age, policy)
	h.mu.Unlock()
	if ok {
		return st, nil
	}
	h.setup.Lock()
	defer h.setup.Unlock()
	st, err := b.lookup(ctx)
	if err != nil {
		return nil, err
	}
	if st == nil {
		// Created with policy's limits, or, when another node created it
		// first, with that node's: checked below.
		if st, err = b.createStream(ctx, int64(policy.Size)+1, policy.TTL); err != nil {
			return nil, err
		}
	}
	cfg := st.CachedInfo().Config
	if covers(cfg.MaxMsgsPerSubject, cfg.MaxAge, policy) {
		return st, nil
	}
	// Limits only grow, so that every topic keeps what its policy asks for;
	// the history of each topic still ends at its own Size (SizeHeader).
	if cfg.MaxMsgsPerSubject >= 0 {
		cfg.MaxMsgsPerSubject = max(cfg.MaxMsgsPerSubject, int64(policy.Size)+1)
	}
	if cfg.MaxAge != 0 {
		cfg.MaxAge = max(cfg.MaxAge, policy.TTL)
	}
	js, _ := b.jetStream()
	st, err = js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("raise the limits of stream %s: %w", cfg.Name, err)
	}
	h.set(st)
	return st, nil
}

// createStream creates the history stream with the limits perSubject
// (MaxMsgsPerSubject) and age (MaxAge); when another node created it first,
// it returns that one, whatever its limits.
func (b *Broker) createStream(ctx context.Context, perSubject int64, age time.Duration) (jetstream.Stream, error) {
	js, hp, err := b.historyJS()
	if err != nil {
		return nil, err
	}
	cfg := jetstream.StreamConfig{
		Name:              streamName(b.o.Prefix),
		Description:       "ratchet history of the topics " + b.o.Prefix + "*",
		Subjects:          []string{hp + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: perSubject,
		MaxAge:            age,
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		DenyDelete:        true, // history is trimmed oldest first, never in the middle
		RePublish:         &jetstream.RePublish{Source: hp + ">", Destination: b.o.Prefix + ">"},
	}
	st, err := js.CreateStream(ctx, cfg)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeSubjectOverlap {
		return b.lookup(ctx) // another node created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	b.hist.set(st)
	return st, nil
}

// withTimeout bounds ctx by the publish timeout when it has no deadline.
func (b *Broker) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.o.publishTimeout)
}

// historyErr names what failed, wrapping ErrUnavailable while the
// connection is down.
func (b *Broker) historyErr(what string, err error) error {
	switch {
	case errors.Is(err, ErrHistoryPrefix):
		return err
	case b.closed.Load():
		return ratchet.ErrBrokerClosed
	case !b.nc.IsConnected():
		return fmt.Errorf("ratchet/nats: %s: %w (%w)", what, ErrUnavailable, err)
	}
	return fmt.Errorf("ratchet/nats: %s: %w", what, err)
}

func (b *Broker) historyUsable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ratchet.ErrBrokerClosed
	}
	if _, err := b.historyPrefix(); err != nil {
		return err
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w (%s)", ErrUnavailable, b.nc.Status())
	}
	return nil
}

// PublishHistory implements ratchet.HistoryBroker: it publishes msg with
// JetStream to HistorySubject(topic), where the history stream stores it
// and republishes it to Subject(topic) for the live subscribers of every
// node, and returns its position once the stream has it. The stream is
// created on first use, and its limits raised when policy asks for more
// (see the package documentation). Errors are those of Publish.
func (b *Broker) PublishHistory(ctx context.Context, topic string, msg ratchet.Message, policy ratchet.HistoryPolicy) (ratchet.Position, error) {
	if err := b.historyUsable(ctx); err != nil {
		return ratchet.Position{}, err
	}
	policy = policyDefaults(policy)
	ctx, cancel := b.withTimeout(ctx)
	defer cancel()
	js, err := b.jetStream()
	if err != nil {
		return ratchet.Position{}, b.historyErr("publish", err)
	}
	m := &nats.Msg{
		Subject: b.HistorySubject(topic),
		Data:    msg.Data,
		Header:  nats.Header{SizeHeader: []string{strconv.Itoa(policy.Size)}},
	}
	if msg.Type == ratchet.MessageBinary {
		m.Header[TypeHeader] = []string{"binary"}
	}
	for attempt := 0; ; attempt++ {
		st, err := b.publishStream(ctx, policy)
		if err != nil {
			return ratchet.Position{}, b.historyErr("publish", err)
		}
		// Only into the stream whose limits were checked: one that replaced
		// it may keep less than policy asks for.
		name := st.CachedInfo().Config.Name
		ack, err := js.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0), jetstream.WithExpectStream(name))
		var apiErr *jetstream.APIError
		if (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamNotMatch) && attempt == 0 {
			b.hist.forget(name) // deleted (and maybe replaced): look again
			continue
		}
		if err != nil {
			return ratchet.Position{}, b.historyErr("publish", err)
		}
		epoch, ok := epochOf(ack.Stream)
		if !ok {
			return ratchet.Position{}, fmt.Errorf("ratchet/nats: publish: stored in stream %q, whose name does not end with _<epoch>", ack.Stream)
		}
		return ratchet.Position{Epoch: epoch, Offset: ack.Sequence}, nil
	}
}

// History implements ratchet.HistoryBroker. It reads the newest message of
// the topic's subject for Latest and the topic's Size, then the messages
// after since with one ephemeral consumer (a ranged read, whatever the
// count), then the stream's state. since is Lost when more than Size
// messages of the topic follow it, or when messages after it may have
// expired: the stream drops expired messages oldest first, so that is when
// its first message comes after since's next sequence (which may also be
// another topic's message that expired: then Lost is conservative).
//
// For a topic of which nothing is kept, Latest is the stream's last
// sequence: every later message of the topic comes after it. Without a
// stream, History creates an empty one (see the package documentation).
func (b *Broker) History(ctx context.Context, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	if err := b.historyUsable(ctx); err != nil {
		return ratchet.HistoryPage{}, err
	}
	ctx, cancel := b.withTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		st, err := b.readStream(ctx)
		if err != nil {
			return ratchet.HistoryPage{}, b.historyErr("history", err)
		}
		page, err := b.readHistory(ctx, st, topic, since, limit)
		if errors.Is(err, jetstream.ErrStreamNotFound) && attempt == 0 {
			b.hist.forget(st.CachedInfo().Config.Name)
			continue
		}
		if err != nil {
			return ratchet.HistoryPage{}, b.historyErr("history", err)
		}
		return page, nil
	}
}

// errChanged: the topic's messages changed under a read, every attempt.
var errChanged = errors.New("the history changed while it was read")

func (b *Broker) readHistory(ctx context.Context, st jetstream.Stream, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	name := st.CachedInfo().Config.Name
	epoch, _ := epochOf(name)
	subj := b.HistorySubject(topic)
	newest, state, err := newestOf(ctx, st, subj)
	if err != nil {
		return ratchet.HistoryPage{}, err
	}
	if newest == nil {
		page := ratchet.HistoryPage{Latest: ratchet.Position{Epoch: epoch, Offset: state.LastSeq}}
		page.Lost = !since.IsZero() && (since.Epoch != epoch || since.Offset > state.LastSeq || expiredAfter(state, since.Offset))
		return page, nil
	}
	last, size := newest.Sequence, sizeOf(newest.Header)
	page := ratchet.HistoryPage{Latest: ratchet.Position{Epoch: epoch, Offset: last}}
	limit = max(limit, 0)
	switch {
	case since.IsZero():
		if limit == 0 {
			return page, nil
		}
		for attempt := 1; ; attempt++ {
			r, err := b.scan(ctx, name, subj, 1, last, math.MaxInt, math.MaxInt)
			if err != nil {
				return ratchet.HistoryPage{}, err
			}
			kept := r.msgs[max(0, len(r.msgs)-size):]
			kept = kept[:min(len(kept), limit)]
			if len(kept) > 0 {
				ok, err := stored(ctx, st, kept[0].seq, subj)
				if err != nil {
					return ratchet.HistoryPage{}, err
				}
				if !ok {
					if attempt == historyReadAttempts {
						return ratchet.HistoryPage{}, errChanged
					}
					continue
				}
			}
			for _, m := range kept {
				page.Publications = append(page.Publications, m.publication(topic, epoch))
			}
			return page, nil
		}
	case since.Epoch != epoch || since.Offset > last:
		page.Lost = true
		return page, nil
	case since.Offset == last:
		return page, nil
	}
	r, err := b.scan(ctx, name, subj, since.Offset+1, last, min(limit, size), size)
	if err != nil {
		return ratchet.HistoryPage{}, err
	}
	// Read after the scan: when nothing after since had expired by then,
	// the scan missed nothing.
	info, err := st.Info(ctx)
	if err != nil {
		return ratchet.HistoryPage{}, err
	}
	if r.over(min(size, keptPerSubject(info.Config))) || expiredAfter(info.State, since.Offset) {
		page.Lost = true
		return page, nil
	}
	for _, m := range r.msgs {
		page.Publications = append(page.Publications, m.publication(topic, epoch))
	}
	return page, nil
}

// newestOf returns the newest kept message of subject, or, when none is
// kept, nil and the stream's state of a moment when none was.
func newestOf(ctx context.Context, st jetstream.Stream, subject string) (*jetstream.RawStreamMsg, jetstream.StreamState, error) {
	for attempt := 1; ; attempt++ {
		m, err := st.GetLastMsgForSubject(ctx, subject)
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return m, jetstream.StreamState{}, err
		}
		// The subject's count and the stream's state of one moment.
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		switch {
		case err != nil:
			return nil, jetstream.StreamState{}, err
		case info.State.Subjects[subject] == 0:
			return nil, info.State, nil
		case attempt == historyReadAttempts:
			return nil, jetstream.StreamState{}, errChanged
		} // a message came meanwhile
	}
}

// expiredAfter reports whether messages after the sequence seq may have
// expired: the stream drops expired messages oldest first, so when one
// after seq was, every one up to it was too, and the first message kept
// comes after seq+1.
func expiredAfter(state jetstream.StreamState, seq uint64) bool { return state.FirstSeq > seq+1 }

// keptPerSubject is how many messages of a topic after a position the
// stream is sure to keep: one less than its MaxMsgsPerSubject, as the
// position's own message counts. Publishes raise that limit above their
// Size first, but a stream's limits can be changed by hand.
func keptPerSubject(cfg jetstream.StreamConfig) int {
	if cfg.MaxMsgsPerSubject <= 0 {
		return math.MaxInt
	}
	return int(cfg.MaxMsgsPerSubject - 1)
}

// sizeOf returns the history size a message carries (SizeHeader); without
// one (another publisher's), the stream's own limits are the history.
func sizeOf(h nats.Header) int {
	n, err := strconv.Atoi(h.Get(SizeHeader))
	if err != nil || n <= 0 {
		return math.MaxInt
	}
	return n
}

// storedMsg is a message read from the stream.
type storedMsg struct {
	seq uint64
	msg ratchet.Message
}

func (m storedMsg) publication(topic, epoch string) ratchet.Publication {
	return ratchet.Publication{Topic: topic, Position: ratchet.Position{Epoch: epoch, Offset: m.seq}, Message: m.msg}
}

// stored reports whether the message at seq is still in the stream, on
// subject.
func stored(ctx context.Context, st jetstream.Stream, seq uint64, subject string) (bool, error) {
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return m.Subject == subject, nil
}

type scanned struct {
	msgs []storedMsg // the first keep messages
	// count messages up to last were counted, and at most more others
	// were not.
	count int
	more  uint64
}

// over reports whether there may be more than n messages.
func (r scanned) over(n int) bool { return r.count > n || uint64(r.count)+r.more > uint64(n) }

// scan reads the messages of subject in stream from sequence from up to
// last, in order, with one ephemeral consumer: it keeps the first keep of
// them, and counts them only as far as needed to tell whether there are
// more than countTo.
func (b *Broker) scan(ctx context.Context, stream, subject string, from, last uint64, keep, countTo int) (scanned, error) {
	var r scanned
	js, err := b.jetStream()
	if err != nil {
		return r, err
	}
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: readConsumerIdle,
	})
	if err != nil {
		return r, err
	}
	info := cons.CachedInfo()
	// Not waiting for the answer: the server drops it after
	// readConsumerIdle anyway.
	defer b.nc.Publish("$JS.API.CONSUMER.DELETE."+stream+"."+info.Name, nil) //nolint:errcheck
	// Messages of the subject from `from` on: a bound on what is left.
	pending := info.NumPending
	for pending > 0 {
		if len(r.msgs) >= keep && uint64(r.count)+pending <= uint64(countTo) {
			r.more = pending
			break // all kept, and no more than countTo in all
		}
		want := uint64(countTo - r.count + 1) // enough to tell
		if len(r.msgs) < keep {
			want = uint64(keep - len(r.msgs))
		}
		batch, err := cons.FetchNoWait(int(min(want, pending, historyScanBatch)))
		if err != nil {
			return r, err
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return r, err
			}
			if done || md.Sequence.Stream > last {
				done = true
				continue // newer than the read: live delivery has it
			}
			r.count++
			if len(r.msgs) < keep {
				r.msgs = append(r.msgs, storedMsg{
					seq: md.Sequence.Stream,
					msg: Decode(&nats.Msg{Data: m.Data(), Header: m.Headers()}),
				})
			}
			done = r.count > countTo
			pending = md.NumPending
		}
		if err := batch.Error(); err != nil {
			return r, err
		}
		if got == 0 {
			r.more = pending // gone meanwhile, or not: not counted
		}
		if done || got == 0 {
			break
		}
	}
	return r, nil
}

// liveOrder puts the history messages of one topic back in stream order
// before the topic's subscriptions get them. nats-server 2.9 republishes the
// messages of publishers on different connections in the order they finish
// storing, which is not always the order of their sequences; each carries
// the sequence of the previous message of its subject (Nats-Last-Sequence),
// and a message whose previous one was not delivered yet is preceded by the
// missing ones, read from the stream. The republished copies that arrive
// later are dropped.
type liveOrder struct {
	mu      sync.Mutex
	subject string // the topic's history subject
	stream  string // of last
	last    uint64 // the newest sequence delivered
	// exact: last is known from a read made once the subscription was in
	// effect, so every message after it is to be delivered (with
	// exact and stream "", no stream existed then). Without it, the first
	// message received starts the chain, and one older than it that arrives
	// later is still delivered.
	exact bool
	first uint64 // the first sequence delivered, without exact
}

// startOrder reads where the topic's stream stands once its new
// subscription is in effect, so that live delivery knows which messages
// come after it. It costs one request when the broker knows the history
// stream, and nothing once the broker found none.
func (b *Broker) startOrder(ctx context.Context, t *topic) {
	hsubj := b.historySubjectOf(t.subject)
	if hsubj == "" {
		return
	}
	st, looked := b.hist.cached()
	if st == nil && looked {
		return // no stream the last time the broker looked
	}
	if st == nil {
		var err error
		if st, err = b.findStream(ctx); err != nil {
			b.hist.set(nil) // no JetStream here: do not ask again for every topic
			return
		}
	}
	var stream string
	var last uint64
	if st != nil {
		stream = st.CachedInfo().Config.Name
		m, err := st.GetLastMsgForSubject(ctx, hsubj)
		switch {
		case err == nil:
			last = m.Sequence
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return
		}
	}
	o := &t.order
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stream == "" && !o.exact { // nothing delivered yet
		o.subject, o.stream, o.last, o.exact = hsubj, stream, last, true
	}
}

// refill delivers, for the node's topics on subject (every topic when
// subject is ""), the messages of their history stream that live delivery
// missed: after a reconnection, those published during the outage; after
// the client dropped messages of a slow subscription, those. Without it they
// would come only with the next message of the topic. It runs in a
// goroutine of its own, which Close waits for.
func (b *Broker) refill(subject string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ts []*topic
	for s, t := range b.topics {
		if subject == "" || s == subject {
			ts = append(ts, t)
		}
	}
	if b.closed.Load() || len(ts) == 0 {
		return
	}
	b.hist.refills.Add(1)
	go func() {
		defer b.hist.refills.Done()
		for _, t := range ts {
			b.refillTopic(t)
		}
	}()
}

func (b *Broker) refillTopic(t *topic) {
	o := &t.order
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stream == "" || b.closed.Load() {
		return // no history delivered yet: nothing to go on from
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.publishTimeout)
	defer cancel()
	st, _ := b.hist.cached()
	if st == nil || st.CachedInfo().Config.Name != o.stream {
		js, err := b.jetStream()
		if err != nil {
			return
		}
		if st, err = js.Stream(ctx, o.stream); err != nil {
			return // gone: the next message starts the new stream's chain
		}
	}
	newest, err := st.GetLastMsgForSubject(ctx, o.subject)
	if err != nil {
		return
	}
	if epoch, _ := epochOf(o.stream); newest.Sequence > o.last {
		b.fill(t, o, epoch, newest.Sequence)
	}
}

// receiveHistory delivers m, in stream order, when it is a message the
// history stream republished for t, and reports whether it was.
func (b *Broker) receiveHistory(t *topic, m *nats.Msg) bool {
	if m.Header == nil {
		return false
	}
	seqText := m.Header.Get(nats.JSSequence)
	if seqText == "" {
		return false
	}
	o := &t.order
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.subject == "" {
		o.subject = b.historySubjectOf(t.subject)
	}
	stream := m.Header.Get(nats.JSStream)
	epoch, ok := epochOf(stream)
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	prev, err2 := strconv.ParseUint(m.Header.Get(nats.JSLastSequence), 10, 64)
	if o.subject == "" || m.Header.Get(nats.JSSubject) != o.subject || !ok || err1 != nil || err2 != nil {
		return false // not from the history stream: a plain message
	}
	b.hist.seen(stream)
	p := ratchet.Publication{Topic: t.name, Position: ratchet.Position{Epoch: epoch, Offset: seq}, Message: decode(m)}
	if stream != o.stream {
		if !o.exact {
			o.stream, o.last, o.first = stream, seq, seq
			t.deliver(p)
			return true
		}
		o.stream, o.last = stream, 0 // a stream created after the subscription
	}
	switch {
	case seq <= o.last:
		if !o.exact && seq < o.first {
			t.deliver(p) // sent before the first one received: late, but not lost
		}
		return true // delivered already, read from the stream
	case prev > o.last:
		b.fill(t, o, epoch, prev)
	}
	t.deliver(p)
	o.last = seq
	return true
}

// fill delivers the messages of o's subject after o.last up to upTo, read
// from the stream, and reports those it cannot read any more.
func (b *Broker) fill(t *topic, o *liveOrder, epoch string, upTo uint64) {
	from := max(o.last, 1)
	ctx, cancel := context.WithTimeout(context.Background(), b.o.publishTimeout)
	defer cancel()
	r, err := b.scan(ctx, o.stream, o.subject, from, upTo, math.MaxInt, math.MaxInt)
	if err != nil {
		b.o.Report(slog.LevelError, "live delivery", fmt.Errorf("%w: topic %q, after %s:%d: %w", ErrLiveGap, t.name, epoch, o.last, err))
		return
	}
	// What came after o.last may have been trimmed with it.
	lost := o.last > 0 && (len(r.msgs) == 0 || r.msgs[0].seq != o.last)
	after := o.last
	for _, m := range r.msgs {
		if m.seq > o.last {
			t.deliver(m.publication(t.name, epoch))
			o.last = m.seq
		}
	}
	if lost || o.last != upTo {
		b.o.Report(slog.LevelError, "live delivery", fmt.Errorf("%w: topic %q: the stream no longer has all of %s:%d to %s:%d", ErrLiveGap, t.name, epoch, after, epoch, upTo))
	}
}

// SubscribePublications implements ratchet.HistoryBroker: Subscribe with
// each message's position, zero for messages published without history.
// The messages of a topic with history are delivered in position order on
// every node (see the package documentation for how). A first
// subscription of the node to a topic costs one more request once the
// broker knows the history stream.
func (b *Broker) SubscribePublications(ctx context.Context, topic string, deliver func(ratchet.Publication)) (ratchet.Subscription, error) {
	if deliver == nil {
		return nil, errors.New("ratchet/nats: nil deliver function")
	}
	return b.subscribe(ctx, topic, deliver)
}

var _ ratchet.HistoryBroker = (*Broker)(nil)
