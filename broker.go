package ratchet

import (
	"context"
	"errors"
	"sync"
)

// Broker carries published messages between the Hubs of several processes,
// so that a message published on any node reaches subscribers on every node.
// Implementations for Redis and NATS live in the subpackages broker/redis and
// broker/nats; MemoryBroker connects Hubs inside one process.
//
// A Hub subscribes to a topic on its Broker only while it has local
// subscribers to that topic, and delivers what the Broker hands it to them.
//
// A Broker that keeps its subscriptions through an outage and re-subscribes
// them when it reconnects, as the Redis and NATS brokers do, should also
// tell whether they are in effect, with a method
//
//	Connected() bool
//
// While it reports false, Hub.Subscribe fails with ErrBrokerUnavailable
// instead of telling a client it is subscribed when messages cannot reach it.
type Broker interface {
	// Publish sends msg to every subscription of topic on every node,
	// including the publishing one. It returns an error, never blocking past
	// ctx, when the message could not be handed to the broker.
	Publish(ctx context.Context, topic string, msg Message) error
	// Subscribe calls deliver for every message published on topic, one at
	// a time and in the order one publisher sent them, until the
	// subscription is closed. deliver must not block for long. It returns
	// once the subscription is in effect (a message published after it
	// returns is delivered), or once it is registered while the broker is
	// down, which Connected then reports (see above).
	//
	// deliver is never handed a text message that is not valid UTF-8, which
	// would make browsers fail the connection: a Broker that receives one
	// from another publisher delivers it as binary (or drops it) and
	// reports it, as the Redis and NATS brokers do (binary, reported to
	// their logger and OnError function with an error wrapping
	// ErrInvalidUTF8).
	Subscribe(ctx context.Context, topic string, deliver func(Message)) (Subscription, error)
	// Close ends every subscription and releases the broker's connections.
	Close() error
}

// brokerHealth is the optional method of a Broker described in its
// documentation.
type brokerHealth interface {
	Connected() bool
}

// Subscription is one topic subscription on a Broker.
type Subscription interface {
	// Unsubscribe stops deliveries; after it returns, deliver is not called
	// again.
	Unsubscribe(ctx context.Context) error
}

// ErrBrokerClosed is returned by a Broker used after Close.
var ErrBrokerClosed = errors.New("ratchet: broker closed")

// ErrBrokerUnavailable is returned by Hub.Subscribe while the Hub's Broker
// has lost its server (see Broker), and wrapped by the outage errors of the
// Redis and NATS brokers.
var ErrBrokerUnavailable = errors.New("ratchet: broker unavailable")

// MemoryBroker is a Broker inside one process: Publish calls every
// subscription's deliver function before it returns. It needs nothing
// installed, and lets several Hubs (say, several Apps in a test) share topics.
// It keeps history (HistoryBroker) in a bounded ring per topic. Publish
// refuses text that is not valid UTF-8 with ErrInvalidUTF8. The zero
// value is ready to use.
type MemoryBroker struct {
	mu      sync.RWMutex
	topics  map[string]map[*memorySub]struct{}
	streams memoryStreams
	closed  bool
}

// NewMemoryBroker returns an empty MemoryBroker.
func NewMemoryBroker() *MemoryBroker { return &MemoryBroker{} }

type memorySub struct {
	b       *MemoryBroker
	topic   string
	mu      sync.Mutex // serialises deliveries, and Unsubscribe with them
	deliver func(Publication)
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(ctx context.Context, topic string, msg Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !msg.validText() {
		return ErrInvalidUTF8
	}
	return b.deliver(Publication{Topic: topic, Message: msg})
}

// PublishHistory implements HistoryBroker.
func (b *MemoryBroker) PublishHistory(ctx context.Context, topic string, msg Message, policy HistoryPolicy) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	if !msg.validText() {
		return Position{}, ErrInvalidUTF8
	}
	var pos Position
	err := b.streams.append(topic, msg, policy.withDefaults(), func(p Publication) error {
		pos = p.Position
		return b.deliver(p) // under the stream's lock: deliveries in position order
	})
	return pos, err
}

// History implements HistoryBroker.
func (b *MemoryBroker) History(ctx context.Context, topic string, since Position, limit int) (HistoryPage, error) {
	if err := ctx.Err(); err != nil {
		return HistoryPage{}, err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return HistoryPage{}, ErrBrokerClosed
	}
	return b.streams.read(topic, since, limit), nil
}

func (b *MemoryBroker) deliver(p Publication) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrBrokerClosed
	}
	subs := make([]*memorySub, 0, len(b.topics[p.Topic]))
	for s := range b.topics[p.Topic] {
		subs = append(subs, s)
	}
	b.mu.RUnlock()
	for _, s := range subs {
		s.mu.Lock()
		if s.deliver != nil {
			s.deliver(p)
		}
		s.mu.Unlock()
	}
	return nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(ctx context.Context, topic string, deliver func(Message)) (Subscription, error) {
	return b.SubscribePublications(ctx, topic, func(p Publication) { deliver(p.Message) })
}

// SubscribePublications implements HistoryBroker.
func (b *MemoryBroker) SubscribePublications(ctx context.Context, topic string, deliver func(Publication)) (Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrBrokerClosed
	}
	if b.topics == nil {
		b.topics = make(map[string]map[*memorySub]struct{})
	}
	if b.topics[topic] == nil {
		b.topics[topic] = make(map[*memorySub]struct{})
	}
	s := &memorySub{b: b, topic: topic, deliver: deliver}
	b.topics[topic][s] = struct{}{}
	return s, nil
}

// Unsubscribe implements Subscription.
func (s *memorySub) Unsubscribe(context.Context) error {
	s.b.mu.Lock()
	delete(s.b.topics[s.topic], s)
	if len(s.b.topics[s.topic]) == 0 {
		delete(s.b.topics, s.topic)
	}
	s.b.mu.Unlock()
	s.mu.Lock()
	s.deliver = nil
	s.mu.Unlock()
	return nil
}

// Close implements Broker. It drops the history too.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.topics = nil
	b.mu.Unlock()
	b.streams.clear()
	return nil
}
