package presencenode

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errClosed = errors.New("closed")

// store is a backend in memory: the entries of one node.
type store struct {
	mu      sync.Mutex
	entries map[Member]bool
	beats   chan []Member
	removed []Member
}

func newStore() *store {
	return &store{entries: make(map[Member]bool), beats: make(chan []Member, 100)}
}

func (s *store) backend(t *testing.T) Backend {
	return Backend{
		Join: func(_ context.Context, m Member) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.entries[m] = true
			return nil
		},
		Leave: func(_ context.Context, m Member) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.entries, m)
			return nil
		},
		Beat: func(ctx context.Context, members []Member) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("a heartbeat without a deadline")
			}
			select {
			case s.beats <- members:
			default:
			}
			return nil
		},
		Remove: func(_ context.Context, members []Member) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.removed = members
			return nil
		},
		BeatFailed: func(err error) { t.Errorf("heartbeat failed: %v", err) },
		Closed:     errClosed,
	}
}

func (s *store) has(m Member) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[m]
}

func TestJoinLeaveHeartbeatClose(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	n := Start(30*time.Millisecond, s.backend(t))
	m := Member{Topic: "room", User: "ann"}
	require.NoError(t, n.Join(ctx, m))
	require.NoError(t, n.Join(ctx, m))
	require.NoError(t, n.Leave(ctx, m))
	assert.True(t, s.has(m), "one join left")

	// The heartbeat refreshes the node's members.
	for beat := range s.beats {
		if len(beat) == 1 && beat[0] == m {
			break
		}
	}

	var ends int
	stop, err := n.Watch(func() { ends++ })
	require.NoError(t, err)
	require.NoError(t, n.Close(ctx))
	assert.Equal(t, 1, ends, "Close stops the watch")
	stop()
	assert.Equal(t, 1, ends, "a watch ends once")
	assert.Equal(t, []Member{m}, s.removed, "Close removes the node's entries")

	require.ErrorIs(t, n.Join(ctx, m), errClosed)
	require.ErrorIs(t, n.Leave(ctx, m), errClosed)
	_, err = n.Watch(func() { ends++ })
	require.ErrorIs(t, err, errClosed)
	assert.Equal(t, 2, ends, "a watch refused after Close is ended")
	require.NoError(t, n.Close(ctx), "a second Close does nothing")
}

func TestCrashRemovesNothing(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	n := Start(time.Hour, s.backend(t))
	m := Member{Topic: "room", User: "bob"}
	require.NoError(t, n.Join(ctx, m))
	n.Crash()
	assert.True(t, s.has(m))
	assert.Nil(t, s.removed)
	require.ErrorIs(t, n.Join(ctx, m), errClosed)
}

func TestOptionsCheck(t *testing.T) {
	o := Options{TTL: time.Millisecond}
	o.Check(time.Minute, time.Second)
	assert.Equal(t, time.Minute, o.TTL)
	assert.Len(t, o.NodeID, 24)
	o2 := Options{TTL: 2 * time.Second, NodeID: "node-1"}
	o2.Check(time.Minute, time.Second)
	assert.Equal(t, Options{TTL: 2 * time.Second, NodeID: "node-1"}, o2)
}
