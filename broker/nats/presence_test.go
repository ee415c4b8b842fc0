package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	natsbroker "github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestPresence(t *testing.T) {
	u := natsURL(t)
	// One bucket per TTL: the bucket's TTL is that of every node using it.
	brokertest.RunPresence(t,
		func(t *testing.T, ttl time.Duration) ratchet.Presence {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p, err := natsbroker.NewPresence(ctx, newBroker(t, u),
				natsbroker.WithPresenceTTL(ttl), natsbroker.WithPresenceBucket("ratchet-test-presence-"+ttl.String()))
			if err != nil {
				brokertest.SkipOrFail(t, "NATS presence needs JetStream (nats-server -js): %v", err)
			}
			return p
		},
		func(p ratchet.Presence) { natsbroker.Crash(p.(*natsbroker.Presence)) })
}
