package netpoll

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Handle is one socket's registration with the poller.
type Handle struct {
	raw   syscall.RawConn
	wake  func()
	id    uint64
	state atomic.Int32 // running or parked

	mu     sync.Mutex // held around every epoll_ctl for this socket
	added  bool       // in the epoll set
	closed bool       // Deregister was called: no epoll_ctl any more
}

// New returns a handle for the socket behind raw; wake is run on a new
// goroutine each time a parked socket becomes readable or Wake is called.
// The caller is the socket's reader (the handle starts running). New
// returns nil where readiness notification is not available: the caller
// then reads blocking.
func New(raw syscall.RawConn, wake func()) *Handle {
	if raw == nil || disabled() {
		return nil
	}
	p, err := thePoller()
	if err != nil {
		return nil
	}
	return &Handle{raw: raw, wake: wake, id: p.nextID.Add(1)}
}

// Park hands the socket to the poller: the calling reader must return and
// touch the connection no more when Park reports true. False means the
// socket could not be watched (it is closing): the caller goes on reading,
// blocking.
func (h *Handle) Park() bool {
	h.state.Store(parked)
	h.mu.Lock()
	err := errClosed
	if !h.closed {
		err = h.arm()
	}
	h.mu.Unlock()
	if err != nil && h.state.CompareAndSwap(parked, running) {
		return false
	}
	return true // armed, or someone woke the connection meanwhile: a new reader runs
}

var errClosed = errors.New("netpoll: deregistered")

// arm adds the socket to the epoll set, or re-arms it. h.mu is held.
func (h *Handle) arm() error {
	p, _ := thePoller()
	if !h.added {
		p.add(h)
	}
	var err error
	cerr := h.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
			Fd:     int32(uint32(h.id)),
			Pad:    int32(uint32(h.id >> 32)),
		}
		op := unix.EPOLL_CTL_MOD
		if !h.added {
			op = unix.EPOLL_CTL_ADD
		}
		err = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err == nil {
		h.added = true
	} else if !h.added {
		p.remove(h.id)
	}
	return err
}

// Wake starts a reader on a new goroutine if the socket is parked, and
// reports whether it did. A socket that is not parked has a reader already.
func (h *Handle) Wake() bool {
	if h.state.CompareAndSwap(parked, running) {
		go h.wake()
		return true
	}
	return false
}

// Deregister takes the socket out of the epoll set for good; call it before
// the socket closes. A parked socket stays parked: Wake it after closing the
// socket, so that a reader finds the end.
func (h *Handle) Deregister() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if !h.added {
		return
	}
	p, _ := thePoller()
	// An error means the descriptor is closed already, which took it out
	// of the epoll set.
	_ = h.raw.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.remove(h.id)
}

// poller is the process's epoll set and the goroutine that waits on it.
type poller struct {
	epfd   int
	evfd   int // eventfd that wakes the loop when the last socket leaves
	nextID atomic.Uint64

	mu      sync.Mutex
	handles map[uint64]*Handle
	running bool // a loop goroutine is started; it ends when handles is empty
}

var thePoller = sync.OnceValues(func() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1, Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	return &poller{epfd: epfd, evfd: evfd, handles: make(map[uint64]*Handle)}, nil
})

// evfdID is the id of events from the eventfd.
const evfdID = ^uint64(0)

// add registers h, starting the loop if none runs.
func (p *poller) add(h *Handle) {
	p.mu.Lock()
	p.handles[h.id] = h
	if !p.running {
		p.running = true
		go p.loop()
	}
	p.mu.Unlock()
}

// remove forgets id; the loop ends once no socket is left.
func (p *poller) remove(id uint64) {
	p.mu.Lock()
	delete(p.handles, id)
	last := len(p.handles) == 0 && p.running
	p.mu.Unlock()
	if last {
		var one = [8]byte{1}
		_, _ = unix.Write(p.evfd, one[:]) // little-endian 1; a full counter still wakes it
	}
}

// loop waits for events and wakes their sockets' readers. It is owned by
// the registered sockets: it ends when the last one is removed.
func (p *poller) loop() {
	events := make([]unix.EpollEvent, 256)
	var ready []*Handle
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil && err != unix.EINTR {
			panic("netpoll: epoll_wait: " + err.Error()) // EBADF, EFAULT, EINVAL: a bug here
		}
		ready = ready[:0]
		p.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == evfdID {
				var b [8]byte
				_, _ = unix.Read(p.evfd, b[:])
				continue
			}
			if h := p.handles[id]; h != nil {
				ready = append(ready, h)
			}
		}
		done := len(p.handles) == 0
		if done {
			p.running = false
		}
		p.mu.Unlock()
		for i, h := range ready {
			h.Wake()
			ready[i] = nil
		}
		if done {
			return
		}
	}
}
