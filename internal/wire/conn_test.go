package wire

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a wrapped server side and the raw client side of a loopback
// TCP connection.
func pair(t *testing.T, timeout time.Duration) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	server, err := l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })
	return Wrap(server, nil, timeout), client
}

// frame is the encoding of a small unmasked server frame.
func frame(opcode byte, payload string) string {
	return string([]byte{0x80 | opcode, byte(len(payload))}) + payload
}

func TestBatchIsOneWriteInOrder(t *testing.T) {
	c, peer := pair(t, time.Second)
	c.Hold()
	for _, s := range []string{"a", "bb", "ccc"} {
		require.NoError(t, c.AppendFrame(1, false, []byte(s)))
	}
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := peer.Read(make([]byte, 1))
	require.Error(t, err, "nothing leaves before Flush")
	require.NoError(t, c.Flush())
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	want := frame(1, "a") + frame(1, "bb") + frame(1, "ccc")
	got := make([]byte, len(want))
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	assert.Equal(t, want, string(got))
}

// A TryFlush the socket cannot take whole keeps the rest, and later writes
// go after it.
func TestTryFlushPartialKeepsOrder(t *testing.T) {
	c, peer := pair(t, 5*time.Second)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16) // 4 MiB: more than loopback buffers take unread
	c.HoldNonBlocking()
	require.NoError(t, c.AppendFrame(2, false, big))
	done, err := c.TryFlush()
	require.NoError(t, err)
	require.False(t, done, "a 4 MiB write to a peer that does not read cannot finish at once")

	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(bufio.NewReader(peer))
		got <- b
	}()
	_, err = c.Write([]byte("tail")) // outside a batch, behind the pending rest
	require.NoError(t, err)
	require.NoError(t, c.Conn.Close())
	b := <-got
	const hdr = 10 // 0x82, 127, 8-byte length
	require.Equal(t, hdr+len(big)+4, len(b))
	assert.True(t, bytes.Equal(big, b[hdr:hdr+len(big)]))
	assert.Equal(t, "tail", string(b[hdr+len(big):]))
}

// A write that blocks on a peer that does not read (a control frame from
// coder/websocket) holds nobody else up: a data frame appended meanwhile is
// left pending by TryFlush, which returns at once, and the bytes reach the
// peer in order once it reads.
func TestBlockedWriteDoesNotBlockTryFlush(t *testing.T) {
	c, peer := pair(t, 0)
	big := bytes.Repeat([]byte{'x'}, 8<<20) // more than the socket buffers hold
	c.HoldNonBlocking()
	require.NoError(t, c.AppendFrame(2, false, big))
	done, err := c.TryFlush()
	require.NoError(t, err)
	require.False(t, done)

	ping := frame(9, "")
	wrote := make(chan error, 1)
	go func() { _, err := c.Write([]byte(ping)); wrote <- err }() // blocks: the peer does not read
	for start := time.Now(); c.wmu.TryLock(); {                   // until the Write holds the socket
		c.wmu.Unlock()
		require.Less(t, time.Since(start), 10*time.Second, "Write never started")
		time.Sleep(time.Millisecond)
	}

	tried := make(chan struct{})
	go func() {
		defer close(tried)
		c.HoldNonBlocking()
		assert.NoError(t, c.AppendFrame(1, false, []byte("after")))
		done, err := c.TryFlush()
		assert.NoError(t, err)
		assert.False(t, done, "the socket is full")
	}()
	select {
	case <-tried:
	case <-time.After(10 * time.Second):
		t.Fatal("TryFlush waited for the blocked write")
	}

	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	require.NoError(t, <-wrote)
	require.NoError(t, c.Flush())
	require.NoError(t, c.Conn.Close())
	b := <-got
	const hdr = 10
	require.Equal(t, hdr+len(big)+len(ping)+len(frame(1, "after")), len(b))
	assert.Equal(t, ping+frame(1, "after"), string(b[hdr+len(big):]), "the data frame appended later goes after the control frame")
}

func TestWriteTimeoutCutsOffStuckPeer(t *testing.T) {
	c, _ := pair(t, 200*time.Millisecond)
	start := time.Now()
	var err error
	for err == nil && time.Since(start) < 10*time.Second {
		_, err = c.Write(make([]byte, 1<<20))
	}
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
}

func TestReplaysPendingBytes(t *testing.T) {
	c, peer := pair(t, time.Second)
	c.pending = []byte("early")
	_, err := peer.Write([]byte("late"))
	require.NoError(t, err)
	got := make([]byte, 9)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "earlylate", string(got))
}

// Non-blocking writes keep working long after the write timeout: an old
// socket deadline must not fail them.
func TestTryFlushAfterTheTimeout(t *testing.T) {
	c, peer := pair(t, 100*time.Millisecond)
	go io.Copy(io.Discard, peer)
	_, err := c.Write([]byte("armed")) // sets a deadline 100 ms ahead
	require.NoError(t, err)
	for range 10 {
		time.Sleep(40 * time.Millisecond)
		c.HoldNonBlocking()
		require.NoError(t, c.AppendFrame(1, false, []byte("inline")))
		done, err := c.TryFlush()
		require.NoError(t, err)
		require.True(t, done)
	}
}

