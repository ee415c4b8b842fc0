package redis

import "github.com/ratchetgo/ratchet"

// Crash stops p's heartbeat without removing its entries, as a node that
// dies would.
func Crash(p *Presence) { p.crash() }

// StreamKey and LatestKey are the keys of topic's history.
func StreamKey(b *Broker, topic string) string { return b.streamKey(topic) }
func LatestKey(b *Broker, topic string) string { return b.latestKey(topic) }

// DecodePosition is Decode with the position a payload carries.
func DecodePosition(payload []byte) (ratchet.Message, ratchet.Position) {
	return decodeChecked(string(payload))
}

// DecodeScriptEnvelope is the parser-free decoder of the publish script's
// envelopes; DecodeEnvelope the general one it must agree with.
var (
	DecodeScriptEnvelope = decodeScriptEnvelope
	DecodeEnvelope       = decodeEnvelope
)
