package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet/internal/netpoll"
)

// maxBatch is the size at which a held batch is written out early, so a
// backlog of large messages never piles up in memory.
const maxBatch = 64 << 10

// maxPooled keeps one huge message from pinning a huge buffer in the pool.
const maxPooled = 256 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Conn is a hijacked connection with write batching and write deadlines.
//
// Between Hold and Flush (or TryFlush) every frame is appended to a pooled
// buffer, written out in one call at the end. Bytes always reach the socket
// in the order they were written: a Write outside a batch while bytes of an
// earlier batch are still pending goes after them. Reads first replay what
// net/http had read ahead of the hijack.
//
// Writing to the socket and building a batch take different locks: a write
// that blocks on a peer that does not read (a control frame from
// coder/websocket, a Flush) never holds the lock AppendFrame and TryFlush
// need, so those never wait for it; TryFlush leaves its bytes pending
// instead.
type Conn struct {
	net.Conn
	raw          syscall.RawConn // for non-blocking writes; nil when not a plain socket (TLS)
	pending      []byte          // read by net/http before the hijack, not yet consumed
	writeTimeout time.Duration

	// Read side, used by one goroutine at a time (coder/websocket's lock).
	br         *bufio.Reader   // coder/websocket's reader over this Conn (Hijack)
	poll       *netpoll.Handle // nil: readers block (see Watch)
	busy       bool            // the last read filled the caller's buffer
	rbuf       *[]byte         // pooled bulk-read buffer, nil when drained
	rpos, rend int
	// Atomic, to stay safe if coder/websocket ever reads on another
	// goroutine (its Close does; ratchet calls it only before a connection
	// runs).
	nread     atomic.Int64 // bytes returned by Read
	limit     atomic.Int64 // Read fails once nread reaches it; 0: no limit
	limitHit  atomic.Bool  // Read returned ErrReadLimit
	socketErr atomic.Bool  // a read from the socket failed

	// dmu orders SetReadDeadline against the short deadline of a wait
	// before parking (ParkAfter), which must not lose the caller's.
	dmu       sync.Mutex
	rdeadline time.Time // the caller's read deadline; under dmu

	// wmu is held by whoever writes to the socket, blocking or not: one
	// writer at a time keeps the bytes in order.
	wmu      sync.Mutex
	deadline time.Time // the write deadline armed on the socket; under wmu

	// mu guards the batch; it is never held while a write waits for the
	// socket.
	mu        sync.Mutex
	holding   bool
	noBlock   bool    // the batch is for TryFlush: never flush early
	closeSent bool    // a close frame went into the stream: no more data
	batch     *[]byte // bytes not yet handed to the socket, in order
}

