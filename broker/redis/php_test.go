package redis_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// A PHP script that PUBLISHes into Redis reaches a WebSocket client of an
// App whose Hub uses the Redis broker: examples/push/publish-redis.php.
func TestPHPPublishIntoRedisReachesWebSocket(t *testing.T) {
	addr := redisAddr(t)
	php, err := exec.LookPath("php")
	if err != nil {
		brokertest.SkipOrFail(t, "php not found: apt-get install -y php-cli to run this test")
	}
	prefix := "php-test-" + brokertest.Topic(t) + ":"
	hub := ratchet.NewHub(ratchet.WithBroker(newBroker(t, addr, redis.WithPrefix(prefix))))
	ready := make(chan struct{}, 1)
	ws := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		if err := hub.Subscribe(context.Background(), c, "news"); err != nil {
			t.Error(err)
		}
		ready <- struct{}{}
	}})
	srv := httptest.NewServer(ws)
	defer srv.Close()
	defer ws.Shutdown(context.Background())
	defer hub.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	<-ready

	script, err := filepath.Abs("../../examples/push/publish-redis.php")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, php, script, "news", "hello from PHP via Redis")
	cmd.Env = append(os.Environ(), "RATCHET_REDIS_ADDR="+addr, "RATCHET_REDIS_PREFIX="+prefix)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("php: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "received by 1 node") {
		t.Fatalf("php said %q", out)
	}
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.MessageText || string(b) != "hello from PHP via Redis" {
		t.Fatalf("got %v %q", typ, b)
	}
}
