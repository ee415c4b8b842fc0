package pusher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/pusher"
)

// httpOpts are short timings, so that the scenarios see several heartbeats
// (polls) and the end of a session within a second or two; the session
// timeout leaves a loaded machine's client time for its next poll.
var httpOpts = pusher.WithHTTPTransports(pusher.HTTPTransports{Heartbeat: 200 * time.Millisecond, SessionTimeout: 1500 * time.Millisecond})

// pusher-js 8.6.0 with only its HTTP fallback enabled, each transport in
// turn: see testdata/js/xhr.mjs. Each session ends with exactly one
// OnClose: the app's connection count comes back to 0, not below.
func TestPusherJSOverHTTP(t *testing.T) {
	node := needNode(t)
	for _, transport := range []string{"xhr_streaming", "xhr_polling"} {
		t.Run(transport, func(t *testing.T) {
			n := single(t, nil, httpOpts)
			runNode(t, node, "xhr.mjs", []string{"TRANSPORT=" + transport, "QUIET_MS=1200"}, n)
			requireNoConns(t, n)
		})
	}
}

// requireNoConns waits until every connection of n has been through
// OnClose, once: the count of its app never goes below 0.
func requireNoConns(t *testing.T, n *node) {
	t.Helper()
	require.Eventually(t, func() bool {
		return n.srv.Len() == 0 && n.srv.Stats().Apps[0].Conns <= 0
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 0, n.srv.Stats().Apps[0].Conns, "one OnClose per connection")
}

// xhrSession is a raw client of the HTTP transports, as pusher-js makes
// its requests.
type xhrSession struct {
	t    *testing.T
	base string // .../app/{key}/{server}/{session}/
}

var sessionNo atomic.Int64

func newXHR(t *testing.T, n *node, key string) *xhrSession {
	return &xhrSession{t: t, base: fmt.Sprintf("%s/pusher/app/%s/%d/s%07d/", n.url, key, 1, sessionNo.Add(1))}
}

// post makes one request and returns its status, body and headers.
func (x *xhrSession) post(kind, body string) (int, string, http.Header) {
	x.t.Helper()
	resp, err := http.Post(x.base+kind+"?protocol=7&client=js&version=8.6.0", "application/json", strings.NewReader(body))
	require.NoError(x.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(x.t, err)
	return resp.StatusCode, string(b), resp.Header
}

// poll makes an xhr request; it must succeed.
func (x *xhrSession) poll() string {
	x.t.Helper()
	status, body, h := x.post("xhr", "")
	require.Equal(x.t, http.StatusOK, status, body)
	require.Equal(x.t, "no-store", h.Get("Cache-Control"))
	return body
}

// frames polls until a poll brings something else than heartbeats and
// returns its Pusher frames, or its close frame as "c[...]".
func (x *xhrSession) frames() []string {
	x.t.Helper()
	for {
		body := x.poll()
		if body == "h\n" {
			continue
		}
		var out []string
		for line := range strings.SplitSeq(strings.TrimSuffix(body, "\n"), "\n") {
			switch line[0] {
			case 'a':
				var msgs []string
				require.NoError(x.t, json.Unmarshal([]byte(line[1:]), &msgs), line)
				out = append(out, msgs...)
			case 'c':
				out = append(out, line)
			default:
				x.t.Fatalf("unexpected frame %q", line)
			}
		}
		return out
	}
}

// untilClose polls until the close frame and returns what came before it
// and the close frame.
func (x *xhrSession) untilClose() []string {
	x.t.Helper()
	var out []string
	for len(out) == 0 || out[len(out)-1][0] != 'c' {
		out = append(out, x.frames()...)
	}
	return out
}

// send posts Pusher messages with xhr_send; it must succeed.
func (x *xhrSession) send(msgs ...string) {
	x.t.Helper()
	b, _ := json.Marshal(msgs)
	status, body, _ := x.post("xhr_send", string(b))
	require.Equal(x.t, http.StatusNoContent, status, body)
}

// open opens a polling session and returns its socket_id.
func (x *xhrSession) open() string {
	x.t.Helper()
	require.Equal(x.t, "o\n", x.poll())
	f := x.frames()
	require.Len(x.t, f, 1)
	require.Contains(x.t, f[0], `"event":"pusher:connection_established"`)
	return f[0]
}

func TestXHRPolling(t *testing.T) {
	n := single(t, nil, httpOpts)
	x := newXHR(t, n, testApp.Key)
	x.open()
	x.send(`{"event":"pusher:subscribe","data":{"channel":"news"}}`)
	f := x.frames()
	require.Len(t, f, 1)
	assert.Contains(t, f[0], `"event":"pusher_internal:subscription_succeeded"`)

	require.NoError(t, n.srv.Trigger(context.Background(), []string{"news"}, "a", "1"))
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"news"}, "b", "2"))
	var got []string
	for len(got) < 2 {
		got = append(got, x.frames()...)
	}
	assert.Contains(t, got[0], `"event":"a"`)
	assert.Contains(t, got[1], `"event":"b"`)

	assert.Equal(t, "h\n", x.poll(), "a heartbeat when nothing comes")
	status, _, _ := x.post("xhr_send", "[]") // pusher-js's heartbeat
	assert.Equal(t, http.StatusNoContent, status)
	assert.Equal(t, 1, n.srv.Len())
	// The client stops polling: its session ends.
	requireNoConns(t, n)
}

