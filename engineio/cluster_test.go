package engineio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/engineio"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// room is the component of a cluster test: it subscribes every session to
// one Hub topic, answers "cN" with "sN", and publishes "pN" to the topic
// as "xN", so that every session on every node receives it.
type room struct {
	hub    *ratchet.Hub
	topic  string
	opened chan ratchet.Conn
	closed chan ratchet.Conn
	mu     sync.Mutex
	got    map[uint64][]string // by Conn.ID
	errs   []error
}

func (r *room) OnOpen(c ratchet.Conn) {
	if err := r.hub.Subscribe(c.Context(), c, r.topic); err != nil {
		r.OnError(c, err)
	}
	_ = c.Send(ratchet.Text("welcome"))
	r.opened <- c
}

func (r *room) OnMessage(c ratchet.Conn, m ratchet.Message) {
	s := string(m.Data)
	r.mu.Lock()
	r.got[c.ID()] = append(r.got[c.ID()], s)
	r.mu.Unlock()
	switch {
	case strings.HasPrefix(s, "c"):
		_ = c.Send(ratchet.Text("s" + s[1:]))
	case strings.HasPrefix(s, "p"):
		if _, err := r.hub.Publish(c.Context(), r.topic, ratchet.Text("x"+s[1:])); err != nil {
			r.OnError(c, err)
		}
	}
}

func (r *room) OnError(c ratchet.Conn, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *room) OnClose(c ratchet.Conn) { r.closed <- c }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// redisBroker returns a Broker on the shared test Redis, under prefix, or
// skips the test (fails it under CI=true) when there is none.
func redisBroker(t *testing.T, prefix string) ratchet.Broker {
	t.Helper()
	addr := brokertest.Addr("RATCHET_REDIS_ADDR", "127.0.0.1:6379")
	if !brokertest.Reachable(addr) {
		brokertest.SkipOrFail(t, "no redis-server at %s: start one or set RATCHET_REDIS_ADDR", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	b, err := redis.New(ctx, client, redis.WithPrefix(prefix), redis.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(); _ = client.Close() })
	return b
}

// clusterNode is one node of a test cluster: an HTTP server with its own
// Handler and Hub on a Broker of its own, on the shared Redis.
type clusterNode struct {
	h    *engineio.Handler
	room *room
	srv  *httptest.Server
	b    ratchet.Broker
}

func startNode(t *testing.T, prefix, topic string, opts ...engineio.Option) *clusterNode {
	t.Helper()
	b := redisBroker(t, prefix)
	hub := ratchet.NewHub(ratchet.WithBroker(b))
	rm := &room{hub: hub, topic: topic, opened: make(chan ratchet.Conn, 16), closed: make(chan ratchet.Conn, 16),
		got: make(map[uint64][]string)}
	h := engineio.NewHandler(rm, append([]engineio.Option{engineio.WithBroker(b)}, opts...)...)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
		_ = hub.Close(ctx)
	})
	return &clusterNode{h: h, room: rm, srv: srv, b: b}
}

// roundRobin is a load balancer with no stickiness: each request goes to
// the next node. Handshakes (no sid) take turns among themselves, so that
// two clients start on two nodes; every other request takes the next node
// of its own turn. It counts the nodes each session's requests reached.
type roundRobin struct {
	nodes      []*url.URL
	handshakes atomic.Uint64
	requests   atomic.Uint64
	mu         sync.Mutex
	reached    map[string]map[int]int // sid → node index → requests
}

