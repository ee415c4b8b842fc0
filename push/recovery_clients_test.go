package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/browsertest"
	"github.com/ratchetgo/ratchet/internal/jstest"
	"github.com/ratchetgo/ratchet/internal/testenv"
)

// The recovery of issue 9 with real EventSource clients: the npm package
// eventsource under Node.js (testdata/sse-client.mjs) and headless
// Chromium's own. A client is cut off, its reconnect is held while five
// messages are published (from PHP over the HTTP API and from Go, on either
// node), then it gets exactly those five, in order, with their positions as
// ids, or, when history is too short, an event of type reset.

// clientRetry is the reconnection delay the streams suggest.
const clientRetry = 100 * time.Millisecond

// missedCount is how many messages are published while the client is away.
const missedCount = 5

// pushNode is one server of a cluster: an App on a loopback port serving an
// SSE handler at /events and the publish API at /publish on its own Hub.
type pushNode struct {
	hub     *ratchet.Hub
	url     string // http://127.0.0.1:port
	streams cutter // its event streams: cutting one ends it as the server does
}

// startNode starts a node whose Hub keeps size messages of every topic, on
// broker b (nil: the Hub keeps history in a MemoryBroker of its own).
func startNode(t *testing.T, b ratchet.Broker, size int) *pushNode {
	t.Helper()
	opts := []ratchet.HubOption{ratchet.WithHistory("*", ratchet.HistoryPolicy{Size: size})}
	if b != nil {
		opts = append(opts, ratchet.WithBroker(b))
	}
	n := &pushNode{hub: ratchet.NewHub(opts...)}
	app := ratchet.NewApp("", 0)
	app.Handle("GET /events", &cuttableSSE{SSE: NewSSE(n.hub, WithRetry(clientRetry)), streams: &n.streams})
	app.Handle("POST /publish", NewPublishHandler(n.hub, WithSecret([]byte(testSecret))))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n.url = "http://" + l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, app.Shutdown(ctx))
		require.ErrorIs(t, <-served, ratchet.ErrServerClosed)
		require.NoError(t, n.hub.Close(ctx))
	})
	return n
}

// clusterFunc starts the two nodes of a cluster, each with its own Broker
// connection to one shared history, both keeping size messages per topic.
type clusterFunc func(t *testing.T, size int) []*pushNode

// memoryCluster is two nodes in this process on one MemoryBroker.
func memoryCluster(t *testing.T, size int) []*pushNode {
	b := ratchet.NewMemoryBroker()
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return []*pushNode{startNode(t, b, size), startNode(t, b, size)}
}

// redisCluster is two nodes, each with its own connection to the Redis
// server at RATCHET_REDIS_ADDR (default 127.0.0.1:6379), under a key prefix
// of their own.
func redisCluster(t *testing.T, size int) []*pushNode {
	addr := os.Getenv("RATCHET_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		testenv.SkipOrFail(t, "no redis-server at %s (%v): apt-get install redis-server, or set RATCHET_REDIS_ADDR", addr, err)
	} else {
		c.Close()
	}
	prefix := fmt.Sprintf("push-recovery-%d:", time.Now().UnixNano())
	var nodes []*pushNode
	for range 2 {
		client := goredis.NewClient(&goredis.Options{Addr: addr})
		b, err := redis.New(context.Background(), client, redis.WithPrefix(prefix))
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close(); _ = client.Close() })
		nodes = append(nodes, startNode(t, b, size))
	}
	return nodes
}

// singleNode is one node on its Hub's own history.
func singleNode(t *testing.T, size int) []*pushNode {
	return []*pushNode{startNode(t, nil, size)}
}

// cuttableSSE is an SSE handler whose streams the test can end, as the
// server does when it goes away: the stream ends cleanly.
type cuttableSSE struct {
	*SSE    // and its Shutdown, for App.Shutdown
	streams *cutter
}

func (h *cuttableSSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, done := h.streams.track(r)
	defer done()
	h.SSE.ServeHTTP(w, r)
}

// cutter keeps the running requests of a handler so that the test can
// cancel them.
type cutter struct {
	mu      sync.Mutex
	seq     int
	cancels map[int]context.CancelFunc
}

// track returns r with a context that cutAll cancels, and the function to
// call when the request is done.
func (c *cutter) track(r *http.Request) (*http.Request, func()) {
	ctx, cancel := context.WithCancel(r.Context())
	c.mu.Lock()
	if c.cancels == nil {
		c.cancels = make(map[int]context.CancelFunc)
	}
	c.seq++
	id := c.seq
	c.cancels[id] = cancel
	c.mu.Unlock()
	return r.WithContext(ctx), func() {
		c.mu.Lock()
		delete(c.cancels, id)
		c.mu.Unlock()
		cancel()
	}
}

