//go:build unix

package wire

import "syscall"

// sysRead and sysWrite make one non-blocking attempt on the socket's
// descriptor (from syscall.RawConn), EAGAIN when it is not ready.
func sysRead(fd uintptr, b []byte) (int, error)  { return syscall.Read(int(fd), b) }
func sysWrite(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