// Wrap wraps nc. pending is what the server had buffered from nc beyond the
// HTTP request; it is returned by Read before anything else.
func Wrap(nc net.Conn, pending []byte, writeTimeout time.Duration) *Conn {
	c := &Conn{Conn: nc, pending: pending, writeTimeout: writeTimeout}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// Watch lets the reader park the connection between messages (Park)
// instead of blocking in a read, so that an idle connection holds no
// goroutine; wake runs on a new goroutine to read again. It reports false
// where that is not available (not Linux, TLS, RATCHET_EPOLL=0): the reader
// then blocks as usual. Call it once, before the reader runs.
func (c *Conn) Watch(wake func()) bool {
	c.poll = netpoll.New(c.raw, wake)
	return c.poll != nil
}

// Park hands the connection to the poller when no input is buffered above
// the socket, and reports whether it did: the reader must then return
// without touching the connection again; wake runs once input arrives or
// Wake is called. False: the reader reads on, blocking (input is buffered,
// or the socket is closing, or Watch was not called).
func (c *Conn) Park() bool { return c.ParkAfter(0) }

// ParkAfter is Park after waiting up to linger for input, with the reader
// goroutine parked in the runtime's poller: a connection that is busy
// (messages keep coming) keeps its reader instead of paying for a park and
// a wake-up (epoll_ctl, the poller's epoll_wait, a new goroutine) per
// burst. No wait while the caller has set a read deadline (a close
// handshake under way).
func (c *Conn) ParkAfter(linger time.Duration) bool {
	if c.poll == nil || len(c.pending) > 0 || c.rbuf != nil || c.br != nil && c.br.Buffered() > 0 {
		return false
	}
	if linger > 0 {
		// Input that came while the last messages were handled is read at
		// once: one read that finds nothing costs less than a park and a
		// wake-up. Without linger (a connection that has handled nothing
		// yet, most often an idle one just opened) that read would find
		// nothing, and the poller reports input already there at once.
		if n, err := c.readBulk(); n > 0 || err != nil {
			return false
		}
		if c.waitInput(linger) {
			return false
		}
	}
	return c.poll.Park()
}

// waitInput waits up to d for input and buffers it; false: none came (or
// the socket ended, which the poller reports at once).
func (c *Conn) waitInput(d time.Duration) bool {
	c.dmu.Lock()
	if !c.rdeadline.IsZero() {
		c.dmu.Unlock()
		return false
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	c.dmu.Unlock()
	buf := readPool.Get().(*[]byte)
	n := 0
	err := c.raw.Read(func(fd uintptr) bool {
		var rerr error
		n, rerr = sysRead(fd, *buf)
		return rerr != syscall.EAGAIN // false: wait for input, or the deadline
	})
	c.dmu.Lock()
	_ = c.Conn.SetReadDeadline(c.rdeadline)
	c.dmu.Unlock()
	if err != nil || n <= 0 {
		readPool.Put(buf)
		return false
	}
	c.rbuf, c.rpos, c.rend = buf, 0, n
	return true
}

// SetReadDeadline sets the socket's read deadline, which a wait before
// parking (ParkAfter) restores after its own.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rdeadline = t
	return c.Conn.SetReadDeadline(t)
}

// Wake starts a reader for a parked connection (see Park), for a goroutine
// that needs one: the close handshake reads the peer's answer. It does
// nothing if a reader is running.
func (c *Conn) Wake() {
	if c.poll != nil {
		c.poll.Wake()
	}
}

// Close closes the socket, taking it out of the poller first (its
// descriptor may be reused at once), and wakes a parked reader, which
// finds the end.
func (c *Conn) Close() error {
	if c.poll == nil {
		return c.Conn.Close()
	}
	c.poll.Deregister()
	err := c.Conn.Close()
	c.poll.Wake()
	return err
}

// ErrReadLimit is returned by Read once the bytes set by LimitRead have been
// read.
var ErrReadLimit = errors.New("wire: read limit reached")

// LimitRead makes Read fail with ErrReadLimit once n more bytes have been
// read; 0 removes the limit. It bounds what one message may take on the
// wire, which coder/websocket's read limit (on the payload, after
// inflating) does not: frame headers, empty fragments, control frames
// between fragments, deflate blocks that inflate to nothing.
func (c *Conn) LimitRead(n int64) {
	if n <= 0 {
		c.limit.Store(0)
		return
	}
	c.limit.Store(c.nread.Load() + n)
}

// LimitReached reports whether Read has returned ErrReadLimit. The error
// that coder/websocket returns then may not wrap it: an inflater fed the
// bytes read before it reports corrupt data.
func (c *Conn) LimitReached() bool { return c.limitHit.Load() }

// SocketFailed reports whether a read from the socket failed (the peer
// went away, a deadline passed): errors that coder/websocket returns
// otherwise are about what the peer sent.
func (c *Conn) SocketFailed() bool { return c.socketErr.Load() }

// Read reads from the replayed bytes first, then from the socket, within
// the limit set by LimitRead.
func (c *Conn) Read(p []byte) (int, error) {
	if lim := c.limit.Load(); lim != 0 {
		left := lim - c.nread.Load()
		if left <= 0 {
			c.limitHit.Store(true)
			return 0, ErrReadLimit
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := c.read(p)
	c.nread.Add(int64(n))
	return n, err
}

// read serves replayed and bulk-read bytes, then reads the socket.
//
// The reader above is tiny (16 bytes), to keep idle connections small. A
// read for less than a bulk buffer takes all that the socket holds, without
// blocking, into a pooled 32 KiB buffer, and serves from it; the buffer goes
// back to the pool as soon as it is empty, so an idle connection never
// holds one. Without a poller (Watch) that is done only once a read has
// filled the caller's buffer (more input is probably waiting): an idle
// reader then blocks in a plain read instead of trying first.
func (c *Conn) read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	if c.rbuf != nil {
		return c.readBuffered(p), nil
	}
	if (c.busy || c.poll != nil) && c.raw != nil && len(p) < bulkRead {
		if n, err := c.readBulk(); err != nil {
			return 0, err
		} else if n > 0 {
			return c.readBuffered(p), nil
		}
	}
	n, err := c.Conn.Read(p)
	c.busy = n == len(p)
	if err != nil {
		c.socketErr.Store(true)
	}
	return n, err
}

// bulkRead is the size of the pooled buffer of a busy connection.
const bulkRead = 32 << 10

var readPool = sync.Pool{New: func() any { b := make([]byte, bulkRead); return &b }}

// readBulk reads what the socket holds into a pooled buffer, without
// waiting; 0 means nothing was there.
func (c *Conn) readBulk() (int, error) {
	buf := readPool.Get().(*[]byte)
	var n int
	var rerr error
	if err := c.raw.Read(func(fd uintptr) bool {
		n, rerr = sysRead(fd, *buf)
		return true // one attempt: the blocking read below waits
	}); err != nil {
		readPool.Put(buf)
		c.socketErr.Store(true)
		return 0, err
	}
	if n <= 0 || rerr != nil {
		// nothing there (EAGAIN), the end, or an error: the plain blocking
		// read reports it
		readPool.Put(buf)
		c.busy = false
		return 0, nil
	}
	c.rbuf, c.rpos, c.rend = buf, 0, n
	return n, nil
}

func (c *Conn) readBuffered(p []byte) int {
	n := copy(p, (*c.rbuf)[c.rpos:c.rend])
	c.rpos += n
	if c.rpos == c.rend {
		readPool.Put(c.rbuf)
		c.rbuf = nil
	}
	return n
}

// Write writes p after any pending bytes, blocking until it is on the
// socket or the write timeout passes. coder/websocket writes its frames here
// (see the package documentation); it may close the socket right after a
// close frame, so the frame must be written, not left in a batch.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) > 0 && p[0] == finClose {
		p = checkCloseReason(p)
	}
	c.mu.Lock()
	if len(p) > 0 && p[0] == finClose {
		if c.closeSent {
			// ratchet's close frame went first: this is coder/websocket
			// echoing the peer's answer to it, and must not be sent.
			c.mu.Unlock()
			return len(p), nil
		}
		// After a close frame no data frame of ours may follow.
		c.closeSent = true
	}
	if c.batch == nil && c.wmu.TryLock() {
		// Nothing pending and nobody writing: straight to the socket.
		c.mu.Unlock()
		defer c.wmu.Unlock()
		return c.writeLocked(p)
	}
	c.appendLocked(p, nil)
	c.mu.Unlock()
	if err := c.flush(false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Opcodes of RFC 6455 §5.2 that ratchet writes (data frames use the
// message type, 1 or 2).
const (
	OpClose = 0x8
	OpPing  = 0x9
	OpPong  = 0xa
)

// finClose is the first byte of an unfragmented close frame.
const finClose = 0x80 | OpClose

// invalidReasonClose is the close frame that fails a connection whose peer
// sent a close reason that is not UTF-8.
var invalidReasonClose = append([]byte{finClose, 2 + byte(len(invalidReason)), statusInvalidPayload >> 8, statusInvalidPayload & 0xff}, invalidReason...)

const (
	statusInvalidPayload = 1007 // RFC 6455 §7.4.1: data inconsistent with its type
	invalidReason        = "invalid UTF-8 in close reason"
)

// checkCloseReason returns the close frame f, unless its reason is not
// UTF-8: ratchet's own reasons always are, so f is coder/websocket's echo
// of the peer's close frame, and RFC 6455 §8.1 has the connection failed
// instead, with 1007.
func checkCloseReason(f []byte) []byte {
	if len(f) > 4 && f[1] < 126 && !utf8.Valid(f[4:]) {
		return invalidReasonClose
	}
	return f
}

// AppendFrame adds one unfragmented, unmasked server frame (RFC 6455 §5.2)
// to the held batch: the frame is encoded straight into the batch, with no
// copy through coder/websocket's writer. compressed sets RSV1 for a payload
// from Deflate (RFC 7692). It returns net.ErrClosed once a close frame was
// written, by either side. Outside a batch, or in a batch started by Hold
// that grew past 64 KiB, the bytes are written out here, blocking.
func (c *Conn) AppendFrame(opcode byte, compressed bool, payload []byte) error {
	var buf [MaxHeader]byte
	hdr := AppendHeader(buf[:0], opcode, compressed, len(payload))
	c.mu.Lock()
	if c.closeSent {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.appendLocked(hdr, payload)
	c.closeSent = opcode == OpClose
	early := !c.holding || len(*c.batch) >= maxBatch && !c.noBlock
	c.mu.Unlock()
	if early {
		return c.flush(false)
	}
	return nil
}

// MaxHeader is the longest header of an unmasked frame (RFC 6455 §5.2).
const MaxHeader = 10

// AppendHeader appends the header of an unfragmented, unmasked server frame
// of n payload bytes to dst. compressed sets RSV1 (RFC 7692).
func AppendHeader(dst []byte, opcode byte, compressed bool, n int) []byte {
	b0 := 0x80 | opcode
	if compressed {
		b0 |= 0x40
	}
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
	}
}

// appendLocked adds a and b to the batch.
func (c *Conn) appendLocked(a, b []byte) {
	if c.batch == nil {
		c.batch = batchPool.Get().(*[]byte)
	}
	*c.batch = append(append(*c.batch, a...), b...)
}

// Hold starts a batch: writes are kept until Flush. A batch larger than
// 64 KiB is written out early, blocking.
func (c *Conn) Hold() {
	c.mu.Lock()
	c.holding, c.noBlock = true, false
	c.mu.Unlock()
}

// HoldNonBlocking starts a batch for TryFlush: it is never written out
// early, so building it never blocks.
func (c *Conn) HoldNonBlocking() {
	c.mu.Lock()
	c.holding, c.noBlock = true, true
	c.mu.Unlock()
}

// Flush ends the batch and writes everything pending, blocking until it is
// written or the write timeout passes.
func (c *Conn) Flush() error { return c.flush(true) }

// CanTryFlush reports whether TryFlush can write without blocking (a plain
// socket, not TLS).
func (c *Conn) CanTryFlush() bool { return c.raw != nil }

// TryFlush ends the batch and writes as much of it as the socket takes now,
// without waiting, neither for the socket nor for another write under way.
// It reports whether everything was written; if not, the rest stays pending
// for Flush.
func (c *Conn) TryFlush() (done bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.tryFlushLocked()
}

// tryFlushLocked is TryFlush under mu.
func (c *Conn) tryFlushLocked() (done bool, err error) {
	if c.batch == nil {
		return true, nil
	}
	if c.raw == nil || !c.wmu.TryLock() {
		return false, nil
	}
	defer c.wmu.Unlock()
	b := *c.batch
	n, err := c.writeNowLocked(b)
	if err != nil {
		release(c.batch)
		c.batch = nil
		return false, err
	}
	if n == len(b) {
		release(c.batch)
		c.batch = nil
		return true, nil
	}
	*c.batch = b[:copy(b, b[n:])]
	return false, nil
}

// TryWriteFrame is AppendFrame of one encoded frame (from AppendHeader)
// followed by TryFlush, outside a batch: when nothing is pending and no
// write is under way, frame goes to the socket straight from the caller's
// memory, with no copy into a batch. So one frame encoded once serves every
// recipient of a broadcast. Only what the socket does not take is copied,
// and stays pending for Flush. It returns net.ErrClosed once a close frame
// was written.
func (c *Conn) TryWriteFrame(frame []byte) (done bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if c.closeSent {
		return false, net.ErrClosed
	}
	if c.batch != nil {
		// Behind other bytes: keep the order.
		c.appendLocked(frame, nil)
		return c.tryFlushLocked()
	}
	if c.raw == nil || !c.wmu.TryLock() {
		c.appendLocked(frame, nil)
		return false, nil
	}
	defer c.wmu.Unlock()
	n, err := c.writeNowLocked(frame)
	if err != nil || n == len(frame) {
		return err == nil, err
	}
	c.appendLocked(frame[n:], nil)
	return false, nil
}

// writeNowLocked makes one non-blocking write of b and returns how much the
// socket took (0 when it was full). wmu is held.
func (c *Conn) writeNowLocked(b []byte) (int, error) {
	// A socket deadline in the past fails even this non-blocking write.
	if err := c.armDeadlineLocked(); err != nil {
		return 0, err
	}
	w := rawWriters.Get().(*rawWriter)
	w.b = b
	err := c.raw.Write(w.fn)
	n, werr := w.n, w.err
	*w = rawWriter{fn: w.fn}
	rawWriters.Put(w)
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) {
		n, werr = 0, nil
	}
	return max(n, 0), werr
}

// rawWriter is the callback of one non-blocking write, pooled with its
// bound method value: a closure passed to RawConn.Write escapes, and would
// cost three allocations per write (one per delivery of a broadcast).
type rawWriter struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var rawWriters = sync.Pool{New: func() any {
	w := new(rawWriter)
	w.fn = w.write
	return w
}}

func (w *rawWriter) write(fd uintptr) bool {
	w.n, w.err = sysWrite(fd, w.b)
	return true // one attempt: never wait for the socket
}

// flush writes the pending bytes, blocking, until none are left: bytes
// appended meanwhile go out in the same call. endHold ends the batch. (One
// function for all, and small frames: it runs at the bottom of the writer
// goroutine's stack, which should not have to grow.)
func (c *Conn) flush(endHold bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for {
		c.mu.Lock()
		if endHold {
			c.holding, endHold = false, false
		}
		b := c.batch
		c.batch = nil
		c.mu.Unlock()
		if b == nil {
			return nil
		}
		_, err := c.writeLocked(*b)
		release(b)
		if err != nil {
			return err
		}
	}
}

func release(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		batchPool.Put(b)
	}
}

// writeLocked writes p, under wmu, with the write timeout. The socket
// deadline is moved only when less than half the timeout is left, so a
// write is cut off after between half and all of the timeout without
// touching the timer on every write.
func (c *Conn) writeLocked(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.armDeadlineLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// armDeadlineLocked moves the socket's write deadline a write timeout ahead
// when less than half of one is left. wmu is held.
func (c *Conn) armDeadlineLocked() error {
	if c.writeTimeout <= 0 {
		return nil
	}
	now := time.Now()
	if c.deadline.Sub(now) >= c.writeTimeout/2 {
		return nil
	}
	c.deadline = now.Add(c.writeTimeout)
	return c.Conn.SetWriteDeadline(c.deadline)
}