// cutAll cancels every running request and returns how many there were.
func (c *cutter) cutAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cancel := range c.cancels {
		cancel()
	}
	return len(c.cancels)
}

// front is the load balancer before the nodes: it proxies /events to the
// node the test chooses, can drop the connections it proxies, and can hold
// new requests at a gate. It serves the page the browser runs at /page.
type front struct {
	url     string
	proxies []*httputil.ReverseProxy
	target  atomic.Int32 // the node /events requests go to
	streams cutter       // cutting one drops the client's connection

	mu   sync.Mutex
	gate chan struct{} // while not nil, /events requests wait for it to close

	held   chan string // the Last-Event-ID of each request stopped at the gate
	visits chan visit  // each /events request a node answered
}

// visit is an /events request as a node answered it.
type visit struct {
	node        int
	lastEventID string // the request's Last-Event-ID header
	recovery    string // the answer's RecoveryHeader
}

func newFront(t *testing.T, nodes []*pushNode) *front {
	t.Helper()
	f := &front{held: make(chan string, 16), visits: make(chan visit, 64)}
	tr := &http.Transport{DisableKeepAlives: true}
	for i, n := range nodes {
		u, err := url.Parse(n.url)
		require.NoError(t, err)
		p := httputil.NewSingleHostReverseProxy(u)
		p.Transport = tr
		p.FlushInterval = -1
		p.ErrorLog = log.New(io.Discard, "", 0) // cut streams are the point
		p.ModifyResponse = func(res *http.Response) error {
			v := visit{node: i, lastEventID: res.Request.Header.Get("Last-Event-ID"), recovery: res.Header.Get(RecoveryHeader)}
			select {
			case f.visits <- v:
				return nil
			case <-res.Request.Context().Done():
				return res.Request.Context().Err()
			}
		}
		f.proxies = append(f.proxies, p)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", f.serveEvents)
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, recoveryPage)
	})
	srv := httptest.NewServer(mux)
	f.url = srv.URL
	t.Cleanup(func() {
		srv.CloseClientConnections() // ends held and proxied requests alike
		srv.Close()
		tr.CloseIdleConnections()
	})
	return f
}

func (f *front) serveEvents(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case f.held <- r.Header.Get("Last-Event-ID"):
		case <-r.Context().Done():
			return
		}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	r, done := f.streams.track(r)
	defer done()
	f.proxies[f.target.Load()].ServeHTTP(w, r)
}

// hold makes new /events requests wait until release.
func (f *front) hold() {
	f.mu.Lock()
	if f.gate == nil {
		f.gate = make(chan struct{})
	}
	f.mu.Unlock()
}

// release lets the held requests, and new ones, through.
func (f *front) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

// heldRequest waits for a request to stop at the gate and returns its
// Last-Event-ID.
func (f *front) heldRequest(t *testing.T) string {
	t.Helper()
	return receive(t, f.held, "a reconnect held at the gate")
}

// visit waits for the next /events request a node answered.
func (f *front) visit(t *testing.T) visit {
	t.Helper()
	return receive(t, f.visits, "an /events request answered by a node")
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(jstest.LineTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// clientLine is what an EventSource saw, one line per callback: an event
// (message, position, reset, binary) with its lastEventId, or open, or
// error.
// testdata/sse-client.mjs and recoveryPage write the same lines.
type clientLine struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Data    string `json:"data,omitempty"`
	Message string `json:"message,omitempty"`
}

// sseClient is a real EventSource connected to a front's /events.
type sseClient interface {
	next(t *testing.T) clientLine
}

// clientFunc starts an EventSource on topic through f.
type clientFunc func(t *testing.T, f *front, topic string) sseClient

// nodeClient is the npm package eventsource under Node.js.
type nodeClient struct{ p *jstest.Process }

func startNodeClient(t *testing.T, f *front, topic string) sseClient {
	return nodeClient{jstest.Start(t, []string{"eventsource"}, "testdata/sse-client.mjs",
		f.url+"/events?topic="+url.QueryEscape(topic))}
}

func (c nodeClient) next(t *testing.T) clientLine {
	t.Helper()
	var l clientLine
	c.p.NextJSON(&l)
	return l
}

// recoveryPage opens an EventSource on /events with the page's query, and
// keeps what it sees in window.lines, as testdata/sse-client.mjs prints it.
const recoveryPage = `<!doctype html>
<meta charset="utf-8">
<title>SSE recovery</title>
<script>
window.lines = [];
const out = (line) => window.lines.push(line);
const es = new EventSource("/events" + location.search);
es.onopen = () => out({ type: "open" });
es.onerror = () => out({ type: "error" });
for (const type of ["message", "position", "reset", "binary"]) {
  es.addEventListener(type, (e) => out({ type, id: e.lastEventId, data: e.data }));
}
</script>
`

// browserClient is Chromium's EventSource, in a tab of its own.
type browserClient struct {
	tab   context.Context
	seen  int          // lines of window.lines taken so far
	ahead []clientLine // taken but not yet returned
}

// browserClients returns a clientFunc opening each client in a new tab of
// the browser of tab.
func browserClients(browser context.Context) clientFunc {
	return func(t *testing.T, f *front, topic string) sseClient {
		t.Helper()
		tab, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel) // closes the tab, and its EventSource
		page := f.url + "/page?topic=" + url.QueryEscape(topic)
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(page)), "open %s", page)
		return &browserClient{tab: tab}
	}
}

