package pusher_test

import (
	"encoding/json"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/pusher"
)

// sessionPart is the nginx map's regular expression of the package doc:
// its capture is the {server}/{session} part of an HTTP transport's path,
// the same for every request of a session.
var sessionPart = regexp.MustCompile(`^/pusher/app/[^/]+/([^/]+/[^/]+)/`)

// stickyProxy is a load balancer in front of nodes, set up as the nginx
// and HAProxy configurations of the package doc set one up: a request of
// pusher-js's HTTP transports goes to the node chosen by a hash of the
// {server}/{session} part of its path (crc32 modulo the nodes here; nginx
// and HAProxy hash the same key their own consistent way), so every
// request of a session reaches the node that made it; anything else (the
// HTTP API) goes round-robin. Streams are flushed as they come, as nginx's
// proxy_buffering off does. GET /test/conns answers the connection count
// of each node, for the scenario to see where its sessions are.
type stickyProxy struct {
	nodes   []*node
	proxies []*httputil.ReverseProxy
	next    atomic.Uint64
	url     string

	mu       sync.Mutex
	sessions []map[string]bool // the sessions each node got requests of
	lost     []string          // HTTP transport requests a node did not know the session of (404)
	failed   []string          // requests the proxy could not forward, but those the client gave up
}

func newStickyProxy(t *testing.T, nodes ...*node) *stickyProxy {
	t.Helper()
	p := &stickyProxy{nodes: nodes, sessions: make([]map[string]bool, len(nodes))}
	tr := &http.Transport{}
	for i, n := range nodes {
		target, err := url.Parse(n.url)
		require.NoError(t, err)
		p.sessions[i] = map[string]bool{}
		p.proxies = append(p.proxies, &httputil.ReverseProxy{
			Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.SetXForwarded() },
			FlushInterval: -1,
			Transport:     tr,
			ModifyResponse: func(resp *http.Response) error {
				if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(resp.Request.URL.Path, "/pusher/") {
					p.mu.Lock()
					p.lost = append(p.lost, resp.Request.URL.Path)
					p.mu.Unlock()
				}
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if r.Context().Err() == nil { // not a client that went away
					p.mu.Lock()
					p.failed = append(p.failed, r.URL.Path+": "+err.Error())
					p.mu.Unlock()
				}
				w.WriteHeader(http.StatusBadGateway)
			},
		})
	}
	hs := httptest.NewServer(p)
	t.Cleanup(func() { // before the nodes' cleanup: the clients are gone
		hs.CloseClientConnections()
		hs.Close()
		tr.CloseIdleConnections()
	})
	p.url = hs.URL
	return p
}

func (p *stickyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/test/conns" {
		counts := make([]int, len(p.nodes))
		for i, n := range p.nodes {
			counts[i] = n.srv.Len()
		}
		_ = json.NewEncoder(w).Encode(counts)
		return
	}
	var i int
	if m := sessionPart.FindStringSubmatch(r.URL.Path); m != nil {
		i = int(crc32.ChecksumIEEE([]byte(m[1])) % uint32(len(p.nodes)))
		p.mu.Lock()
		p.sessions[i][m[1]] = true
		p.mu.Unlock()
	} else {
		i = int(p.next.Add(1) % uint64(len(p.nodes)))
	}
	p.proxies[i].ServeHTTP(w, r)
}

// The path capture is what the documented configurations hash: the
// {server}/{session} of every kind of request of a session, and nothing
// for other paths.
func TestStickyProxySessionPart(t *testing.T) {
	for _, kind := range []string{"xhr", "xhr_send", "xhr_streaming"} {
		m := sessionPart.FindStringSubmatch("/pusher/app/app-key/123/abc_def/" + kind)
		require.NotNil(t, m, kind)
		assert.Equal(t, "123/abc_def", m[1])
	}
	for _, path := range []string{"/app/app-key", "/apps/1/events", "/pusher/app/app-key/123"} {
		assert.Nil(t, sessionPart.FindStringSubmatch(path), path)
	}
}

// Two nodes on one Redis behind a load balancer that keeps a session's
// requests on one node (stickyProxy, as the package doc's nginx and
// HAProxy configurations): pusher-js over each HTTP transport, with two
// clients whose sessions are on different nodes, gets every trigger and
// client event across them without losing its session (testdata/js/xhr_lb.mjs).
func TestPusherJSOverHTTPBehindLoadBalancer(t *testing.T) {
	js := needNode(t)
	addr := needRedis(t)
	for _, transport := range []string{"xhr_streaming", "xhr_polling"} {
		t.Run(transport, func(t *testing.T) {
			prefix := redisPrefix()
			a := startNode(t, redisHub(t, addr, prefix), []pusher.App{testApp}, pusher.WithLogger(quiet), httpOpts)
			b := startNode(t, redisHub(t, addr, prefix), []pusher.App{testApp}, pusher.WithLogger(quiet), httpOpts)
			lb := newStickyProxy(t, a, b)
			runNode(t, js, "xhr_lb.mjs", []string{"TRANSPORT=" + transport, "QUIET_MS=1200"}, &node{url: lb.url}, a, b)

			lb.mu.Lock()
			assert.Empty(t, lb.lost, "requests for a session the node did not know")
			assert.Empty(t, lb.failed, "requests not forwarded")
			assert.NotEmpty(t, lb.sessions[0], "sessions on node a")
			assert.NotEmpty(t, lb.sessions[1], "sessions on node b")
			lb.mu.Unlock()
			requireNoConns(t, a)
			requireNoConns(t, b)
		})
	}
}
