// Package wire holds the net.Conn that ratchet hands to coder/websocket in
// place of the hijacked one. coder/websocket flushes its buffered writer after
// every frame; wrapping the connection lets the library turn a burst of frames
// into one write syscall and enforce write timeouts as socket deadlines
// instead of a timer per write.
package wire

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// maxBatch is the size at which a held batch is written out early, so a
// backlog of large messages never piles up in memory.
const maxBatch = 64 << 10

// maxPooled keeps one huge message from pinning a huge buffer in the pool.
const maxPooled = 256 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Conn is a hijacked connection with write batching and write deadlines.
//
// Between Hold and Flush every Write is appended to a pooled buffer; Flush
// writes it out in one call. Outside a batch, writes go straight to the
// socket. Reads first replay what net/http had read ahead of the hijack.
type Conn struct {
	net.Conn
	pending      []byte // read by net/http before the hijack, not yet consumed
	writeTimeout time.Duration

	mu      sync.Mutex
	holding bool
	batch   *[]byte
}

// Wrap wraps nc. pending is what the server had buffered from nc beyond the
// HTTP request; it is returned by Read before anything else.
func Wrap(nc net.Conn, pending []byte, writeTimeout time.Duration) *Conn {
	return &Conn{Conn: nc, pending: pending, writeTimeout: writeTimeout}
}

// Read reads from the replayed bytes first, then from the socket.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// Write appends p to the batch while one is held, else writes it out.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holding {
		return c.writeLocked(p)
	}
	if c.batch == nil {
		c.batch = batchPool.Get().(*[]byte)
	}
	*c.batch = append(*c.batch, p...)
	if len(*c.batch) >= maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Hold starts a batch: writes are kept until Flush.
func (c *Conn) Hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// Flush ends the batch and writes what it holds in one call.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *Conn) flushLocked() error {
	if c.batch == nil {
		return nil
	}
	b := c.batch
	c.batch = nil
	_, err := c.writeLocked(*b)
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		batchPool.Put(b)
	}
	return err
}

func (c *Conn) writeLocked(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.writeTimeout > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// Hijacked returns the connection wrapped, with buffered readers and writers
// of the given sizes, taking over what brw had already read from the peer.
func Hijacked(nc net.Conn, brw *bufio.ReadWriter, readBuf, writeBuf int, writeTimeout time.Duration) (*Conn, *bufio.ReadWriter) {
	var pending []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pending = append([]byte(nil), b...)
	}
	wc := Wrap(nc, pending, writeTimeout)
	return wc, bufio.NewReadWriter(bufio.NewReaderSize(wc, readBuf), bufio.NewWriterSize(wc, writeBuf))
}
