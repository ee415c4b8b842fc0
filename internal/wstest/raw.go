//go:build unix

package wstest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Raw is a client on a plain TCP socket that speaks WebSocket frame by
// frame: for tests of peers that misbehave (never read, send bad frames)
// where a real client library would refuse to.
type Raw struct {
	net.Conn
	Header http.Header // of the 101 answer
	br     *bufio.Reader
}

// RawOptions adjust DialRaw.
type RawOptions struct {
	// Header lines added to the upgrade request, each ending in "\r\n".
	Header string
	// RecvBuffer, if set, is the socket's receive buffer, fixed before the
	// connection is made: a small one makes a peer that does not read stall
	// the server's writes after a few kilobytes instead of megabytes.
	RecvBuffer int
	// Early is written right after the request, before the answer is read:
	// bytes the server reads ahead with the request.
	Early []byte
}

// DialRaw connects to the ws:// url, sends the upgrade request and reads
// the 101 answer. The socket is closed at the end of the test.
func DialRaw(t testing.TB, url string, o RawOptions) *Raw {
	t.Helper()
	hostPath := strings.TrimPrefix(url, "ws://")
	host, path, _ := strings.Cut(hostPath, "/")
	d := net.Dialer{Timeout: 5 * time.Second}
	if o.RecvBuffer > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RecvBuffer)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	nc, err := d.Dial("tcp", host)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	_, err = fmt.Fprintf(nc, "GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n%s", path, host, Key, o.Header, o.Early)
	require.NoError(t, err)
	br := bufio.NewReader(nc)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.NoError(t, nc.SetReadDeadline(time.Time{}))
	return &Raw{Conn: nc, Header: resp.Header, br: br}
}

// Key is the Sec-WebSocket-Key of DialRaw (RFC 6455 §1.3's example), and
// Accept the Sec-WebSocket-Accept that answers it.
const (
	Key    = "dGhlIHNhbXBsZSBub25jZQ=="
	Accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// Opcodes of RFC 6455 §5.2.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xa
)

// AppendFrame appends one masked client frame to dst (RFC 6455 §5.2); rsv1
// marks a permessage-deflate payload. The mask key is fixed: tests need no
// secrecy, and a fixed key keeps frames reproducible.
func AppendFrame(dst []byte, fin, rsv1 bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	dst = append(dst, b0)
	switch l := len(payload); {
	case l < 126:
		dst = append(dst, 0x80|byte(l))
	case l <= 0xffff:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x80|126), uint16(l))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x80|127), uint64(l))
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	dst = append(dst, key[:]...)
	for i, c := range payload {
		dst = append(dst, c^key[i&3])
	}
	return dst
}

// ClosePayload is the body of a close frame: the code, then the reason.
func ClosePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// WriteFrame sends one whole masked frame.
func (c *Raw) WriteFrame(t testing.TB, opcode byte, payload []byte) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write(AppendFrame(nil, true, false, opcode, payload))
	require.NoError(t, err)
}

// Frame is one frame from the server.
type Frame struct {
	Fin, RSV1 bool
	Opcode    byte
	Payload   []byte
}

// CloseCode is the code of a close frame, 1005 when it has none.
func (f Frame) CloseCode() int {
	if len(f.Payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(f.Payload))
}

// ReadFrame reads one frame, waiting at most 10 s. Server frames are not
// masked.
func (c *Raw) ReadFrame() (Frame, error) {
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return Frame{}, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Fin: hdr[0]&0x80 != 0, RSV1: hdr[0]&0x40 != 0, Opcode: hdr[0] & 0xf}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return Frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return Frame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if hdr[1]&0x80 != 0 {
		return Frame{}, fmt.Errorf("wstest: masked server frame")
	}
	if n > 1<<30 {
		return Frame{}, fmt.Errorf("wstest: frame of %d bytes", n)
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.Payload); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// Peek waits, at most 10 s, until n bytes have arrived, and returns them
// without consuming them.
func (c *Raw) Peek(n int) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	return c.br.Peek(n)
}

// NextFrame reads frames until one whose opcode is not in skip and returns
// it; the test fails on a read error.
func (c *Raw) NextFrame(t testing.TB, skip ...byte) Frame {
	t.Helper()
	for {
		f, err := c.ReadFrame()
		require.NoError(t, err)
		if !slices.Contains(skip, f.Opcode) {
			return f
		}
	}
}

// ExpectClose reads frames until the close frame, skipping the given
// opcodes (any other frame fails the test), answers it as RFC 6455 §5.5.1
// asks, and returns its code.
func (c *Raw) ExpectClose(t testing.TB, skip ...byte) int {
	t.Helper()
	f := c.NextFrame(t, skip...)
	require.Equal(t, byte(OpClose), f.Opcode, "want a close frame, got opcode %d (%d bytes)", f.Opcode, len(f.Payload))
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(AppendFrame(nil, true, false, OpClose, f.Payload[:min(len(f.Payload), 2)]))
	return f.CloseCode()
}