// Broken input gets a clear error; a broken xhr_send closes the
// connection with a code the client's next poll receives.
func TestXHRBadInput(t *testing.T) {
	n := single(t, nil, httpOpts)

	x := newXHR(t, n, testApp.Key)
	status, body, _ := x.post("xhr_send", `["{}"]`)
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, body, "unknown HTTP session")

	status, body, _ = (&xhrSession{t: t, base: n.url + "/pusher/app/" + testApp.Key + "/1/a.b/"}).post("xhr", "")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "malformed session name")

	for _, tc := range []struct {
		body   string
		status int
		close  string
	}{
		{`{"event":"pusher:ping"}`, http.StatusBadRequest, `c[1002,"xhr_send body is not a JSON array of strings"]`},
		{`["` + strings.Repeat("x", pusher.MaxHTTPSendBody) + `"]`, http.StatusRequestEntityTooLarge, `c[1009,"xhr_send body over 65536 bytes"]`},
		{`[` + strings.Repeat(`"{}",`, pusher.MaxHTTPSendMessages) + `"{}"]`, http.StatusRequestEntityTooLarge, `c[1009,"xhr_send body of 101 messages, over 100"]`},
	} {
		x := newXHR(t, n, testApp.Key)
		x.open()
		status, body, _ := x.post("xhr_send", tc.body)
		assert.Equal(t, tc.status, status, body)
		assert.Equal(t, []string{tc.close}, x.untilClose())
	}

	// An unknown app key: the Pusher error, then the close code, as on a
	// WebSocket.
	x = newXHR(t, n, "nope")
	require.Equal(t, "o\n", x.poll())
	f := x.untilClose()
	require.Len(t, f, 2, "%q", f)
	assert.Contains(t, f[0], `"code":4001`)
	assert.True(t, strings.HasPrefix(f[1], "c[4001,"), f[1])
	requireNoConns(t, n)
}

// stream opens an xhr_streaming request and returns its lines as they
// come; cancel drops the request (a client that goes away).
func (x *xhrSession) stream() (lines <-chan string, cancel func()) {
	x.t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", x.base+"xhr_streaming?protocol=7", nil)
	require.NoError(x.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(x.t, err)
	require.Equal(x.t, http.StatusOK, resp.StatusCode)
	ch := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch, func() { stop(); <-done }
}

// next returns the next line that is not a heartbeat.
func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the stream ended")
			if l != "h" {
				return l
			}
		case <-timeout:
			t.Fatal("nothing but heartbeats on the stream")
		}
	}
}

