//go:build !unix

package wire

import "syscall"

// Elsewhere the socket is never tried directly: EAGAIN sends every read
// and write to the net.Conn's own blocking path.
func sysRead(uintptr, []byte) (int, error)  { return 0, syscall.EAGAIN }
func sysWrite(uintptr, []byte) (int, error) { return 0, syscall.EAGAIN }
