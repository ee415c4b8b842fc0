package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet/internal/brokertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jsDir holds the pinned pusher-js (npm ci --prefix pusher/testdata/js).
const jsDir = "../../pusher/testdata/js"

// startServer runs the example's server, as main builds it, in-process.
func startServer(t *testing.T, env map[string]string) string {
	t.Helper()
	cfg, err := parseConfig(nil, func(k string) string { return env[k] })
	require.NoError(t, err)
	ctx := context.Background()
	s, err := newServer(ctx, cfg)
	require.NoError(t, err)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(sctx))
		hs.Close()
	})
	return hs.URL
}

func need(t *testing.T, what, install string, ok bool) {
	t.Helper()
	if !ok {
		brokertest.SkipOrFail(t, "%s is missing: %s", what, install)
	}
}

// The PHP script reaches a pusher-js client, on a public channel and on a
// private one it was authorized for by the example's auth endpoint.
func TestPHPTriggerReachesPusherJS(t *testing.T) {
	php, err := exec.LookPath("php")
	need(t, "php", "apt-get install -y php-cli php-curl", err == nil)
	need(t, "php's curl extension", "apt-get install -y php-curl", exec.Command(php, "-r", `exit(extension_loaded("curl") ? 0 : 1);`).Run() == nil)
	node, err := exec.LookPath("node")
	need(t, "node", "apt-get install -y nodejs npm", err == nil)
	_, err = os.Stat(filepath.Join(jsDir, "node_modules", "pusher-js"))
	need(t, "pusher-js", "npm ci --prefix pusher/testdata/js", err == nil)

	env := map[string]string{"PUSHER_APP_ID": "7", "PUSHER_APP_KEY": "test-key", "PUSHER_APP_SECRET": "test-secret"}
	base := startServer(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Over WebSocket, and over each of pusher-js's HTTP transports, which
	// the example serves as its fallback.
	for _, transport := range []string{"ws", "xhr_streaming", "xhr_polling"} {
		t.Run(transport, func(t *testing.T) { phpToPusherJS(ctx, t, php, node, base, transport) })
	}

	// A wrong secret is refused: 401, exit code 1.
	cmd := exec.CommandContext(ctx, php, "trigger.php", "chat", "message", "{}")
	cmd.Env = append(os.Environ(), "PUSHER_HOST="+base, "PUSHER_APP_ID=7", "PUSHER_APP_KEY=test-key", "PUSHER_APP_SECRET=wrong")
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", b)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(b), "401")
}

// phpToPusherJS triggers two events with trigger.php and checks that
// listen.mjs, on transport, gets them.
func phpToPusherJS(ctx context.Context, t *testing.T, php, node, base, transport string) {
	listen := exec.CommandContext(ctx, node, "listen.mjs")
	listen.Dir = jsDir
	listen.Env = append(os.Environ(), "BASE="+base, "KEY=test-key", "CHANNELS=chat,private-room", "COUNT=2", "TRANSPORT="+transport)
	listen.Stderr = os.Stderr
	out, err := listen.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, listen.Start())
	defer listen.Wait()
	defer func() {
		if t.Failed() {
			_ = listen.Process.Kill() // it would wait for events that will not come
		}
	}()
	lines := bufio.NewScanner(out)
	require.True(t, lines.Scan(), "listen.mjs ended early")
	require.Equal(t, "ready", lines.Text())

	// Texts of their own per transport: the server refuses the very same
	// request signed within the same second twice (a replay).
	phpEnv := append(os.Environ(), "PUSHER_HOST="+base, "PUSHER_APP_ID=7", "PUSHER_APP_KEY=test-key", "PUSHER_APP_SECRET=test-secret")
	for _, args := range [][]string{
		{"chat", "message", `{"user":"php","text":"héllo ✓ ` + transport + `"}`},
		{"private-room", "message", `{"user":"php","text":"private ` + transport + `"}`},
	} {
		cmd := exec.CommandContext(ctx, php, append([]string{"trigger.php"}, args...)...)
		cmd.Env = phpEnv
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", b)
		assert.Equal(t, "{}", strings.TrimSpace(string(b)))
	}
	var got []map[string]any
	for lines.Scan() {
		var e map[string]any
		require.NoError(t, json.Unmarshal(lines.Bytes(), &e), lines.Text())
		got = append(got, e)
	}
	_, _ = io.Copy(io.Discard, out)
	assert.Equal(t, []map[string]any{
		{"channel": "chat", "event": "message", "data": map[string]any{"user": "php", "text": "héllo ✓ " + transport}},
		{"channel": "private-room", "event": "message", "data": map[string]any{"user": "php", "text": "private " + transport}},
	}, got)
}