// A client on a stream that stops answering (vanished without its
// connection closing) is pinged, then closed with 4201 on the stream,
// once; one whose connection drops is ended by the session timeout.
func TestXHRStreamingClientVanishes(t *testing.T) {
	idle := testApp
	idle.ActivityTimeout, idle.PongTimeout = 100*time.Millisecond, 100*time.Millisecond
	n := single(t, []pusher.App{idle}, httpOpts)

	x := newXHR(t, n, idle.Key)
	lines, cancel := x.stream()
	defer cancel()
	require.Equal(t, strings.Repeat("h", 2048), <-lines, "the prelude")
	assert.Equal(t, "o", next(t, lines))
	assert.Contains(t, next(t, lines), "pusher:connection_established")
	assert.Contains(t, next(t, lines), "pusher:ping")
	assert.Contains(t, next(t, lines), `pusher:error\",\"data\":{\"code\":4201`)
	assert.Equal(t, `c[4201,"Pong reply not received"]`, next(t, lines))
	_, open := <-lines
	assert.False(t, open, "the stream ends with the session")
	requireNoConns(t, n)

	x = newXHR(t, n, idle.Key)
	lines, cancel = x.stream()
	<-lines
	assert.Equal(t, "o", next(t, lines))
	assert.Equal(t, 1, n.srv.Len())
	cancel()
	requireNoConns(t, n)
}

// A renewed stream (pusher-js renews it after 256 KiB) continues the
// session: no second open frame, and what the server sends goes to the new
// one.
func TestXHRStreamRenewed(t *testing.T) {
	n := single(t, nil, httpOpts)
	x := newXHR(t, n, testApp.Key)
	lines, cancel := x.stream()
	<-lines
	assert.Equal(t, "o", next(t, lines))
	assert.Contains(t, next(t, lines), "connection_established")
	x.send(`{"event":"pusher:subscribe","data":{"channel":"news"}}`)
	assert.Contains(t, next(t, lines), "subscription_succeeded")

	renewed, cancelRenewed := x.stream() // replaces the first one at once
	defer cancelRenewed()
	cancel()
	require.Equal(t, strings.Repeat("h", 2048), <-renewed)
	require.NoError(t, n.srv.Trigger(context.Background(), []string{"news"}, "a", "1"))
	line := next(t, renewed)
	assert.True(t, strings.HasPrefix(line, "a["), line)
	assert.Contains(t, line, `\"event\":\"a\"`)
	assert.Equal(t, 1, n.srv.Len())
}

func TestXHRShutdown(t *testing.T) {
	n := single(t, nil, httpOpts)
	x := newXHR(t, n, testApp.Key)
	x.open()
	done := make(chan error, 1)
	go func() { done <- n.srv.Shutdown(context.Background()) }()
	f := x.untilClose()
	require.Len(t, f, 2, "%q", f)
	assert.Contains(t, f[0], `"code":4200`)
	assert.True(t, strings.HasPrefix(f[1], "c[4200,"), f[1])
	require.NoError(t, <-done)
	status, _, _ := newXHR(t, n, testApp.Key).post("xhr", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
}

func TestXHROriginsAndPreflight(t *testing.T) {
	n := single(t, nil, pusher.WithHTTPTransports(pusher.HTTPTransports{Path: "/fallback", Origins: []string{"app.example"}}))
	req, _ := http.NewRequest("OPTIONS", n.url+"/fallback/app/"+testApp.Key+"/1/abc/xhr", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "https://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type")

	req, _ = http.NewRequest("POST", n.url+"/fallback/app/"+testApp.Key+"/1/abc/xhr", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	off := single(t, nil, pusher.WithoutHTTPTransports())
	status, _, _ := newXHR(t, off, testApp.Key).post("xhr", "")
	assert.Equal(t, http.StatusNotFound, status)

	_, err = pusher.NewServer(ratchet.NewHub(), []pusher.App{testApp}, pusher.WithHTTPTransports(pusher.HTTPTransports{Path: "pusher/"}))
	assert.ErrorIs(t, err, pusher.ErrInvalidApp)
}
