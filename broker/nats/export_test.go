package nats

import "github.com/nats-io/nats.go"

// Crash stops p's heartbeat without removing its keys, as a node that dies
// would.
func Crash(p *Presence) { p.crash() }

// SetPendingLimit bounds how many received messages of topic b's NATS
// subscription holds for delivery; the client drops those over it.
func SetPendingLimit(b *Broker, topic string, msgs int) error {
	return natsSub(b, topic).SetPendingLimits(msgs, -1)
}

// Pending returns how many received messages of topic b's NATS
// subscription holds, the one being delivered included.
func Pending(b *Broker, topic string) int {
	n, _, _ := natsSub(b, topic).Pending()
	return n
}

// Dropped returns how many messages of topic b's NATS subscription the
// client dropped over the pending limit.
func Dropped(b *Broker, topic string) int {
	n, _ := natsSub(b, topic).Dropped()
	return n
}

func natsSub(b *Broker, topic string) *nats.Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topics[b.Subject(topic)].ns
}
