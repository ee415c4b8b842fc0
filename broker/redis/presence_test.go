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

// Two applications with their own broker prefix on one Redis have their own
// presence.
func TestPresencePrefixes(t *testing.T) {
	addr := redisAddr(t)
	unique := brokertest.Topic(t)
	brokertest.RunPresencePrefixes(t, func(t *testing.T, prefix string) ratchet.Presence {
		return redis.NewPresence(newBroker(t, addr, redis.WithPrefix(prefix)))
	}, "a-"+unique+":", "b-"+unique+":")
}

func TestPresencePrefix(t *testing.T) {
	for prefix, want := range map[string]string{
		redis.DefaultPrefix: redis.DefaultPresencePrefix,
		"myapp:":            "myapp-presence:",
		"myapp":             "myapp@presence:",
		"":                  "@presence:",
	} {
		if got := redis.PresencePrefix(prefix); got != want {
			t.Errorf("PresencePrefix(%q) = %q, want %q", prefix, got, want)
		}
	}
}
