// Package brokeropt holds the options the Redis and NATS brokers share
// (prefix, logger, outage callbacks, reconnection backoff, health interval,
// dial timeout), their defaults and checks, and the reporting of errors to
// the logger and the OnError function.
package brokeropt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ratchetgo/ratchet"
)

// Defaults of the shared options.
const (
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultHealthInterval = 5 * time.Second
	DefaultDialTimeout    = 5 * time.Second
)

// CleanupTimeout bounds a call that undoes or ends a subscription where no
// caller's context applies: after a failed Subscribe, when a presence watch
// stops.
const CleanupTimeout = 5 * time.Second

// Cleanup runs fn with a context bounded by CleanupTimeout.
func Cleanup(fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
	defer cancel()
	return fn(ctx)
}

// backoffJitter is the share of a backoff delay by which it varies either
// way, so that nodes cut off together do not reconnect in step.
const backoffJitter = 0.2

// Options are the options both brokers take. Name prefixes log messages
// ("ratchet/redis").
type Options struct {
	Name           string
	Prefix         string
	Logger         *slog.Logger
	OnError        func(error)
	OnReconnect    func()
	MinBackoff     time.Duration
	MaxBackoff     time.Duration
	HealthInterval time.Duration
	DialTimeout    time.Duration
}

// New returns the options of the broker name with their defaults and the
// given default prefix.
func New(name, prefix string) Options {
	return Options{
		Name:           name,
		Prefix:         prefix,
		MinBackoff:     DefaultMinBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		HealthInterval: DefaultHealthInterval,
		DialTimeout:    DefaultDialTimeout,
	}
}

// Check replaces what options set to unusable values with defaults: no
// logger, durations that are not positive, a maximum backoff below the
// minimum.
func (o *Options) Check() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
}

// Backoff returns how long to wait before reconnection attempt n (from 1):
// MinBackoff, doubled with each attempt up to MaxBackoff, with jitter.
func (o *Options) Backoff(n int) time.Duration {
	d := o.MinBackoff
	for i := 1; i < n && d < o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.MaxBackoff)
	return time.Duration(float64(d) * (1 - backoffJitter + 2*backoffJitter*rand.Float64()))
}

// Report logs msg with err at level, then hands err to the OnError function.
func (o *Options) Report(level slog.Level, msg string, err error, attrs ...any) {
	o.Logger.Log(context.Background(), level, o.Name+": "+msg, append([]any{"error", err}, attrs...)...)
	if o.OnError != nil {
		o.OnError(err)
	}
}

// ReportDelivery reports what went wrong delivering a message that arrived
// on where (a channel, a subject): text that was not UTF-8 (delivered as
// binary: a warning), or a deliver function that panicked (an error).
func (o *Options) ReportDelivery(where string, err error) {
	level := slog.LevelError
	if errors.Is(err, ratchet.ErrInvalidUTF8) {
		level = slog.LevelWarn
	}
	o.Report(level, "delivery", fmt.Errorf("%s: %s: %w", o.Name, where, err))
}

// Reconnected announces the end of an outage that began at down.
func (o *Options) Reconnected(down time.Time, attrs ...any) {
	o.Logger.Info(o.Name+": reconnected", append(attrs, "downtime", time.Since(down).Round(time.Millisecond))...)
	if o.OnReconnect != nil {
		o.OnReconnect()
	}
}

// HistoryPolicy returns p with its zero fields filled as ratchet.WithHistory
// fills them (ratchet.DefaultHistorySize, ratchet.DefaultHistoryTTL), for a
// PublishHistory called without a Hub.
func HistoryPolicy(p ratchet.HistoryPolicy) ratchet.HistoryPolicy {
	if p.Size <= 0 {
		p.Size = ratchet.DefaultHistorySize
	}
	if p.TTL <= 0 {
		p.TTL = ratchet.DefaultHistoryTTL
	}
	return p
}
