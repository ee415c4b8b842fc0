package pusher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/internal/browsertest"
	"github.com/ratchetgo/ratchet/pusher"
)

// browserPage is the app's page: pusher-js from the pinned package, on the
// transport of the query only, with the server on another origin.
const browserPage = `<!doctype html><meta charset="utf-8"><script src="/pusher.min.js"></script>
<script>
const q = new URLSearchParams(location.search);
window.got = [];
window.requests = [];
const send = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url, ...rest) {
  window.requests.push(new URL(url, location.href).host);
  return send.call(this, method, url, ...rest);
};
const p = new Pusher(q.get("key"), {
  cluster: "mt1", forceTLS: false, disableStats: true,
  wsHost: q.get("host"), wsPort: Number(q.get("port")),
  httpHost: q.get("host"), httpPort: Number(q.get("port")),
  enabledTransports: [q.get("transport")],
  channelAuthorization: { endpoint: "/auth" },
});
window.p = p;
const ch = p.subscribe("private-chat");
window.ch = ch;
ch.bind("news", (d) => got.push("news " + d.n));
ch.bind("client-hi", (d) => got.push("hi from " + d.from));
</script>`

// Headless Chromium on a page of another origin than the server (CORS
// preflights, the origin policy), one tab on xhr_streaming and one on
// xhr_polling: both subscribe to a private channel through the page's auth
// endpoint, get a trigger, and exchange client events; no console error,
// and every request of pusher-js goes to the server's host.
func TestBrowserOverHTTPTransports(t *testing.T) {
	browsertest.Require(t)
	needNode(t) // the pinned pusher-js
	page := http.NewServeMux()
	page.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(browserPage))
	})
	page.HandleFunc("GET /pusher.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(jsDir, "node_modules", "pusher-js", "dist", "web", "pusher.min.js"))
	})
	page.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	page.HandleFunc("POST /auth", func(w http.ResponseWriter, r *http.Request) {
		a, err := testApp.AuthorizeChannel(r.FormValue("socket_id"), r.FormValue("channel_name"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(a)
	})
	ps := httptest.NewServer(page)
	defer ps.Close()
	pageURL, _ := url.Parse(ps.URL)
	pageURL.Host = "localhost:" + pageURL.Port() // another origin than the server's 127.0.0.1

	// The page's origin only; a short session timeout, so that the sessions
	// of the closed browser end soon when the test shuts the server down.
	n := single(t, nil, pusher.WithHTTPTransports(pusher.HTTPTransports{Origins: []string{pageURL.Host}, SessionTimeout: 500 * time.Millisecond}))
	server, _ := url.Parse(n.url)

	tabs := make(map[string]context.Context)
	consoles := make(map[string]*console)
	for _, transport := range []string{"xhr_streaming", "xhr_polling"} {
		var tab context.Context
		if len(tabs) == 0 {
			tab = browsertest.Start(t)
		} else { // a tab of the same browser, once it runs
			var cancel context.CancelFunc
			tab, cancel = chromedp.NewContext(tabs["xhr_streaming"])
			defer cancel()
		}
		tabs[transport], consoles[transport] = tab, watch(t, tab)
		u := fmt.Sprintf("%s/?key=%s&host=%s&port=%s&transport=%s", pageURL, testApp.Key, server.Hostname(), server.Port(), transport)
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u)), transport)
	}
	tab1, tab2 := tabs["xhr_streaming"], tabs["xhr_polling"]
	for transport, tab := range tabs {
		require.NoError(t, pollJS(tab, `() => window.ch && window.ch.subscribed && window.p.connection.state === "connected"`), transport)
		name, err := chromedp.Run(tab, chromedp.Evaluate[string](`window.p.connection.connection.transport.name`))
		require.NoError(t, err)
		assert.Equal(t, transport, name)
	}

	require.NoError(t, n.srv.Trigger(context.Background(), []string{"private-chat"}, "news", map[string]int{"n": 1}))
	_, err := chromedp.Run(tab1, chromedp.Evaluate[bool](`window.ch.trigger("client-hi", {from: "streaming"})`))
	require.NoError(t, err)
	_, err = chromedp.Run(tab2, chromedp.Evaluate[bool](`window.ch.trigger("client-hi", {from: "polling"})`))
	require.NoError(t, err)
	want := map[string][]string{"xhr_streaming": {"news 1", "hi from polling"}, "xhr_polling": {"news 1", "hi from streaming"}}
	for transport, tab := range tabs {
		err := pollJS(tab, `(want) => JSON.stringify([...window.got].sort()) === JSON.stringify(want.sort())`, want[transport])
		got, _ := chromedp.Run(tab, chromedp.Evaluate[[]string](`window.got`))
		require.NoError(t, err, "%s got %q", transport, got)
		hosts, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`window.requests`))
		require.NoError(t, err)
		require.NotEmpty(t, hosts)
		for _, h := range hosts {
			if h != server.Host && h != pageURL.Host {
				t.Errorf("%s: a request to %s", transport, h)
			}
		}
		assert.Empty(t, consoles[transport].errors(), transport)
	}
}

// console records what a tab logs.
type console struct {
	mu   sync.Mutex
	errs []string
	done chan struct{}
}

func watch(t *testing.T, tab context.Context) *console {
	c := &console{done: make(chan struct{})}
	listen, stop := context.WithCancel(tab)
	msgs := chromedp.Console(listen)
	go func() {
		defer close(c.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				c.mu.Lock()
				c.errs = append(c.errs, m.String()+" ("+m.URL+")")
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { stop(); <-c.done })
	return c
}

func (c *console) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// pollJS waits until the page function returns true.
func pollJS(tab context.Context, fn string, args ...any) error {
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[bool](fn,
		chromedp.WithPollingArgs(args...),
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(15*time.Second),
	))
	if err != nil {
		return fmt.Errorf("%s: %w", strings.TrimSpace(fn), err)
	}
	return nil
}
