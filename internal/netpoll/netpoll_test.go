package netpoll_test

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet/internal/netpoll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	server, err = l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	return raw
}

// newHandle is New, failing the test where the poller should exist.
func newHandle(t *testing.T, raw syscall.RawConn, wake func()) *netpoll.Handle {
	t.Helper()
	h := netpoll.New(raw, wake)
	if h == nil {
		if runtime.GOOS == "linux" && os.Getenv(netpoll.EnvVar) != "0" {
			t.Fatal("no epoll poller on Linux")
		}
		t.Skip("readiness notification is off: not Linux, or " + netpoll.EnvVar + "=0")
	}
	return h
}

// A parked socket wakes its reader once per arrival of input, and only
// after it was parked again.
func TestParkWakesOnInput(t *testing.T) {
	server, client := pair(t)
	woke := make(chan struct{}, 10)
	h := newHandle(t, rawConn(t, server), func() { woke <- struct{}{} })
	require.True(t, h.Park())
	select {
	case <-woke:
		t.Fatal("woken without input")
	case <-time.After(50 * time.Millisecond):
	}
	_, err := client.Write([]byte("x"))
	require.NoError(t, err)
	<-woke
	// Not parked again: more input wakes nobody (one reader at a time).
	_, err = client.Write([]byte("y"))
	require.NoError(t, err)
	select {
	case <-woke:
		t.Fatal("woken while a reader runs")
	case <-time.After(50 * time.Millisecond):
	}
	// The input left unread wakes the next park at once.
	require.True(t, h.Park())
	<-woke
	h.Deregister()
	require.NoError(t, server.Close())
}

// Wake starts a reader for a parked socket only, once.
func TestWake(t *testing.T) {
	server, _ := pair(t)
	woke := make(chan struct{}, 10)
	h := newHandle(t, rawConn(t, server), func() { woke <- struct{}{} })
	require.False(t, h.Wake(), "a new handle's caller is the reader")
	require.True(t, h.Park())
	require.True(t, h.Wake())
	require.False(t, h.Wake())
	<-woke
	h.Deregister()
}

// A deregistered socket cannot be parked, and its descriptor number can be
// reused by a new socket without events crossing over.
func TestDeregisterBeforeClose(t *testing.T) {
	server, client := pair(t)
	woke := make(chan string, 10)
	h := newHandle(t, rawConn(t, server), func() { woke <- "old" })
	require.True(t, h.Park())
	h.Deregister()
	require.False(t, h.Park(), "deregistered: the reader reads on, blocking")
	require.NoError(t, server.Close())
	_, _ = client.Write([]byte("x"))

	server2, client2 := pair(t) // likely the same descriptor number
	h2 := newHandle(t, rawConn(t, server2), func() { woke <- "new" })
	require.True(t, h2.Park())
	_, err := client2.Write([]byte("x"))
	require.NoError(t, err)
	require.Equal(t, "new", <-woke)
	select {
	case w := <-woke:
		t.Fatalf("unexpected wake %q", w)
	case <-time.After(50 * time.Millisecond):
	}
	h2.Deregister()
}
