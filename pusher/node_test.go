package pusher_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/internal/brokertest"
	"github.com/ratchetgo/ratchet/pusher"
)

// jsDir holds the real clients the server is tested with, pinned in
// package.json and package-lock.json: pusher-js, laravel-echo, and pusher
// (the Node server library).
const jsDir = "testdata/js"

// needNode skips the test without node or the pinned packages (fails it
// under CI=true), saying how to get them.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		brokertest.SkipOrFail(t, "no node: install Node.js (apt-get install nodejs npm), then npm ci --prefix pusher/%s", jsDir)
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "pusher-js", "package.json")); err != nil {
		brokertest.SkipOrFail(t, "the pinned clients are not installed: npm ci --prefix pusher/%s", jsDir)
	}
	return node
}

// needRedis returns the address of the shared Redis, or skips.
func needRedis(t *testing.T) string {
	t.Helper()
	addr := brokertest.Addr("RATCHET_REDIS_ADDR", "127.0.0.1:6379")
	if !brokertest.Reachable(addr) {
		brokertest.SkipOrFail(t, "no redis-server at %s: start one (apt-get install redis-server; redis-server) "+
			"or set RATCHET_REDIS_ADDR=host:port to run the Redis integration tests", addr)
	}
	return addr
}

func redisPrefix() string {
	var id [6]byte
	_, _ = rand.Read(id[:])
	return "pusher-test-" + hex.EncodeToString(id[:]) + ":"
}

// runNode runs a scenario script against nodes; it must print "ok".
func runNode(t *testing.T, node, script string, env []string, nodes ...*node) {
	t.Helper()
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		hosts[i] = strings.TrimPrefix(n.url, "http://")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = jsDir
	cmd.Env = append(append(os.Environ(),
		"APP_ID="+testApp.ID, "APP_KEY="+testApp.Key, "APP_SECRET="+testApp.Secret,
		"NODES="+strings.Join(hosts, ",")), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s:\n%s", script, out)
	require.Equal(t, "ok", strings.TrimSpace(lastLine(string(out))), "%s:\n%s", script, out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// laravel-echo joins a presence channel on one node; a user with two tabs
// on the other node (two nodes sharing Redis) makes one joining and, when
// both tabs close, one leaving; here() lists distinct users.
func TestLaravelEchoPresenceAcrossNodes(t *testing.T) {
	node := needNode(t)
	addr, prefix := needRedis(t), redisPrefix()
	a, b := redisNode(t, addr, prefix), redisNode(t, addr, prefix)
	runNode(t, node, "presence.mjs", nil, a, b)
}

// The Node server library (pusher 5.3.4) and pusher-js against two nodes
// sharing Redis: trigger with socket_id, triggerBatch, get, channel
// authorization, user authentication, sendToUser,
// terminateUserConnections, whisper, and webhook().isValid() on the
// server's webhooks.
func TestNodeServerLibrary(t *testing.T) {
	node := needNode(t)
	addr, prefix := needRedis(t), redisPrefix()
	port := brokertest.FreePort(t)
	app := testApp
	app.Webhooks = []pusher.Webhook{{URL: "http://127.0.0.1:" + strconv.Itoa(port) + "/webhook"}}
	app.WebhookGrace = -1
	a := redisNode(t, addr, prefix, app)
	b := redisNode(t, addr, prefix, app)
	runNode(t, node, "sdk.mjs", []string{"WEBHOOK_PORT=" + strconv.Itoa(port)}, a, b)
}
