// Package examples_test runs the example commands as a user does: built
// with go build, started as processes, reached at the URL they print.
package examples_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet/internal/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every example listens where -addr (or PORT) says and prints the URL it
// really serves once it listens: with port 0, a URL with the port the
// kernel chose, which answers at once.
func TestExamplesListenWhereTold(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./chat", "./echo", "./mount", "./push", "./benchserver")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		check func(t *testing.T, base string)
	}{
		{
			name: "chat", args: []string{"-addr", "127.0.0.1:0"},
			check: func(t *testing.T, base string) {
				body := get(t, base+"/")
				assert.Contains(t, body, "<title>")
			},
		},
		{
			// -addr wins over PORT: this PORT cannot be listened on.
			name: "echo", args: []string{"-addr", "127.0.0.1:0"}, env: []string{"PORT=not-a-port"},
			check: func(t *testing.T, base string) { echoes(t, base+"/echo") },
		},
		{
			name: "mount", args: []string{"-addr", "127.0.0.1:0"},
			check: func(t *testing.T, base string) {
				assert.Equal(t, "ok\n", get(t, base+"/healthz"))
				echoes(t, strings.Replace(base, "http", "ws", 1)+"/ws")
			},
		},
		{
			// Without -addr, PORT sets the port on loopback.
			name: "push", env: []string{"PORT=0"},
			check: func(t *testing.T, base string) {
				assert.True(t, strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasPrefix(base, "http://localhost:"), base)
				assert.Contains(t, get(t, base+"/"), "<title>")
			},
		},
		{
			name: "benchserver", args: []string{"-addr", "127.0.0.1:0"},
			check: func(t *testing.T, base string) { echoes(t, base+"/ws") },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := start(t, filepath.Join(bin, tc.name), tc.args, tc.env)
			assert.False(t, strings.HasSuffix(base, ":0"), "%s: the printed URL has the chosen port, not 0", base)
			tc.check(t, base)
		})
	}
}

// urlPattern finds the base of the first URL an example prints:
// scheme://host:port.
var urlPattern = regexp.MustCompile(`(?:https?|wss?)://[^/\s]+`)

// start runs the command and returns the base URL it prints first. The
// process is killed at the end of the test.
func start(t *testing.T, path string, args, env []string) string {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "PORT=")
	cmd.Env = append(cmd.Env, env...)
	found := make(chan string, 1)
	stdout := &urlWriter{found: found}
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{}) // closed once waitErr is set
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	select {
	case base := <-found:
		return base
	case <-exited:
		t.Fatalf("%s exited before printing a URL (%v); stdout %q, stderr %q", path, waitErr, stdout.String(), stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed no URL; stdout %q, stderr %q", path, stdout.String(), stderr.String())
	}
	return ""
}

// get fetches url and returns the body of a 200 answer.
func get(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	return string(body)
}

// echoes checks that a message sent to the WebSocket at url comes back.
func echoes(t *testing.T, url string) {
	t.Helper()
	c := wstest.Dial(t, url, nil)
	wstest.Write(t, c, "hello")
	_, got := wstest.Read(t, c)
	assert.Equal(t, "hello", got)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

// urlWriter keeps what a process prints and sends the first URL base of a
// complete line on found.
type urlWriter struct {
	found chan<- string
	mu    sync.Mutex
	buf   bytes.Buffer
	sent  bool
}

func (w *urlWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent {
		b := w.buf.Bytes()
		if m := urlPattern.Find(b[:bytes.LastIndexByte(b, '\n')+1]); m != nil {
			w.sent = true
			w.found <- string(m)
		}
	}
	return len(p), nil
}

func (w *urlWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// syncBuffer is a bytes.Buffer safe to read while the process writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
