package redis_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// An App's /readyz answers 503 while its Redis is down and 200 again once
// Redis is back, on a Redis server of the test's own that it kills and
// restarts.
func TestReadyFollowsRedis(t *testing.T) {
	srv := startRedis(t)
	b := newBroker(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()),
		redis.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		redis.WithHealthInterval(100*time.Millisecond), redis.WithDialTimeout(100*time.Millisecond))
	app := ratchet.NewApp("", 0)
	app.Handle("/readyz", app.ReadyHandler(b))
	hs := httptest.NewServer(app)
	t.Cleanup(hs.Close)
	status := func() int {
		resp, err := http.Get(hs.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Fatalf("/readyz with Redis up: %d, want 200", got)
	}
	srv.Kill()
	brokertest.WaitFor(t, "/readyz 503 with Redis down", func() bool { return status() == http.StatusServiceUnavailable })
	if b.Connected() {
		t.Fatal("/readyz said 503 while the broker reports itself connected")
	}
	srv.Start()
	brokertest.WaitFor(t, "/readyz 200 with Redis back", func() bool { return status() == http.StatusOK })
	if !b.Connected() {
		t.Fatal("/readyz said 200 while the broker reports itself down")
	}
}
