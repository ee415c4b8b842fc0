// Package netpoll lets an idle connection hold no goroutine: a connection's
// reader parks the socket here instead of blocking in a read, and a new
// goroutine runs the reader again once the socket is readable (or when
// another goroutine needs it to run: a close handshake, an abort).
//
// On Linux one process-wide epoll set does it (golang.org/x/sys/unix),
// watched by one goroutine that runs only while at least one socket is
// registered. Each registration is EPOLLONESHOT: an event disarms it, so
// exactly one reader runs at a time, and Park re-arms it. Events carry a
// registration id, never the descriptor, and a socket is deregistered
// before it closes, under the handle's lock that every epoll_ctl on it
// takes, inside RawConn.Control (which keeps the descriptor open): a
// descriptor number reused by a new socket never receives an event or an
// epoll_ctl meant for the old one.
//
// Elsewhere, and with RATCHET_EPOLL=0 in the environment (which the tests
// use to run the portable path), New returns nil and readers block as
// usual, one goroutine per connection.
package netpoll

import (
	"os"
	"sync"
)

// EnvVar is the environment variable that turns readiness notification off
// when set to "0": each connection then keeps a reader goroutine, as on
// systems without epoll.
const EnvVar = "RATCHET_EPOLL"

// disabled reads EnvVar once.
var disabled = sync.OnceValue(func() bool { return os.Getenv(EnvVar) == "0" })

// States of a Handle.
const (
	running int32 = iota // a reader owns the connection
	parked               // nobody reads: the next event or Wake starts one
)
