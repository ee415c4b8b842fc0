package pusher_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
	"github.com/ratchetgo/ratchet/pusher"
)

// testApp is the app most tests serve.
var testApp = pusher.App{ID: "1", Key: "app-key", Secret: "app-secret", ClientEvents: true}

// node is one server of a test cluster: a Hub, a pusher.Server on it, and
// an HTTP server in front.
type node struct {
	hub *ratchet.Hub
	srv *pusher.Server
	url string // http://127.0.0.1:port
}

// cluster holds what the nodes of a test share: a broker and a presence.
type cluster struct {
	broker   *ratchet.MemoryBroker
	presence *ratchet.MemoryPresence
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{broker: ratchet.NewMemoryBroker(), presence: ratchet.NewMemoryPresence()}
	t.Cleanup(func() {
		c.presence.Close(context.Background())
		c.broker.Close()
	})
	return c
}

// node starts a node of the cluster serving apps (testApp when none).
func (c *cluster) node(t *testing.T, apps []pusher.App, opts ...pusher.Option) *node {
	if apps == nil {
		apps = []pusher.App{testApp}
	}
	hub := ratchet.NewHub(ratchet.WithBroker(c.broker), ratchet.WithPresence(c.presence), pusher.CacheHistory(apps...))
	return startNode(t, hub, apps, opts...)
}

// single starts a node of its own: a Hub without Broker or Presence.
func single(t *testing.T, apps []pusher.App, opts ...pusher.Option) *node {
	if apps == nil {
		apps = []pusher.App{testApp}
	}
	return startNode(t, ratchet.NewHub(pusher.CacheHistory(apps...)), apps, opts...)
}

func startNode(t *testing.T, hub *ratchet.Hub, apps []pusher.App, opts ...pusher.Option) *node {
	t.Helper()
	srv, err := pusher.NewServer(hub, apps, opts...)
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		hs.Close()
		require.NoError(t, hub.Close(ctx))
	})
	return &node{hub: hub, srv: srv, url: hs.URL}
}

// frame is one message from the server.
type frame struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	UserID  *string         `json:"user_id"`
}

// data returns the data as pusher-js sees it before parsing: a string's
// contents, or the JSON as is.
func (f frame) data() string {
	var s string
	if json.Unmarshal(f.Data, &s) == nil {
		return s
	}
	return string(f.Data)
}

// decode parses the data (inside its string, if it is one) into v.
func (f frame) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(f.data()), v), "data of %s: %s", f.Event, f.Data)
}

// client is a Pusher protocol client on a raw WebSocket.
type client struct {
	t        *testing.T
	ws       *websocket.Conn
	socketID string
	timeout  int // activity_timeout announced
}

var socketIDPattern = regexp.MustCompile(`^\d+\.\d+$`)

// dialRaw opens the WebSocket of key with the query, without reading.
func dialRaw(t *testing.T, n *node, key, query string) *websocket.Conn {
	return wstest.Dial(t, "ws"+strings.TrimPrefix(n.url, "http")+"/app/"+key+query, nil)
}

// connect opens a connection to n for app key and reads
// pusher:connection_established.
func connect(t *testing.T, n *node, key string) *client {
	t.Helper()
	c := &client{t: t, ws: dialRaw(t, n, key, "?protocol=7&client=js&version=8.6.0&flash=false")}
	f := c.expect("pusher:connection_established")
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	f.decode(t, &d)
	require.Regexp(t, socketIDPattern, d.SocketID)
	c.socketID, c.timeout = d.SocketID, d.ActivityTimeout
	return c
}

func (c *client) read() frame {
	c.t.Helper()
	_, s := wstest.Read(c.t, c.ws)
	var f frame
	require.NoError(c.t, json.Unmarshal([]byte(s), &f), "not JSON: %s", s)
	return f
}

// expect reads the next frame and checks its event.
func (c *client) expect(event string) frame {
	c.t.Helper()
	f := c.read()
	require.Equal(c.t, event, f.Event, "frame: %+v data %s", f, f.Data)
	return f
}

// expectOn reads the next frame and checks its event and channel.
func (c *client) expectOn(event, channel string) frame {
	c.t.Helper()
	f := c.expect(event)
	require.Equal(c.t, channel, f.Channel)
	return f
}

func (c *client) send(event, channel string, data any) {
	c.t.Helper()
	m := map[string]any{"event": event, "data": data}
	if channel != "" {
		m["channel"] = channel
	}
	b, err := json.Marshal(m)
	require.NoError(c.t, err)
	wstest.Write(c.t, c.ws, string(b))
}

