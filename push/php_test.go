package push

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// publishPHP is the example script, relative to this package.
const publishPHP = "../examples/push/publish.php"

// requirePHP returns the php binary, or skips the test (fails it when
// CI=true) if php or its curl extension is missing.
func requirePHP(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		msg := what + ": apt-get install -y php-cli php-curl"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	php, err := exec.LookPath("php")
	if err != nil {
		missing("php is not installed")
	}
	if err := exec.Command(php, "-r", `exit(extension_loaded("curl") ? 0 : 1);`).Run(); err != nil {
		missing("php has no curl extension")
	}
	return php
}

// runPHP runs publish.php with args against url and secret, and returns its
// standard output, standard error and exit code.
func runPHP(t *testing.T, php, url, secret string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, append([]string{publishPHP}, args...)...)
	cmd.Env = append(os.Environ(), "RATCHET_PUSH_URL="+url, "RATCHET_PUSH_SECRET="+secret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "running php: %v", err)
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func TestPHPPublishScript(t *testing.T) {
	php := requirePHP(t)
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "topic=news")
	expectJSON(t, c, `{"subscribed":"news"}`)
	alice := s.dial(t, "user=alice")
	sse, _, _ := s.openSSE(t, "topic=news", nil)
	sse.next(t, false)
	s.waitConns(t, 3)
	url := s.url + "/publish"

	out, errOut, code := runPHP(t, php, url, testSecret, "news", "hello from PHP")
	require.Equal(t, 0, code, "stdout %s stderr %s", out, errOut)
	require.JSONEq(t, `{"topic":"news","delivered":2}`, out)
	expectText(t, c, "hello from PHP")
	require.Equal(t, "hello from PHP", sse.event(t).Data)

	// The same message again at once: "id" keeps it from being a replay.
	out, errOut, code = runPHP(t, php, url, testSecret, "news", "hello from PHP")
	require.Equal(t, 0, code, "stdout %s stderr %s", out, errOut)
	expectText(t, c, "hello from PHP")

	out, errOut, code = runPHP(t, php, url, testSecret, "--user", "alice", "héllo\nalice ✓")
	require.Equal(t, 0, code, "stdout %s stderr %s", out, errOut)
	require.JSONEq(t, `{"user":"alice","delivered":1}`, out)
	expectText(t, alice, "héllo\nalice ✓")

	out, errOut, code = runPHP(t, php, url, "wrong secret", "news", "forged")
	require.Equal(t, 1, code, "stdout %s stderr %s", out, errOut)
	require.JSONEq(t, `{"error":"bad_signature","message":"signature does not match"}`, out)
	require.Contains(t, errOut, "401")

	_, errOut, code = runPHP(t, php, url, testSecret, "only-one-arg")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "usage")

	_, errOut, code = runPHP(t, php, "http://127.0.0.1:1/publish", testSecret, "news", "x")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot reach")
}
