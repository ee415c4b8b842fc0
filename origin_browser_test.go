package ratchet_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/browsertest"
)

// filePage connects to each path of the server at ws://localhost:PORT,
// says hello, and reports in <p id=PATH> what came back or how it closed.
const filePage = `<!doctype html>
<meta charset="utf-8">
<title>ratchet-go: a page opened from a file</title>
<script>
for (const path of ["/websocket", "/files", "/strict"]) {
  const p = document.createElement("p");
  p.id = path;
  document.documentElement.appendChild(p);
  const ws = new WebSocket("ws://localhost:PORT" + path);
  ws.onopen = () => ws.send("Hello, WebSocket!");
  ws.onmessage = e => { p.textContent = "echo: " + e.data; ws.close(); };
  ws.onclose = e => { if (!p.textContent) p.textContent = "closed " + e.code; };
}
</script>
`

// A page opened from a file:// URL, the seed article's own case, sends
// Origin: null. A route allowing "*" takes it, as Ratchet's ['*'] does; a
// list takes it only when it names "null".
func TestOriginNullFromFilePageInBrowser(t *testing.T) {
	tab := browsertest.Start(t)

	origins := make(chan string, 10)
	hello := ratchet.ComponentFuncs{
		Open:    func(c ratchet.Conn) { origins <- c.Request().Header.Get("Origin") },
		Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) },
	}
	app := ratchet.NewApp("localhost", 0)
	app.Route("/websocket", hello, []string{"*"})
	app.Route("/files", hello, []string{"null"})
	app.Route("/strict", hello, []string{"*.example.com"})
	addr := startApp(t, app)

	file := filepath.Join(t.TempDir(), "chat.html")
	require.NoError(t, os.WriteFile(file, []byte(strings.ReplaceAll(filePage, "PORT", port(addr))), 0o644))
	_, err := chromedp.Run(tab, chromedp.Navigate("file://"+file))
	require.NoError(t, err)

	want := map[string]string{
		"/websocket": "echo: Hello, WebSocket!",
		"/files":     "echo: Hello, WebSocket!",
		"/strict":    "closed 1006", // refused with 403: the browser reports 1006
	}
	for path, text := range want {
		got, err := chromedp.Run(tab, chromedp.PollFunction[string](
			`(id) => document.getElementById(id).textContent || false`,
			chromedp.WithPollingArgs(path),
			chromedp.WithPollingInterval(20*time.Millisecond),
			chromedp.WithPollingTimeout(20*time.Second),
		))
		require.NoError(t, err, path)
		assert.Equal(t, text, got, path)
	}
	var seen []string // OnOpen ran before each echo the page got
	for len(origins) > 0 {
		seen = append(seen, <-origins)
	}
	assert.Equal(t, []string{"null", "null"}, seen, "the Origin the browser sent")
}
