package nats

// Crash stops p's heartbeat without removing its keys, as a node that dies
// would.
func Crash(p *Presence) { p.crash() }
