package redis

// Crash stops p's heartbeat without removing its entries, as a node that
// dies would.
func Crash(p *Presence) { p.crash() }