func (c *browserClient) next(t *testing.T) clientLine {
	t.Helper()
	for len(c.ahead) == 0 {
		lines, err := chromedp.Run(c.tab, chromedp.PollFunction[string](
			`(n) => window.lines && window.lines.length > n ? JSON.stringify(window.lines.slice(n)) : null`,
			chromedp.WithPollingArgs(c.seen),
			chromedp.WithPollingInterval(10*time.Millisecond),
			chromedp.WithPollingTimeout(jstest.LineTimeout),
		))
		require.NoError(t, err, "waiting for the page's EventSource")
		require.NoError(t, json.Unmarshal([]byte(lines), &c.ahead))
		c.seen += len(c.ahead)
	}
	l := c.ahead[0]
	c.ahead = c.ahead[1:]
	return l
}

// expect reads the client's next line and checks its type and, for an
// event, its id and data (the message of an error is not checked).
func expect(t *testing.T, c sseClient, want clientLine) {
	t.Helper()
	got := c.next(t)
	got.Message = ""
	require.Equal(t, want, got)
}

// message is the line of a message event.
func message(pos ratchet.Position, data string) clientLine {
	return clientLine{Type: "message", ID: pos.String(), Data: data}
}

// topicEvent is the line of an event of type typ about topic's position
// (position, reset), whose data is {"topic":..,"position":..}.
func topicEvent(t *testing.T, typ, topic string, pos ratchet.Position) clientLine {
	data, err := json.Marshal(struct {
		Topic    string `json:"topic"`
		Position string `json:"position"`
	}{topic, pos.String()})
	require.NoError(t, err)
	return clientLine{Type: typ, ID: pos.String(), Data: string(data)}
}

