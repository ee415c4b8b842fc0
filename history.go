package ratchet

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Position is where a message stands in the history of its topic.
//
// Epoch names one life of the topic's stream: it changes when the storage
// lost the stream (it expired, or the storage was wiped), so a position of an
// older life never passes for one of the current life. Offset grows with
// every message published on the topic in that epoch. With MemoryBroker and
// the Redis broker it grows by exactly 1 per message; with NATS it is the
// JetStream sequence, which grows but skips the messages of other topics.
// Either way a Broker tells exactly whether every message after a position is
// still kept (HistoryPage.Lost), so a client is never silently given a gap.
//
// The zero Position means "no position": a message of a topic that keeps no
// history, or a client that has seen nothing yet.
type Position struct {
	Epoch  string
	Offset uint64
}

// MaxEpochLen bounds the epoch of a Position; ParsePosition refuses longer
// ones, so a client cannot make the server keep or compare long strings.
const MaxEpochLen = 32

// ErrBadPosition is returned by ParsePosition for text that is not a
// Position.
var ErrBadPosition = errors.New("ratchet: malformed position")

// IsZero reports whether p is the zero Position.
func (p Position) IsZero() bool { return p == Position{} }

// String returns p as "epoch:offset", the form ParsePosition reads and the
// push endpoint and SSE streams show to clients; "" for the zero Position.
func (p Position) String() string {
	if p.IsZero() {
		return ""
	}
	return p.Epoch + ":" + strconv.FormatUint(p.Offset, 10)
}

// AppendText appends p.String() to b.
func (p Position) AppendText(b []byte) ([]byte, error) {
	if p.IsZero() {
		return b, nil
	}
	b = append(b, p.Epoch...)
	b = append(b, ':')
	return strconv.AppendUint(b, p.Offset, 10), nil
}

// ParsePosition reads a Position written by Position.String. The empty
// string is the zero Position. An epoch is 1 to MaxEpochLen characters of
// [A-Za-z0-9_-].
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	epoch, offset, ok := strings.Cut(s, ":")
	if !ok || !validEpoch(epoch) || offset == "" || offset[0] == '+' {
		return Position{}, ErrBadPosition
	}
	n, err := strconv.ParseUint(offset, 10, 64)
	if err != nil {
		return Position{}, ErrBadPosition
	}
	return Position{Epoch: epoch, Offset: n}, nil
}

func validEpoch(s string) bool {
	if s == "" || len(s) > MaxEpochLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Publication is a message as a topic delivers it: with its topic and, when
// the topic keeps history, its position.
type Publication struct {
	Topic    string
	Position Position // zero when the topic keeps no history
	Message  Message
}

// HistoryPolicy says how much of a topic's stream is kept for recovery.
type HistoryPolicy struct {
	// Size is how many of the newest messages are kept (at least 1).
	Size int
	// TTL is how long a stream is kept after its last publish; then it is
	// dropped, and the next publish starts a new epoch. 0 keeps it as long as
	// the storage does.
	TTL time.Duration
}

// Default history settings, used by WithHistory for a zero HistoryPolicy
// field.
const (
	DefaultHistorySize = 100
	DefaultHistoryTTL  = 10 * time.Minute
)

func (p HistoryPolicy) withDefaults() HistoryPolicy {
	if p.Size <= 0 {
		p.Size = DefaultHistorySize
	}
	if p.TTL <= 0 {
		p.TTL = DefaultHistoryTTL
	}
	return p
}

// HistoryPage is what a Broker or Hub history read returns.
type HistoryPage struct {
	// Publications are the kept messages after the position asked for,
	// oldest first, at most the limit asked for.
	Publications []Publication
	// Latest is the position of the topic's newest message. A client that
	// holds it has everything so far: a later read from it returns every
	// message published after it, or reports Lost. For a topic with no
	// message yet it is the start of an empty stream (offset 0 on the
	// brokers whose offsets are contiguous), never the zero Position.
	Latest Position
	// Lost reports that messages after the position asked for are no longer
	// kept (the stream's epoch changed, or they were trimmed or expired), so
	// Publications do not follow it directly. A client must then reload its
	// state from the source of truth.
	Lost bool
}

// HistoryBroker is a Broker that keeps a stream of recent messages per topic
// (MemoryBroker, and the brokers of broker/redis and broker/nats), so that a
// subscriber that reconnects gets what it missed. A Hub uses it for the
// topics it was given a HistoryPolicy for (WithHistory).
type HistoryBroker interface {
	Broker
	// PublishHistory appends msg to the stream of topic, keeping what policy
	// says, and publishes it like Publish, in one atomic step: every node
	// delivers the topic's messages in position order. It returns msg's
	// position.
	PublishHistory(ctx context.Context, topic string, msg Message, policy HistoryPolicy) (Position, error)
	// SubscribePublications is Subscribe with each message's position (zero
	// for messages published without history).
	SubscribePublications(ctx context.Context, topic string, deliver func(Publication)) (Subscription, error)
	// History returns up to limit kept messages of topic after since (from
	// the oldest kept when since is zero), oldest first.
	History(ctx context.Context, topic string, since Position, limit int) (HistoryPage, error)
}

// ErrNoHistory is returned by Hub.History for a topic that keeps no history,
// and by Hub.PublishPosition when the Hub's Broker keeps none.
var ErrNoHistory = errors.New("ratchet: topic keeps no history")

// historyRule is one WithHistory pattern.
type historyRule struct {
	pattern string
	policy  HistoryPolicy
}

// WithHistory makes the Hub keep the recent messages of the topics that
// match pattern, so that subscribers can recover what they missed
// (Hub.SubscribeWith with Since) and programs can read them (Hub.History).
// pattern is a topic name, or a prefix followed by "*" ("orders.*"; "*"
// matches every topic). The first matching rule wins. Zero fields of policy
// take DefaultHistorySize and DefaultHistoryTTL.
//
// The Hub's Broker must be a HistoryBroker; without a Broker the Hub keeps
// history in a MemoryBroker of its own. Every node of a cluster must be given
// the same rules. Reserved topics (Broadcast, PublishToUser) keep no history.
func WithHistory(pattern string, policy HistoryPolicy) HubOption {
	return func(h *Hub) {
		h.history = append(h.history, historyRule{pattern: pattern, policy: policy.withDefaults()})
	}
}

// HistoryPolicy returns the policy of topic and whether it keeps history.
func (h *Hub) HistoryPolicy(topic string) (HistoryPolicy, bool) {
	if strings.HasPrefix(topic, ReservedTopicPrefix) {
		return HistoryPolicy{}, false
	}
	for _, r := range h.history {
		if prefix, ok := strings.CutSuffix(r.pattern, "*"); ok {
			if strings.HasPrefix(topic, prefix) {
				return r.policy, true
			}
		} else if topic == r.pattern {
			return r.policy, true
		}
	}
	return HistoryPolicy{}, false
}

// History returns up to limit kept messages of topic after since (from the
// oldest kept when since is zero), oldest first. limit <= 0 means the
// topic's HistoryPolicy.Size. It returns ErrNoHistory for a topic that keeps
// none.
func (h *Hub) History(ctx context.Context, topic string, since Position, limit int) (HistoryPage, error) {
	policy, ok := h.HistoryPolicy(topic)
	if !ok || h.historyBroker() == nil {
		return HistoryPage{}, ErrNoHistory
	}
	if limit <= 0 {
		limit = policy.Size
	}
	return h.historyBroker().History(ctx, topic, since, limit)
}

func (h *Hub) historyBroker() HistoryBroker {
	hb, _ := h.broker.(HistoryBroker)
	return hb
}