func startProxy(t *testing.T, nodes ...*clusterNode) (*roundRobin, string) {
	t.Helper()
	rr := &roundRobin{reached: make(map[string]map[int]int)}
	for _, n := range nodes {
		u, _ := url.Parse(n.srv.URL)
		rr.nodes = append(rr.nodes, u)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	proxy := &httputil.ReverseProxy{Transport: transport, ErrorLog: log.New(io.Discard, "", 0), Rewrite: func(pr *httputil.ProxyRequest) {
		sid := pr.In.URL.Query().Get("sid")
		var i int
		if sid == "" {
			i = int((rr.handshakes.Add(1) - 1) % uint64(len(rr.nodes)))
		} else {
			i = int((rr.requests.Add(1) - 1) % uint64(len(rr.nodes)))
			rr.mu.Lock()
			if rr.reached[sid] == nil {
				rr.reached[sid] = make(map[int]int)
			}
			rr.reached[sid][i]++
			rr.mu.Unlock()
		}
		pr.SetURL(rr.nodes[i])
		pr.Out.Host = pr.In.Host
	}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(func() { srv.Close(); transport.CloseIdleConnections() })
	return rr, srv.URL
}

// Two nodes on Redis behind a round-robin proxy, each session's requests
// alternating between them: two polling-only engine.io-clients, one
// starting on each node, exchange 500 messages each way with the
// component, and 500 from client A reach both clients through the Hub.
// Nothing is lost, duplicated or reordered, and every session was served
// by both nodes (forwarded to its owner over the broker).
func TestClusterRoundRobin(t *testing.T) {
	const n = 500
	prefix, topic := brokertest.Topic(t)+":", "room"
	node1 := startNode(t, prefix, topic, engineio.WithSendQueue(4*n))
	node2 := startNode(t, prefix, topic, engineio.WithSendQueue(4*n))
	rr, proxyURL := startProxy(t, node1, node2)

	pA := start(t, proxyURL, "polling")
	expect(t, pA, event{Event: "open", Transport: "polling"})
	connA := waitConn(t, node1.room.opened, "OnOpen of client A on node 1")
	expect(t, pA, event{Event: "message", Data: "welcome"})
	pB := start(t, proxyURL, "polling")
	expect(t, pB, event{Event: "open", Transport: "polling"})
	connB := waitConn(t, node2.room.opened, "OnOpen of client B on node 2")
	expect(t, pB, event{Event: "message", Data: "welcome"})

	pA.WriteJSON(map[string]any{"burst": n, "from": 0})
	pA.WriteJSON(map[string]any{"burst": n, "from": 0, "prefix": "p"})
	pB.WriteJSON(map[string]any{"burst": n, "from": 0})

	// Each client gets sN (its own replies) and xN (A's through the Hub),
	// each series in order.
	for name, p := range map[string]interface{ NextJSON(any) }{"A": pA, "B": pB} {
		next := map[byte]int{'s': 0, 'x': 0}
		for next['s'] < n || next['x'] < n {
			var e event
			p.NextJSON(&e)
			if e.Event != "message" || e.Data == "" || e.Data[0] != 's' && e.Data[0] != 'x' {
				t.Fatalf("client %s: event %+v", name, e)
			}
			if want := fmt.Sprintf("%c%d", e.Data[0], next[e.Data[0]]); e.Data != want {
				t.Fatalf("client %s received %q, want %q", name, e.Data, want)
			}
			next[e.Data[0]]++
		}
	}
	check := func(rm *room, c ratchet.Conn, want []string) {
		t.Helper()
		rm.mu.Lock()
		defer rm.mu.Unlock()
		if got := rm.got[c.ID()]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("component received %d messages %.200q..., want %d", len(got), got, len(want))
		}
		if len(rm.errs) != 0 {
			t.Fatalf("component errors: %v", rm.errs)
		}
	}
	series := func(prefix string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return s
	}
	check(node1.room, connA, append(series("c"), series("p")...))
	check(node2.room, connB, series("c"))

	rr.mu.Lock()
	if len(rr.reached) != 2 {
		t.Errorf("requests of %d sessions, want 2", len(rr.reached))
	}
	for sid, nodes := range rr.reached {
		if len(nodes) != 2 {
			t.Errorf("session %s: requests reached nodes %v, want both", sid, nodes)
		}
		t.Logf("session %s: requests per node %v", sid, nodes)
	}
	rr.mu.Unlock()

	pA.WriteJSON(map[string]any{"close": true})
	expect(t, pA, event{Event: "close", Reason: "forced close"})
	waitConn(t, node1.room.closed, "OnClose of client A")
	pB.WriteJSON(map[string]any{"close": true})
	expect(t, pB, event{Event: "close", Reason: "forced close"})
	waitConn(t, node2.room.closed, "OnClose of client B")
}

// A node that goes away (its server and its broker connection closed, as
// in a crash) leaves its sessions' requests to the other nodes: they answer
// 502 at once the owner did not accept, naming the node, instead of
// holding the request; and an engine.io-client whose session was there
// closes (and may open a new session), instead of hanging.
func TestClusterNodeGone(t *testing.T) {
	prefix, topic := brokertest.Topic(t)+":", "room"
	ping := engineio.WithPing(time.Second, time.Second) // the dead node's own sessions end soon
	node1 := startNode(t, prefix, topic, ping)
	node2 := startNode(t, prefix, topic, ping)
	_, proxyURL := startProxy(t, node1, node2)

	p := start(t, proxyURL, "polling")
	expect(t, p, event{Event: "open", Transport: "polling"})
	waitConn(t, node1.room.opened, "OnOpen on node 1")
	expect(t, p, event{Event: "message", Data: "welcome"})

	// A session of our own on node 1, to ask node 2 about.
	resp, err := http.Get(node1.srv.URL + "/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var open struct{ Sid string }
	if err := json.Unmarshal(body[1:], &open); err != nil || open.Sid == "" {
		t.Fatalf("handshake %q: %v", body, err)
	}
	waitConn(t, node1.room.opened, "OnOpen of the plain HTTP session")
	owner, _, _ := strings.Cut(open.Sid, ".")

	node1.srv.CloseClientConnections()
	node1.srv.Listener.Close()
	_ = node1.b.Close() // its inbox is gone with its broker

	resp, err = http.Get(node2.srv.URL + "/?EIO=4&transport=polling&sid=" + url.QueryEscape(open.Sid))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "node "+owner+" did not accept") {
		t.Fatalf("poll of a gone node's session: %d %q", resp.StatusCode, body)
	}
	t.Logf("node 2 answered: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))

	for {
		var e event
		p.NextJSON(&e)
		if e.Event == "close" {
			t.Logf("client: %+v", e)
			break
		}
		if e.Event != "error" && e.Event != "message" {
			t.Fatalf("client event %+v", e)
		}
	}
}

// A WebSocket upgrade of a session that lands on another node is refused
// with a 400 saying why, and the session goes on polling; engine.io-clients
// allowed to upgrade, behind the round-robin proxy, keep chatting whether
// their probe landed on the owner (upgraded) or not (still polling).
func TestClusterUpgradeOnAnotherNode(t *testing.T) {
	prefix, topic := brokertest.Topic(t)+":", "room"
	ping := engineio.WithPing(time.Second, time.Second) // the plain HTTP session ends soon
	node1 := startNode(t, prefix, topic, ping)
	node2 := startNode(t, prefix, topic, ping)
	_, proxyURL := startProxy(t, node1, node2)

	resp, err := http.Get(node1.srv.URL + "/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var open struct{ Sid string }
	if err := json.Unmarshal(body[1:], &open); err != nil || open.Sid == "" {
		t.Fatalf("handshake %q: %v", body, err)
	}
	waitConn(t, node1.room.opened, "OnOpen of the plain HTTP session")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := strings.Replace(node2.srv.URL, "http", "ws", 1) + "/?EIO=4&transport=websocket&sid=" + url.QueryEscape(open.Sid)
	c, resp, err := websocket.Dial(ctx, wsURL, nil)
	if err == nil {
		c.CloseNow()
		t.Fatal("a WebSocket upgrade on another node than the session's was accepted")
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "not relayed") {
		t.Fatalf("upgrade on another node: %d %q", resp.StatusCode, body)
	}
	// The session is still there, polling.
	resp, err = http.Get(node2.srv.URL + "/?EIO=4&transport=polling&sid=" + url.QueryEscape(open.Sid))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "4welcome") {
		t.Fatalf("poll after the refused upgrade: %d %q", resp.StatusCode, body)
	}

	for i := range 4 {
		p := start(t, proxyURL, "polling,websocket")
		expect(t, p, event{Event: "open", Transport: "polling"})
		// Handshakes through the proxy take turns: node 1, 2, 1, 2.
		waitConn(t, []*clusterNode{node1, node2}[i%2].room.opened, "OnOpen")
		got, transport := 0, "polling"
		p.WriteJSON(map[string]any{"burst": 50, "from": 0})
		for got < 51 { // welcome, then s0..s49
			var e event
			p.NextJSON(&e)
			switch e.Event {
			case "upgrading", "error":
			case "upgrade":
				transport = e.Transport
			case "message":
				if want := "welcome"; got > 0 {
					want = fmt.Sprintf("s%d", got-1)
					if e.Data != want {
						t.Fatalf("client %d received %q, want %q", i, e.Data, want)
					}
				}
				got++
			default:
				t.Fatalf("client %d: %+v", i, e)
			}
		}
		t.Logf("client %d: all messages, on %s", i, transport)
		p.WriteJSON(map[string]any{"close": true})
		for e := next(p); e.Event != "close"; e = next(p) {
		}
	}
}
