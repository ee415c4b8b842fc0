package ratchet

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// ConnSet is a set of connections safe for concurrent use: the Go form of
// the SplObjectStorage in Ratchet's chat tutorial. Its zero value is empty
// and ready.
//
// Broadcast walks a snapshot slice that is rebuilt only after the set has
// changed, so broadcasting holds no lock while it sends and joins or leaves
// never wait for a broadcast.
type ConnSet struct {
	mu       sync.Mutex
	conns    map[Conn]struct{}
	snapshot []Conn // nil when stale
}

// Add puts c in the set and reports whether it was new.
func (s *ConnSet) Add(c Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = make(map[Conn]struct{})
	}
	if _, ok := s.conns[c]; ok {
		return false
	}
	s.conns[c] = struct{}{}
	s.snapshot = nil
	return true
}

// Remove takes c out of the set and reports whether it was there.
func (s *ConnSet) Remove(c Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return false
	}
	delete(s.conns, c)
	s.snapshot = nil
	return true
}

// Contains reports whether c is in the set.
func (s *ConnSet) Contains(c Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.conns[c]
	return ok
}

// Len returns the number of connections in the set.
func (s *ConnSet) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Conns returns the connections in the set. The slice is shared: do not
// modify it.
func (s *ConnSet) Conns() []Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapshot == nil {
		s.snapshot = make([]Conn, 0, len(s.conns))
		for c := range s.conns {
			s.snapshot = append(s.snapshot, c)
		}
	}
	return s.snapshot
}

// Each calls f for every connection, without holding the set's lock.
func (s *ConnSet) Each(f func(Conn)) {
	for _, c := range s.Conns() {
		f(c)
	}
}

// Broadcast sends msg to every connection in the set but those in except,
// and returns how many it was queued for. The payload is shared, not copied:
// it is encoded as a frame once, and every recipient that is not busy
// writing writes that frame as it is.
// A connection whose queue is full is closed as a slow consumer (its OnError
// is told) and is not counted; the others are not delayed.
//
// A large set is split across GOMAXPROCS goroutines that Broadcast waits
// for (see fanOut). With permessage-deflate the payload is compressed once,
// for every recipient that negotiated it.
func (s *ConnSet) Broadcast(msg Message, except ...Conn) int {
	shared := &sharedPayload{msg: msg}
	return fanOut(s.Conns(), func(part []Conn) int { return sendAll(part, shared, except) })
}

// parallelBroadcastMin is the set size from which a fan-out uses every
// core; below it, starting goroutines costs more than it saves.
const parallelBroadcastMin = 256

// fanOut calls send on conns, split across GOMAXPROCS goroutines that it
// waits for when conns is large, and returns the sum of what send returned.
// Sends to idle connections write inline, so every core takes a share of
// the system calls.
func fanOut(conns []Conn, send func(part []Conn) int) int {
	parts := runtime.GOMAXPROCS(0)
	if len(conns) < parallelBroadcastMin || parts < 2 {
		return send(conns)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	size := (len(conns) + parts - 1) / parts
	for len(conns) > size {
		part := conns[:size]
		conns = conns[size:]
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Add(int64(send(part)))
		}()
	}
	n.Add(int64(send(conns)))
	wg.Wait()
	return int(n.Load())
}

func sendAll(conns []Conn, shared *sharedPayload, except []Conn) int {
	n := 0
	for _, c := range conns {
		if slices.Contains(except, c) {
			continue
		}
		var err error
		if cc, ok := c.(*conn); ok {
			err = cc.send(outMsg{msg: shared.msg, shared: shared})
			cc.observeSend(len(shared.msg.Data), err)
		} else {
			err = c.Send(shared.msg)
		}
		if err == nil {
			n++
		}
	}
	return n
}
