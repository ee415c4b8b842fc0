// Package brokerenv is how the example commands pick their Broker from the
// environment, so that two copies of an example form a cluster:
//
//	RATCHET_BROKER=redis://127.0.0.1:6379/0   Redis (go-redis URL syntax)
//	RATCHET_BROKER=nats://127.0.0.1:4222      NATS with JetStream
//	(unset)                                   in-process: one node only
//
// RATCHET_PREFIX names the application on a shared server (default
// "ratchet"): Redis keys and channels start with it and ":", NATS subjects
// with it and ".".
package brokerenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/broker/redis"
)

// Cluster is the scale-out part of a Hub: its Broker and Presence, nil for
// one node in one process.
type Cluster struct {
	Broker   ratchet.Broker
	Presence ratchet.Presence
	Name     string // what it is, for the log: "in-process", "redis://..."

	closers []io.Closer
}

// HubOptions returns the options that put a Hub on the cluster.
func (c *Cluster) HubOptions() []ratchet.HubOption {
	if c.Broker == nil {
		return nil
	}
	return []ratchet.HubOption{ratchet.WithBroker(c.Broker), ratchet.WithPresence(c.Presence)}
}

// Close releases the connections to the broker's server.
func (c *Cluster) Close() error {
	var first error
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }

// FromEnv connects to the broker RATCHET_BROKER names.
func FromEnv(ctx context.Context) (*Cluster, error) {
	url := os.Getenv("RATCHET_BROKER")
	prefix := os.Getenv("RATCHET_PREFIX")
	if prefix == "" {
		prefix = "ratchet"
	}
	switch {
	case url == "":
		return &Cluster{Name: "in-process (set RATCHET_BROKER for a cluster)"}, nil
	case strings.HasPrefix(url, "redis://"), strings.HasPrefix(url, "rediss://"):
		opts, err := goredis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("RATCHET_BROKER: %w", err)
		}
		client := goredis.NewClient(opts)
		b, err := redis.New(ctx, client, redis.WithPrefix(prefix+":"))
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("RATCHET_BROKER %s: %w", url, err)
		}
		p := redis.NewPresence(b)
		c := &Cluster{Broker: b, Presence: p, Name: url}
		c.closers = []io.Closer{client, b, closeFunc(func() error { return p.Close(context.Background()) })}
		return c, nil
	case strings.HasPrefix(url, "nats://"):
		b, err := nats.Connect(url, nats.WithPrefix(prefix+"."))
		if err != nil {
			return nil, fmt.Errorf("RATCHET_BROKER %s: %w", url, err)
		}
		p, err := nats.NewPresence(ctx, b)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("RATCHET_BROKER %s: presence: %w", url, err)
		}
		c := &Cluster{Broker: b, Presence: p, Name: url}
		c.closers = []io.Closer{b, closeFunc(func() error { return p.Close(context.Background()) })}
		return c, nil
	}
	return nil, fmt.Errorf("RATCHET_BROKER=%q: want redis://host:port/db or nats://host:port", url)
}
