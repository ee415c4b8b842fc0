package ratchet

import (
	"context"
	"strconv"
)

// Presence tracks which user identities are connected to a topic across
// every node of a cluster, and notifies joins and leaves. Implementations
// live next to the brokers: broker/redis (a sorted set per topic and a
// pub/sub channel for events) and broker/nats (a JetStream key-value
// bucket).
//
// Each node holds its own entries and keeps them alive with a heartbeat;
// when a node dies its entries expire after a TTL and the users it held
// leave, with leave events, unless another node still holds them.
//
// A user is a member of a topic while at least one node has joined it there.
// Joins on one node are counted: a user with two connections joins twice and
// stays a member until both have left. Events are about the cluster-wide
// membership: a join when a user becomes a member, a leave when it stops
// being one, not one per connection.
//
// A typical component calls Join in OnOpen (or when a connection subscribes
// to a topic), Leave in OnClose, and Watch once per topic to push presence
// changes to its clients. The methods are safe for concurrent use.
type Presence interface {
	// Join records user as present on topic from this node.
	Join(ctx context.Context, topic, user string) error
	// Leave undoes one Join of user on topic from this node. Leaving more
	// often than joining is not an error.
	Leave(ctx context.Context, topic, user string) error
	// Members returns the users present on topic on any node, sorted.
	Members(ctx context.Context, topic string) ([]string, error)
	// Watch calls fn, one event at a time and in order, for every join and
	// leave on topic on any node, until stop is called; after stop returns,
	// fn is not called again, so fn must not call stop itself. Events that
	// happened before Watch returned are not replayed: call Members after
	// Watch to know where to start from.
	Watch(ctx context.Context, topic string, fn func(PresenceEvent)) (stop func(), err error)
	// Close stops the heartbeat and removes this node's entries, so its
	// users leave at once instead of when their entries expire; ctx bounds
	// that removal. Watches end.
	Close(ctx context.Context) error
}

// PresenceKind says whether a PresenceEvent is a join or a leave.
type PresenceKind int

// The kinds of presence events.
const (
	PresenceJoin  PresenceKind = 1 // the user became a member of the topic
	PresenceLeave PresenceKind = 2 // the user stopped being a member
)

// String returns "join" or "leave".
func (k PresenceKind) String() string {
	switch k {
	case PresenceJoin:
		return "join"
	case PresenceLeave:
		return "leave"
	}
	return "PresenceKind(" + strconv.Itoa(int(k)) + ")"
}

// PresenceEvent is one change of a topic's membership.
type PresenceEvent struct {
	Kind  PresenceKind
	Topic string
	User  string
}
