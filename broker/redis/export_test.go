package redis

// Crash stops p's heartbeat without removing its entries, as a node that
// dies would.
func Crash(p *Presence) { p.crash() }

// StreamKey and MetaKey are the keys of topic's history.
func StreamKey(b *Broker, topic string) string { return b.streamKey(topic) }
func MetaKey(b *Broker, topic string) string   { return b.metaKey(topic) }

// DecodePosition is Decode with the position a payload carries.
var DecodePosition = decode