// AppendFrame encodes RFC 6455 server frames for every length class, and no
// data frame follows a close frame.
func TestAppendFrame(t *testing.T) {
	c, peer := pair(t, time.Second)
	sizes := []int{0, 1, 125, 126, 65535, 65536, 70000}
	go func() {
		c.Hold()
		for _, n := range sizes {
			assert.NoError(t, c.AppendFrame(2, false, bytes.Repeat([]byte{byte(n)}, n)))
		}
		assert.NoError(t, c.Flush())
		_, err := c.Write([]byte{finClose, 2, 0x03, 0xe8}) // close 1000, as coder/websocket writes it
		assert.NoError(t, err)
		c.Hold()
		assert.ErrorIs(t, c.AppendFrame(1, false, []byte("late")), net.ErrClosed)
		assert.NoError(t, c.Flush())
		c.Conn.Close()
	}()
	br := bufio.NewReader(peer)
	for _, n := range sizes {
		var hdr [2]byte
		_, err := io.ReadFull(br, hdr[:])
		require.NoError(t, err)
		assert.Equal(t, byte(0x82), hdr[0], "FIN + binary")
		l := int(hdr[1])
		switch l {
		case 126:
			var ext [2]byte
			_, err = io.ReadFull(br, ext[:])
			l = int(ext[0])<<8 | int(ext[1])
		case 127:
			var ext [8]byte
			_, err = io.ReadFull(br, ext[:])
			l = 0
			for _, b := range ext {
				l = l<<8 | int(b)
			}
		}
		require.NoError(t, err)
		require.Equal(t, n, l)
		payload := make([]byte, l)
		_, err = io.ReadFull(br, payload)
		require.NoError(t, err)
		assert.Equal(t, bytes.Repeat([]byte{byte(n)}, n), payload)
	}
	rest, _ := io.ReadAll(br)
	assert.Equal(t, []byte{finClose, 2, 0x03, 0xe8}, rest, "the close frame, and nothing after it")
}

// Input read in bulk reaches a small reader whole and in order.
func TestBulkRead(t *testing.T) {
	c, peer := pair(t, time.Second)
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		for i := 0; i < len(want); i += 50000 {
			peer.Write(want[i:min(i+50000, len(want))])
		}
		peer.Close()
	}()
	got, err := io.ReadAll(bufio.NewReaderSize(c, 1024))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got))
	assert.Nil(t, c.rbuf, "no buffer held once drained")
}

// TryWriteFrame writes a shared frame without keeping it: the caller may
// reuse the memory at once, a partial write keeps only a copy of the rest,
// later frames go after it, and a frame behind pending bytes waits for
// them.
func TestTryWriteFrame(t *testing.T) {
	c, peer := pair(t, 5*time.Second)
	small := AppendHeader(nil, 1, false, 3)
	small = append(small, "abc"...)
	done, err := c.TryWriteFrame(small)
	require.NoError(t, err)
	require.True(t, done, "a small frame to an idle socket goes out at once")
	got := make([]byte, len(small))
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	assert.Equal(t, frame(1, "abc"), string(got))

	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	f := append(AppendHeader(nil, 2, false, len(big)), big...)
	done, err = c.TryWriteFrame(f)
	require.NoError(t, err)
	require.False(t, done, "a 4 MiB write to a peer that does not read cannot finish at once")
	clear(f) // the rest was copied: the caller's frame is free
	done, err = c.TryWriteFrame(small)
	require.NoError(t, err)
	require.False(t, done, "behind pending bytes")

	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(bufio.NewReader(peer))
		read <- b
	}()
	require.NoError(t, c.Flush())
	require.NoError(t, c.Conn.Close())
	b := <-read
	const hdr = 10
	require.Equal(t, hdr+len(big)+len(small), len(b))
	assert.True(t, bytes.Equal(big, b[hdr:hdr+len(big)]), "the part written before clear and the copied rest")
	assert.Equal(t, frame(1, "abc"), string(b[hdr+len(big):]))
}

// After a close frame, TryWriteFrame refuses data like AppendFrame.
func TestTryWriteFrameAfterClose(t *testing.T) {
	c, _ := pair(t, time.Second)
	require.NoError(t, c.AppendFrame(OpClose, false, []byte{3, 232}))
	_, err := c.TryWriteFrame([]byte(frame(1, "x")))
	require.ErrorIs(t, err, net.ErrClosed)
}

// AppendHeader encodes the three length forms of RFC 6455 §5.2.
func TestAppendHeader(t *testing.T) {
	assert.Equal(t, []byte{0x81, 125}, AppendHeader(nil, 1, false, 125))
	assert.Equal(t, []byte{0xc2, 126, 0xff, 0xff}, AppendHeader(nil, 2, true, 0xffff))
	assert.Equal(t, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, AppendHeader(nil, 2, false, 0x10000))
}
