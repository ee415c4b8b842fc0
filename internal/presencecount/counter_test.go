package presencecount

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFirstJoinAndLastLeaveOnly(t *testing.T) {
	c := New()
	m := Member{"room", "ann"}
	calls := 0
	touch := func() error { calls++; return nil }
	require.NoError(t, c.Join(m, touch))
	require.NoError(t, c.Join(m, touch))
	assert.Equal(t, 1, calls, "second join stays local")
	require.NoError(t, c.Leave(m, touch))
	assert.Equal(t, 1, calls)
	require.NoError(t, c.Leave(m, touch))
	assert.Equal(t, 2, calls, "last leave reaches the backend")
	require.NoError(t, c.Leave(m, touch))
	assert.Equal(t, 2, calls, "leaving more than joining does nothing")
	assert.Empty(t, c.Members())
}

func TestFailedFirstJoinIsUndone(t *testing.T) {
	c := New()
	m := Member{"room", "bob"}
	boom := errors.New("backend down")
	assert.ErrorIs(t, c.Join(m, func() error { return boom }), boom)
	assert.Empty(t, c.Members())
	calls := 0
	require.NoError(t, c.Join(m, func() error { calls++; return nil }))
	assert.Equal(t, 1, calls, "the next join is a first join again")
}

func TestConcurrentJoinsCountExactly(t *testing.T) {
	c := New()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := Member{"t", string(rune('a' + i%5))}
			_ = c.Join(m, func() error { return nil })
		}()
	}
	wg.Wait()
	assert.Len(t, c.Members(), 5)
	assert.Len(t, c.Reset(), 5)
	assert.Empty(t, c.Members())
}
