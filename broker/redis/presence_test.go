package redis_test

import (
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestPresence(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunPresence(t,
		func(t *testing.T, ttl time.Duration) ratchet.Presence {
			return redis.NewPresence(newBroker(t, addr), redis.WithPresenceTTL(ttl))
		},
		func(p ratchet.Presence) { redis.Crash(p.(*redis.Presence)) })
}
