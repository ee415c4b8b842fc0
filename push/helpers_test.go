package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

const testSecret = "test-secret-0123456789abcdef0123456789"

// testServer serves an Endpoint at /push, an SSE handler at /events and a
// PublishHandler at /publish on one Hub. Both subscriber sides take the
// user from the ?user= parameter, and the Authorizer lets only user "admin"
// into "secret" and only user U into "private/U".
type testServer struct {
	hub    *ratchet.Hub
	ws     *ratchet.WsServer
	sse    *SSE
	pub    *PublishHandler
	srv    *httptest.Server
	url    string // http://...
	wsURL  string // ws://...
	client *http.Client
}

type serverOpts struct {
	hub     []ratchet.HubOption
	push    []Option
	publish []PublishOption
	ws      []ratchet.WsOption
}

func testAuthorize(c ratchet.Conn, topic string) error {
	switch {
	case topic == "secret" && c.User() != "admin":
		return errors.New("admins only")
	case strings.HasPrefix(topic, "private/") && topic != "private/"+c.User():
		return errors.New("not yours")
	}
	return nil
}

func userFromQuery(r *http.Request) (string, error) {
	u := r.URL.Query().Get("user")
	if u == "nobody" {
		return "", errors.New("go away")
	}
	return u, nil
}

func newTestServer(t *testing.T, o serverOpts) *testServer {
	t.Helper()
	s := &testServer{hub: ratchet.NewHub(o.hub...)}
	pushOpts := append([]Option{WithAuthorize(testAuthorize), WithAuthenticate(userFromQuery)}, o.push...)
	wsOpts := append([]ratchet.WsOption{ratchet.WithAuthenticate(userFromQuery), ratchet.WithReadLimit(4 << 10)}, o.ws...)
	s.ws = ratchet.NewWsServer(NewEndpoint(s.hub, pushOpts...), wsOpts...)
	s.sse = NewSSE(s.hub, pushOpts...)
	s.pub = NewPublishHandler(s.hub, append([]PublishOption{WithSecret([]byte(testSecret))}, o.publish...)...)
	mux := http.NewServeMux()
	mux.Handle("/push", s.ws)
	mux.Handle("/events", s.sse)
	mux.Handle("/publish", s.pub)
	s.srv = httptest.NewServer(mux)
	s.url = s.srv.URL
	s.wsURL = "ws" + strings.TrimPrefix(s.srv.URL, "http")
	tr := &http.Transport{DisableKeepAlives: true}
	s.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.sse.Shutdown(ctx))
		require.NoError(t, s.ws.Shutdown(ctx))
		s.srv.Close()
		tr.CloseIdleConnections()
		require.NoError(t, s.hub.Close(ctx))
	})
	return s
}

// dial opens a WebSocket to /push with the given query ("" for none).
func (s *testServer) dial(t *testing.T, query string) *websocket.Conn {
	t.Helper()
	u := s.wsURL + "/push"
	if query != "" {
		u += "?" + query
	}
	return wstest.Dial(t, u, nil)
}

// The client steps shared with the other packages' tests.
var (
	readMsg   = wstest.Read
	send      = wstest.Write
	readClose = wstest.ReadClose
)

// expectText reads one message and checks it is text equal to want.
func expectText(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	typ, got := readMsg(t, c)
	require.Equal(t, websocket.MessageText, typ)
	require.Equal(t, want, got)
}

// expectJSON reads one message and compares it as JSON with want.
func expectJSON(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	typ, got := readMsg(t, c)
	require.Equal(t, websocket.MessageText, typ)
	require.JSONEq(t, want, got)
}

func publish(t *testing.T, h *ratchet.Hub, topic, text string) int {
	t.Helper()
	n, err := h.Publish(context.Background(), topic, ratchet.Text(text))
	require.NoError(t, err)
	return n
}

// sseEvent is what the test's SSE parser yields: a dispatched event, or a
// comment line, or a retry field.
type sseEvent struct {
	ID, Event, Data string
	Comment         string
	Retry           string
	isComment       bool
	isRetry         bool
}

// sseParser reads an event stream as the HTML standard's parser does.
type sseParser struct {
	r         *bufio.Reader
	lastID    string
	eventType string
	data      strings.Builder
}

func newSSEParser(r io.Reader) *sseParser { return &sseParser{r: bufio.NewReader(r)} }

// readLine reads one line ended by CRLF, LF or CR (or EOF with content).
func (p *sseParser) readLine() (string, error) {
	var b []byte
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			if len(b) > 0 && err == io.EOF {
				return string(b), nil
			}
			return "", err
		}
		switch c {
		case '\n':
			return string(b), nil
		case '\r':
			if n, err := p.r.Peek(1); err == nil && n[0] == '\n' {
				p.r.ReadByte()
			}
			return string(b), nil
		}
		b = append(b, c)
	}
}