// sync sends pusher:ping and expects pusher:pong as the next frame: what
// the server sent this client before it handled the ping came first.
func (c *client) sync() {
	c.t.Helper()
	c.send("pusher:ping", "", map[string]any{})
	c.expect("pusher:pong")
}

func (c *client) subscribe(channel, auth, channelData string) {
	c.t.Helper()
	d := map[string]any{"channel": channel}
	if auth != "" {
		d["auth"] = auth
	}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	c.send("pusher:subscribe", "", d)
}

// join subscribes to a channel of testApp, signed as the app's auth
// endpoint would, and expects success.
func (c *client) join(channel, channelData string) frame {
	c.t.Helper()
	c.subscribe(channel, channelAuth(testApp, c.socketID, channel, channelData), channelData)
	return c.expectOn("pusher_internal:subscription_succeeded", channel)
}

// closed reads until the connection ends and returns the close code, after
// checking the pusher:error that announced it.
func (c *client) closed(code int) {
	c.t.Helper()
	f := c.expect("pusher:error")
	var d struct {
		Code int `json:"code"`
	}
	f.decode(c.t, &d)
	require.Equal(c.t, code, d.Code)
	require.Equal(c.t, websocket.StatusCode(code), wstest.ReadClose(c.t, c.ws))
}

func (c *client) close() { c.ws.Close(websocket.StatusNormalClosure, "") }

// hmacHex is hex(HMAC-SHA256(secret, s)), computed here independently of
// the package.
func hmacHex(secret, s string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// channelAuth is what an app's auth endpoint answers (pusher-http-node's
// authorizeChannel): "key:signature" over socket_id:channel[:channel_data].
func channelAuth(a pusher.App, socketID, channel, channelData string) string {
	s := socketID + ":" + channel
	if channelData != "" {
		s += ":" + channelData
	}
	return a.Key + ":" + hmacHex(a.Secret, s)
}

// memberData is presence channel_data for a user.
func memberData(id, name string) string {
	return `{"user_id":"` + id + `","user_info":{"name":"` + name + `"}}`
}

// apiRequest is a signed HTTP API request, built as pusher-http-node's
// createSignedQueryString builds it.
type apiRequest struct {
	method, path string
	params       map[string]string
	body         []byte
	key, secret  string
	ts           time.Time
}

func newRequest(method, path string, body []byte) *apiRequest {
	return &apiRequest{method: method, path: path, body: body, params: map[string]string{},
		key: testApp.Key, secret: testApp.Secret, ts: time.Now()}
}

// query returns the signed query string.
func (r *apiRequest) query() string {
	p := map[string]string{
		"auth_key":       r.key,
		"auth_timestamp": strconv.FormatInt(r.ts.Unix(), 10),
		"auth_version":   "1.0",
	}
	if len(r.body) > 0 {
		sum := md5.Sum(r.body)
		p["body_md5"] = hex.EncodeToString(sum[:])
	}
	for k, v := range r.params {
		p[k] = v
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var pairs, escaped []string
	for _, k := range keys {
		pairs = append(pairs, k+"="+p[k])
		escaped = append(escaped, url.QueryEscape(k)+"="+url.QueryEscape(p[k]))
	}
	sig := hmacHex(r.secret, r.method+"\n"+r.path+"\n"+strings.Join(pairs, "&"))
	return strings.Join(escaped, "&") + "&auth_signature=" + sig
}

// do sends the request with the given query to n, and returns the status
// and body.
func (r *apiRequest) doQuery(t *testing.T, n *node, query string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, n.url+r.path+"?"+query, bytes.NewReader(r.body))
	require.NoError(t, err)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func (r *apiRequest) do(t *testing.T, n *node) (int, string) {
	t.Helper()
	return r.doQuery(t, n, r.query())
}

// ok sends the request and requires 200; it returns the JSON answer.
func (r *apiRequest) ok(t *testing.T, n *node) map[string]any {
	t.Helper()
	status, body := r.do(t, n)
	require.Equal(t, http.StatusOK, status, body)
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &out), body)
	return out
}

// trigger posts an event through n's HTTP API.
func trigger(t *testing.T, n *node, event map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(event)
	require.NoError(t, err)
	return newRequest("POST", "/apps/"+testApp.ID+"/events", b).ok(t, n)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