// phpPublish publishes text on topic with examples/push/publish.php through
// the publish API at base, and returns the position the server answered.
func phpPublish(t *testing.T, php, base, topic, text string) ratchet.Position {
	t.Helper()
	out, errOut, code := runPHP(t, php, base+"/publish", testSecret, topic, text)
	require.Equal(t, 0, code, "stdout %s stderr %s", out, errOut)
	var answer struct {
		Topic    string `json:"topic"`
		Position string `json:"position"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &answer), out)
	require.Equal(t, topic, answer.Topic)
	pos, err := ratchet.ParsePosition(answer.Position)
	require.NoError(t, err, out)
	require.False(t, pos.IsZero(), out)
	return pos
}

// cutBy says who cuts the client off.
type cutBy int

const (
	cutByNode  cutBy = iota // the node ends the stream (as on shutdown)
	cutByFront              // the connection drops (a proxy or the network fails)
)

// recoveryCase is one run of the scenario.
type recoveryCase struct {
	size        int   // history kept per topic
	cut         cutBy // who cuts the client off
	reconnectTo int   // node the client reconnects to
	beforeFirst bool  // cut before the client got any message
}

// runRecovery runs the scenario: the client connects to node 0 and, unless
// beforeFirst, gets one message; it is cut off and its reconnect is held
// while missedCount messages are published, from PHP and from Go, on each
// node in turn; then it reconnects to node reconnectTo and must get exactly
// the missed messages, in order, with their positions as ids (or, when
// history keeps fewer, an event of type reset with the newest position),
// then a live message, with nothing in between.
func runRecovery(t *testing.T, nodes []*pushNode, newClient clientFunc, rc recoveryCase) {
	php := requirePHP(t)
	f := newFront(t, nodes)
	topic := "recovery-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	c := newClient(t, f, topic)
	require.Equal(t, visit{node: 0}, f.visit(t))
	expect(t, c, clientLine{Type: "open"})
	// What the client has: the stream's start, then each message.
	start, err := nodes[0].hub.History(context.Background(), topic, ratchet.Position{}, 0)
	require.NoError(t, err)
	has := start.Latest
	expect(t, c, topicEvent(t, "position", topic, has))
	if !rc.beforeFirst {
		has = publishAt(t, nodes[0].hub, topic, "first")
		expect(t, c, message(has, "first"))
	}

	f.hold()
	if rc.cut == cutByNode {
		require.Equal(t, 1, nodes[0].streams.cutAll(), "streams on node 0")
	} else {
		require.Equal(t, 1, f.streams.cutAll(), "streams through the front")
	}
	expect(t, c, clientLine{Type: "error"})
	lastEventID := f.heldRequest(t)
	require.Equal(t, has.String(), lastEventID, "Last-Event-ID of the reconnect")

	f.target.Store(int32(rc.reconnectTo))
	missed := make([]ratchet.Position, missedCount)
	texts := make([]string, missedCount)
	for i := range missed {
		n := nodes[(i/2)%len(nodes)]
		texts[i] = fmt.Sprintf("missed %d", i+1)
		if i == 2 {
			texts[i] += "\nsecond line, ünïcode ✓" // two data: lines, joined again by the client
		}
		if i%2 == 0 {
			missed[i] = phpPublish(t, php, n.url, topic, texts[i])
		} else {
			missed[i] = publishAt(t, n.hub, topic, texts[i])
		}
		prev := has
		if i > 0 {
			prev = missed[i-1]
		}
		require.Equal(t, prev.Epoch, missed[i].Epoch, "one stream")
		require.Greater(t, missed[i].Offset, prev.Offset, "positions grow")
	}
	latest := missed[missedCount-1]

	f.release()
	recovered := rc.size >= missedCount
	wantRecovery := RecoveryRecovered
	if !recovered {
		wantRecovery = RecoveryReset
	}
	require.Equal(t, visit{node: rc.reconnectTo, lastEventID: lastEventID, recovery: wantRecovery}, f.visit(t))
	expect(t, c, clientLine{Type: "open"})
	if recovered {
		for i, pos := range missed {
			expect(t, c, message(pos, texts[i]))
		}
	} else {
		expect(t, c, topicEvent(t, "reset", topic, latest))
	}
	live := publishAt(t, nodes[rc.reconnectTo].hub, topic, "live")
	expect(t, c, message(live, "live"))
}

// recoveryCases are the scenarios every real client runs.
var recoveryCases = []struct {
	name    string
	cluster clusterFunc
	rc      recoveryCase
}{
	{"same node, stream ended by the server", singleNode, recoveryCase{size: 10, cut: cutByNode}},
	{"same node, connection dropped", singleNode, recoveryCase{size: 10, cut: cutByFront}},
	{"other node", memoryCluster, recoveryCase{size: 10, cut: cutByFront, reconnectTo: 1}},
	{"other node, stream ended by the server", memoryCluster, recoveryCase{size: 10, cut: cutByNode, reconnectTo: 1}},
	{"cut before the first message", singleNode, recoveryCase{size: 10, cut: cutByNode, beforeFirst: true}},
	{"history too short: reset", singleNode, recoveryCase{size: 3, cut: cutByNode}},
	{"history too short on the other node: reset", memoryCluster, recoveryCase{size: 3, cut: cutByFront, reconnectTo: 1}},
	{"other node on Redis", redisCluster, recoveryCase{size: 10, cut: cutByFront, reconnectTo: 1}},
	{"same node on Redis, stream ended by the server", redisCluster, recoveryCase{size: 10, cut: cutByNode}},
	{"history too short on the other node on Redis: reset", redisCluster, recoveryCase{size: 3, cut: cutByNode, reconnectTo: 1}},
}

// TestSSERecoveryNpmEventSource runs the scenarios with the npm package
// eventsource under Node.js.
func TestSSERecoveryNpmEventSource(t *testing.T) {
	jstest.Require(t, "eventsource")
	for _, tc := range recoveryCases {
		t.Run(tc.name, func(t *testing.T) {
			runRecovery(t, tc.cluster(t, tc.rc.size), startNodeClient, tc.rc)
		})
	}
}

// TestSSERecoveryChromium runs the scenarios with headless Chromium's
// EventSource, one tab each.
func TestSSERecoveryChromium(t *testing.T) {
	browser := browsertest.Start(t)
	require.NoError(t, chromedp.Do(browser)) // starts the browser
	for _, tc := range recoveryCases {
		t.Run(tc.name, func(t *testing.T) {
			runRecovery(t, tc.cluster(t, tc.rc.size), browserClients(browser), tc.rc)
		})
	}
}
