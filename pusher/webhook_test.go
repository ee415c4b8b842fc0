package pusher_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/pusher"
)

// hookReceiver is an app's webhook endpoint: it checks each request as
// the server libraries' webhook().isValid() does and keeps the events.
type hookReceiver struct {
	t        *testing.T
	url      string
	mu       sync.Mutex
	events   []map[string]any
	requests int
	fail     int // answer 500 to this many requests first
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		assert.Equal(t, testApp.Key, req.Header.Get("X-Pusher-Key"))
		assert.Equal(t, hmacHex(testApp.Secret, string(body)), req.Header.Get("X-Pusher-Signature"))
		if r.fail > 0 {
			r.fail--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var batch struct {
			TimeMS int64            `json:"time_ms"`
			Events []map[string]any `json:"events"`
		}
		assert.NoError(t, json.Unmarshal(body, &batch))
		assert.Positive(t, batch.TimeMS)
		r.events = append(r.events, batch.Events...)
	}))
	t.Cleanup(hs.Close)
	r.url = hs.URL + "/pusher/webhook"
	return r
}

func (r *hookReceiver) got() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.events...)
}

// wait waits until n events have arrived.
func (r *hookReceiver) wait(n int) []map[string]any {
	r.t.Helper()
	require.Eventually(r.t, func() bool { return len(r.got()) >= n }, 10*time.Second, time.Millisecond)
	return r.got()
}

func hookApp(r *hookReceiver, grace time.Duration, events ...string) pusher.App {
	a := testApp
	a.Webhooks = []pusher.Webhook{{URL: r.url, Events: events}}
	a.WebhookGrace = grace
	return a
}

func shutdown(t *testing.T, nodes ...*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range nodes {
		require.NoError(t, n.srv.Shutdown(ctx))
	}
}

func ev(name, channel string, kv ...string) map[string]any {
	m := map[string]any{"name": name, "channel": channel}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Cluster-wide events are sent once, by one node, whichever node the
// subscribers are on.
func TestWebhooksAcrossNodes(t *testing.T) {
	r := newHookReceiver(t)
	apps := []pusher.App{hookApp(r, -1)}
	cl := newCluster(t)
	a, b := cl.node(t, apps), cl.node(t, apps)

	onA, onB := connect(t, a, testApp.Key), connect(t, b, testApp.Key)
	onA.join("news", "")
	onB.join("news", "")
	joinPresence(t, onA, "presence-p", "u", "U")
	joinPresence(t, onB, "presence-p", "u", "U") // the same user on the other node
	closeAndWait(t, a, onA)
	closeAndWait(t, b, onB)
	want := []map[string]any{
		ev("channel_occupied", "news"),
		ev("channel_occupied", "presence-p"),
		ev("member_added", "presence-p", "user_id", "u"),
		ev("channel_vacated", "news"),
		ev("member_removed", "presence-p", "user_id", "u"),
		ev("channel_vacated", "presence-p"),
	}
	assert.ElementsMatch(t, want, r.wait(len(want)))
	shutdown(t, a, b)
	assert.ElementsMatch(t, want, r.got(), "nothing twice")
}

// A channel left and joined again within the grace period produces
// nothing; a departure still in its grace is sent at shutdown.
func TestWebhookGrace(t *testing.T) {
	r := newHookReceiver(t)
	n := single(t, []pusher.App{hookApp(r, time.Hour)})
	c := connect(t, n, testApp.Key)
	c.join("news", "")
	r.wait(1)
	c.send("pusher:unsubscribe", "", map[string]string{"channel": "news"})
	c.join("news", "") // a page reload
	joinPresence(t, c, "presence-p", "u", "U")
	c.send("pusher:unsubscribe", "", map[string]string{"channel": "presence-p"})
	joinPresence(t, c, "presence-p", "u", "U")
	c.send("pusher:unsubscribe", "", map[string]string{"channel": "news"})
	c.sync()
	closeAndWait(t, n, c)
	shutdown(t, n)
	assert.ElementsMatch(t, []map[string]any{
		ev("channel_occupied", "news"),
		ev("channel_occupied", "presence-p"),
		ev("member_added", "presence-p", "user_id", "u"),
		ev("channel_vacated", "news"),                      // left for good: sent at shutdown
		ev("member_removed", "presence-p", "user_id", "u"), // closed: left for good
		ev("channel_vacated", "presence-p"),
	}, r.got())
}

func TestWebhookClientEventsAndCacheMiss(t *testing.T) {
	all, some := newHookReceiver(t), newHookReceiver(t)
	app := hookApp(all, -1)
	app.Webhooks = append(app.Webhooks, pusher.Webhook{URL: some.url, Events: []string{pusher.WebhookClientEvent}})
	n := single(t, []pusher.App{app})
	c, other := connect(t, n, testApp.Key), connect(t, n, testApp.Key)
	c.join("private-x", "")
	other.join("private-x", "")
	joinPresence(t, c, "presence-y", "42", "Ann")
	c.send("client-a", "private-x", map[string]int{"n": 1})
	c.send("client-b", "presence-y", "text")
	c.join("cache-z", "")
	c.expectOn("pusher:cache_miss", "cache-z")
	c.sync()
	closeAndWait(t, n, c, other)
	shutdown(t, n)
	clientEvents := []map[string]any{
		ev("client_event", "private-x", "event", "client-a", "data", `{"n":1}`, "socket_id", c.socketID),
		ev("client_event", "presence-y", "event", "client-b", "data", "text", "socket_id", c.socketID, "user_id", "42"),
	}
	assert.Equal(t, clientEvents, some.got())
	got := all.got()
	for _, e := range append(clientEvents, ev("cache_miss", "cache-z")) {
		assert.Contains(t, got, e)
	}
}

func TestWebhookRetries(t *testing.T) {
	r := newHookReceiver(t)
	r.fail = 2
	n := single(t, []pusher.App{hookApp(r, -1)}, pusher.WithWebhookRetries(3, time.Millisecond))
	connect(t, n, testApp.Key).join("news", "")
	assert.Equal(t, []map[string]any{ev("channel_occupied", "news")}, r.wait(1))
	r.mu.Lock()
	assert.Equal(t, 3, r.requests)
	r.fail = 1 << 30 // down for good
	r.mu.Unlock()
	connect(t, n, testApp.Key).join("other", "")
	require.Eventually(t, func() bool { b, _ := n.srv.WebhookFailures(); return b == 1 }, 10*time.Second, time.Millisecond)
	r.mu.Lock()
	assert.Equal(t, 6, r.requests, "three tries, then given up")
	r.mu.Unlock()
}
