package nats_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// Two applications with their own broker prefix on one NATS have their own
// presence bucket.
func TestPresencePrefixes(t *testing.T) {
	u := natsURL(t)
	unique := brokertest.Topic(t)
	brokertest.RunPresencePrefixes(t, func(t *testing.T, prefix string) ratchet.Presence {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b := newBroker(t, u, natsbroker.WithPrefix(prefix))
		p, err := natsbroker.NewPresence(ctx, b, natsbroker.WithPresenceTTL(2*time.Second))
		if err != nil {
			brokertest.SkipOrFail(t, "NATS presence needs JetStream (nats-server -js): %v", err)
		}
		if want := natsbroker.PresenceBucket(prefix); p.Bucket() != want {
			t.Fatalf("bucket %q, want %q", p.Bucket(), want)
		}
		t.Cleanup(func() { deleteBucket(t, u, p.Bucket()) })
		return p
	}, "a-"+unique+".", "b-"+unique+".")
}

// deleteBucket removes a bucket a test made, once its presences are closed.
func deleteBucket(t *testing.T, u, bucket string) {
	nc, err := nats.Connect(u)
	if err != nil {
		t.Error(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("delete bucket %s: %v", bucket, err)
	}
}

func TestPresenceBucket(t *testing.T) {
	for prefix, want := range map[string]string{
		natsbroker.DefaultPrefix: natsbroker.DefaultPresenceBucket,
		"myapp.":                 "myapp-presence",
		"app-a.":                 "app-a-presence",
		"my_app":                 "my_app-presence",
	} {
		if got := natsbroker.PresenceBucket(prefix); got != want {
			t.Errorf("PresenceBucket(%q) = %q, want %q", prefix, got, want)
		}
	}
	// Prefixes that differ only in characters a bucket name cannot hold
	// still get buckets of their own.
	a, b := natsbroker.PresenceBucket("chat.v1."), natsbroker.PresenceBucket("chat_v1.")
	if a == b || !strings.HasPrefix(a, "chat_v1-presence-") {
		t.Errorf("PresenceBucket: %q and %q", a, b)
	}
}
