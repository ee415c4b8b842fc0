package replay

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCacheIsBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := New(3, 5*time.Minute)
	mac := func(i byte) [sha256.Size]byte { return [sha256.Size]byte{i} }
	ts := now.Unix()
	require.NoError(t, c.Check(mac(1), ts-10, now))
	require.NoError(t, c.Check(mac(2), ts-5, now))
	require.NoError(t, c.Check(mac(3), ts-1, now))
	require.ErrorIs(t, c.Check(mac(2), ts-5, now), ErrReplay)
	// Full: the oldest (ts-10) is forgotten, and the floor refuses ts-10.
	require.NoError(t, c.Check(mac(4), ts, now))
	require.Equal(t, 3, c.Len())
	require.ErrorIs(t, c.Check(mac(1), ts-10, now), ErrStale)
	require.ErrorIs(t, c.Check(mac(9), ts-10, now), ErrStale)
	// Not newer than anything kept: accepted, guarded by the floor.
	require.NoError(t, c.Check(mac(5), ts-7, now))
	require.ErrorIs(t, c.Check(mac(5), ts-7, now), ErrStale)
	require.Equal(t, 3, c.Len())
	// Entries expire with the window.
	later := now.Add(10 * time.Minute)
	require.NoError(t, c.Check(mac(6), later.Unix(), later))
	require.Equal(t, 1, c.Len())
}