// next returns the next event, comment or retry field.
func (p *sseParser) next() (sseEvent, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if line == "" {
			if p.data.Len() == 0 {
				p.eventType = ""
				continue
			}
			data := strings.TrimSuffix(p.data.String(), "\n")
			ev := sseEvent{ID: p.lastID, Event: p.eventType, Data: data}
			if ev.Event == "" {
				ev.Event = "message"
			}
			p.data.Reset()
			p.eventType = ""
			return ev, nil
		}
		if line[0] == ':' {
			return sseEvent{Comment: strings.TrimPrefix(line[1:], " "), isComment: true}, nil
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			p.eventType = value
		case "data":
			p.data.WriteString(value)
			p.data.WriteByte('\n')
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.lastID = value
			}
		case "retry":
			return sseEvent{Retry: value, isRetry: true}, nil
		}
	}
}

// sseStream is a running GET on /events.
type sseStream struct {
	cancel context.CancelFunc // the client goes away
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
	err    error // after done
}

// openSSE GETs /events?query and, on 200, parses the stream in the
// background. It returns the response, whose body is drained on non-200.
func (s *testServer) openSSE(t *testing.T, query string, header http.Header) (*sseStream, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/events?"+query, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b)
	}
	st := &sseStream{cancel: cancel, resp: resp, events: make(chan sseEvent, 1000), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		p := newSSEParser(resp.Body)
		for {
			ev, err := p.next()
			if err != nil {
				st.err = err
				return
			}
			st.events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-st.done
	})
	return st, resp.StatusCode, ""
}

// next returns the next item of the stream, skipping heartbeats unless
// asked for.
func (st *sseStream) next(t *testing.T, heartbeats bool) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-st.events:
			if ev.isComment && ev.Comment == "heartbeat" && !heartbeats {
				continue
			}
			return ev
		case <-st.done:
			select {
			case ev := <-st.events:
				return ev
			default:
			}
			t.Fatalf("stream ended: %v", st.err)
		case <-timeout:
			t.Fatal("timed out waiting for an SSE event")
		}
	}
}

// event returns the next dispatched event.
func (st *sseStream) event(t *testing.T) sseEvent {
	t.Helper()
	for {
		if ev := st.next(t, false); !ev.isComment && !ev.isRetry {
			return ev
		}
	}
}

// waitEnd waits until the server ends the stream.
func (st *sseStream) waitEnd(t *testing.T) {
	t.Helper()
	select {
	case <-st.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end")
	}
}

// post sends a publish request with the given headers and returns the
// status and the decoded JSON answer.
func (s *testServer) post(t *testing.T, body []byte, header http.Header) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+"/publish", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	return s.do(t, req)
}

func (s *testServer) do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "body %s", b)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "body %s", b)
	return resp.StatusCode, out
}

// signed returns the signature headers for body at t.
func signed(secret string, body []byte, at time.Time) http.Header {
	ts, sig := Sign([]byte(secret), body, at)
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, sig)
	return h
}

// postSigned publishes body signed now with the test secret.
func (s *testServer) postSigned(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	return s.post(t, []byte(body), signed(testSecret, []byte(body), time.Now()))
}

// waitConns waits until the Hub knows n connections: a WebSocket's OnOpen
// runs after the client's Dial has returned.
func (s *testServer) waitConns(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.hub.Len() == n }, 5*time.Second, time.Millisecond, "want %d connections", n)
}

// pushApp is the README's setup on a ratchet.App, served on a loopback
// port: the Endpoint at /push, the SSE handler at /events, the publish
// handler at /publish, and extra handlers given by the test.
type pushApp struct {
	hub  *ratchet.Hub
	app  *ratchet.App
	addr string // host:port
}

func startPushApp(t *testing.T, httpHost string, extra map[string]http.HandlerFunc, opts ...ratchet.Option) *pushApp {
	t.Helper()
	p := &pushApp{hub: ratchet.NewHub(), app: ratchet.NewApp(httpHost, 0, opts...)}
	p.app.Route("/push", NewEndpoint(p.hub), nil, ratchet.WithReadLimit(4<<10))
	p.app.Handle("/events", NewSSE(p.hub))
	p.app.Handle("/publish", NewPublishHandler(p.hub, WithSecret([]byte(testSecret))))
	for pattern, h := range extra {
		p.app.HandleFunc(pattern, h)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- p.app.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.app.Shutdown(ctx))
		require.ErrorIs(t, <-served, ratchet.ErrServerClosed)
		require.NoError(t, p.hub.Close(ctx))
	})
	return p
}
