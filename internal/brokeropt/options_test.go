package brokeropt

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckReplacesUnusableValues(t *testing.T) {
	o := New("ratchet/test", "p:")
	o.MinBackoff, o.MaxBackoff, o.HealthInterval, o.DialTimeout = -1, 0, 0, -time.Second
	o.Check()
	assert.Equal(t, DefaultMinBackoff, o.MinBackoff)
	assert.Equal(t, DefaultMinBackoff, o.MaxBackoff, "a maximum below the minimum is the minimum")
	assert.Equal(t, DefaultHealthInterval, o.HealthInterval)
	assert.Equal(t, DefaultDialTimeout, o.DialTimeout)
	assert.NotNil(t, o.Logger)
	assert.Equal(t, "p:", o.Prefix)
}

func TestBackoffDoublesUpToTheMaximumWithJitter(t *testing.T) {
	o := Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: 1 * time.Second}
	within := func(n int, d time.Duration) {
		t.Helper()
		for range 100 {
			got := o.Backoff(n)
			lo, hi := time.Duration(float64(d)*(1-backoffJitter)), time.Duration(float64(d)*(1+backoffJitter))
			if got < lo || got > hi {
				t.Fatalf("Backoff(%d) = %v, want %v ±%v%%", n, got, d, backoffJitter*100)
			}
		}
	}
	within(1, 100*time.Millisecond)
	within(2, 200*time.Millisecond)
	within(4, 800*time.Millisecond)
	within(5, time.Second)
	within(1000, time.Second)
}

func TestReportLogsThenCallsOnError(t *testing.T) {
	var buf bytes.Buffer
	var got []error
	o := New("ratchet/test", "")
	o.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	o.OnError = func(err error) {
		assert.Contains(t, buf.String(), "ratchet/test: lost", "logged before OnError")
		got = append(got, err)
	}
	errLost := errors.New("connection reset")
	o.Report(slog.LevelWarn, "lost", errLost, "outage", 1)
	assert.Equal(t, []error{errLost}, got)
	assert.Contains(t, buf.String(), "outage=1")
}

func TestHistoryPolicyFillsZeroFields(t *testing.T) {
	assert.Equal(t, ratchet.HistoryPolicy{Size: ratchet.DefaultHistorySize, TTL: ratchet.DefaultHistoryTTL}, HistoryPolicy(ratchet.HistoryPolicy{}))
	set := ratchet.HistoryPolicy{Size: 3, TTL: time.Second}
	assert.Equal(t, set, HistoryPolicy(set))
}
