package redis_test

import (
	"testing"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestHistoryConformance(t *testing.T) {
	addr := redisAddr(t)
	brokertest.RunHistory(t, func(t *testing.T) ratchet.Broker { return newBroker(t, addr) },
		brokertest.HistoryTraits{Contiguous: true, TopicTTL: true})
}
