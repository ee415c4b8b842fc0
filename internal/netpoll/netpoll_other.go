//go:build !linux

package netpoll

import "syscall"

// Handle is one socket's registration with the poller; there is none on
// this system.
type Handle struct{}

// New returns nil: readiness notification is implemented on Linux only, and
// readers block, one goroutine per connection.
func New(raw syscall.RawConn, wake func()) *Handle { return nil }

// Park reports false: the caller reads on, blocking.
func (h *Handle) Park() bool { return false }

// Wake reports false: nothing is ever parked.
func (h *Handle) Wake() bool { return false }

// Deregister does nothing.
func (h *Handle) Deregister() {}
