package ratchet

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// memoryStreams is the history of a MemoryBroker: a bounded ring of
// publications per topic. The zero value is ready.
type memoryStreams struct {
	mu        sync.Mutex
	streams   map[string]*memoryStream
	lastSweep time.Time
}

// memoryStream is one topic's ring. mu is held while a publication is
// appended and delivered, so deliveries follow position order.
type memoryStream struct {
	mu     sync.Mutex
	epoch  string
	offset uint64        // of the newest publication
	ring   []Publication // the newest len(ring) publications, oldest at head
	head   int
	last   time.Time // of the newest publish
	ttl    time.Duration
	gone   bool // swept: a publish must take a new stream
}

// sweepEvery is how often publishing drops expired streams of other topics,
// so that topics nobody publishes on again do not hold memory for ever.
const sweepEvery = time.Minute

// newEpoch returns a fresh epoch: random, so that a stream re-created after
// it was lost (expiry, a restart) never reuses the name of an old one.
func newEpoch() string { return strconv.FormatUint(rand.Uint64(), 36) }

func (s *memoryStream) expired(now time.Time) bool {
	return s.ttl > 0 && now.Sub(s.last) > s.ttl
}

// stream returns topic's stream, creating it when create is set.
func (m *memoryStreams) stream(topic string, now time.Time, create bool) *memoryStream {
	m.mu.Lock()
	defer m.mu.Unlock()
	if create && now.Sub(m.lastSweep) > sweepEvery {
		m.lastSweep = now
		for name, s := range m.streams {
			s.mu.Lock()
			if s.expired(now) {
				s.gone = true
				delete(m.streams, name)
			}
			s.mu.Unlock()
		}
	}
	s := m.streams[topic]
	if s == nil && create {
		if m.streams == nil {
			m.streams = make(map[string]*memoryStream)
		}
		s = &memoryStream{}
		m.streams[topic] = s
	}
	return s
}

// append gives msg the next position of topic, keeps it as policy says and
// calls deliver with it, holding the stream's lock.
func (m *memoryStreams) append(topic string, msg Message, policy HistoryPolicy, deliver func(Publication) error) error {
	now := time.Now()
	for {
		s := m.stream(topic, now, true)
		s.mu.Lock()
		if s.gone { // swept between the lookup and the lock
			s.mu.Unlock()
			continue
		}
		defer s.mu.Unlock()
		if s.epoch == "" || s.expired(now) { // a new life: new epoch, empty ring
			s.epoch, s.offset, s.ring, s.head = newEpoch(), 0, nil, 0
		}
		if cap(s.ring) != policy.Size {
			s.resize(policy.Size)
		}
		s.offset++
		s.last, s.ttl = now, policy.TTL
		p := Publication{Topic: topic, Position: Position{Epoch: s.epoch, Offset: s.offset}, Message: msg}
		if len(s.ring) < cap(s.ring) {
			s.ring = append(s.ring, p)
		} else {
			s.ring[s.head] = p
			s.head = (s.head + 1) % len(s.ring)
		}
		return deliver(p)
	}
}

// resize keeps the newest size publications in a ring of capacity size.
func (s *memoryStream) resize(size int) {
	kept := s.ordered()
	if len(kept) > size {
		kept = kept[len(kept)-size:]
	}
	s.ring = append(make([]Publication, 0, size), kept...)
	s.head = 0
}

// ordered returns the kept publications, oldest first, in a new slice.
func (s *memoryStream) ordered() []Publication {
	out := make([]Publication, 0, len(s.ring))
	out = append(out, s.ring[s.head:]...)
	return append(out, s.ring[:s.head]...)
}

// read returns up to limit kept publications of topic after since. A topic
// without a stream gets an empty one, so that its Latest position is one a
// client can resume from: every message published after it follows it.
func (m *memoryStreams) read(topic string, since Position, limit int) HistoryPage {
	now := time.Now()
	for {
		s := m.stream(topic, now, true)
		s.mu.Lock()
		if s.gone {
			s.mu.Unlock()
			continue
		}
		defer s.mu.Unlock()
		lost := false
		if s.epoch == "" || s.expired(now) { // a new, empty life
			s.epoch, s.offset, s.ring, s.head = newEpoch(), 0, nil, 0
			s.last, s.ttl = now, DefaultHistoryTTL
			lost = !since.IsZero()
		}
		page := HistoryPage{Latest: Position{Epoch: s.epoch, Offset: s.offset}, Lost: lost}
		kept := s.ordered()
		first := s.offset - uint64(len(kept)) + 1 // offset of kept[0]
		switch {
		case since.IsZero() || lost:
		case since.Epoch != s.epoch || since.Offset > s.offset || since.Offset+1 < first:
			page.Lost = true
		default:
			kept = kept[since.Offset+1-first:]
		}
		if len(kept) > limit {
			kept = kept[:max(limit, 0)]
		}
		page.Publications = kept
		return page
	}
}

// clear drops every stream.
func (m *memoryStreams) clear() {
	m.mu.Lock()
	for _, s := range m.streams {
		s.mu.Lock()
		s.gone = true
		s.mu.Unlock()
	}
	m.streams = nil
	m.mu.Unlock()
}
