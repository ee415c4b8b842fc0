package push

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

func TestSSEReceivesWithIDs(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	st, status, _ := s.openSSE(t, "topic=a&topic=b", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "text/event-stream", st.resp.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", st.resp.Header.Get("Cache-Control"))
	first := st.next(t, false)
	require.True(t, first.isRetry)
	require.Equal(t, "3000", first.Retry)
	other, _, _ := s.openSSE(t, "topic=c", nil)
	other.next(t, false)

	require.Equal(t, 1, publish(t, s.hub, "a", "one"))
	require.Equal(t, 1, publish(t, s.hub, "b", "two\nlines"))
	require.Equal(t, 1, publish(t, s.hub, "a", "cr\rcrlf\r\nend\n"))
	require.Equal(t, 1, publish(t, s.hub, "a", ""))
	_, err := s.hub.Publish(context.Background(), "b", ratchet.Binary([]byte{0, 1, 2, 0xfe, 0xff}))
	require.NoError(t, err)
	require.Equal(t, 1, publish(t, s.hub, "c", "for other"))

	want := []sseEvent{
		{ID: "1", Event: "message", Data: "one"},
		{ID: "2", Event: "message", Data: "two\nlines"},
		{ID: "3", Event: "message", Data: "cr\ncrlf\nend\n"},
		{ID: "4", Event: "message", Data: ""},
		{ID: "5", Event: "binary", Data: base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xfe, 0xff})},
	}
	for _, w := range want {
		require.Equal(t, w, st.event(t))
	}
	require.Equal(t, sseEvent{ID: "1", Event: "message", Data: "for other"}, other.event(t))
}

func TestSSEWireBytes(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithRetry(1500 * time.Millisecond), WithHeartbeat(0)}})
	req, err := http.NewRequest(http.MethodGet, s.url+"/events?topic=raw", nil)
	require.NoError(t, err)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	n, err := resp.Body.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "retry: 1500\n\n", string(buf[:n]))
	publish(t, s.hub, "raw", "a\r\nb")
	want := "id: 1\ndata: a\ndata: b\n\n"
	got := ""
	for len(got) < len(want) {
		n, err = resp.Body.Read(buf)
		require.NoError(t, err)
		got += string(buf[:n])
	}
	require.Equal(t, want, got)
}

func TestSSEHeartbeat(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithHeartbeat(20 * time.Millisecond), WithRetry(0)}})
	st, status, _ := s.openSSE(t, "topic=a", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, sseEvent{Comment: "ok", isComment: true}, st.next(t, true))
	for range 3 {
		require.Equal(t, sseEvent{Comment: "heartbeat", isComment: true}, st.next(t, true))
	}
	publish(t, s.hub, "a", "between heartbeats")
	require.Equal(t, "between heartbeats", st.event(t).Data)
}

func TestSSELastEventIDContinues(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	st, status, _ := s.openSSE(t, "topic=a", http.Header{"Last-Event-Id": {"41"}})
	require.Equal(t, http.StatusOK, status)
	st.next(t, false)
	publish(t, s.hub, "a", "x")
	require.Equal(t, "42", st.event(t).ID)

	bad, _, _ := s.openSSE(t, "topic=b", http.Header{"Last-Event-Id": {"junk"}})
	bad.next(t, false)
	publish(t, s.hub, "b", "y")
	require.Equal(t, "1", bad.event(t).ID)

	// Ids never wrap to 0: a Last-Event-ID with no room left to count on
	// starts over at 1; the largest JavaScript integer still counts on.
	for last, want := range map[string][]string{
		"18446744073709551614": {"1", "2"},
		"18446744073709551615": {"1", "2"},
		"9007199254740991":     {"9007199254740992", "9007199254740993"},
		"9007199254740992":     {"1", "2"},
	} {
		st, _, _ := s.openSSE(t, "topic=c", http.Header{"Last-Event-Id": {last}})
		st.next(t, false)
		publish(t, s.hub, "c", "one")
		publish(t, s.hub, "c", "two")
		require.Equal(t, want, []string{st.event(t).ID, st.event(t).ID}, "after Last-Event-ID %s", last)
		st.resp.Body.Close()
	}
}

func TestSSERefusals(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithMaxTopics(2)}})
	for _, tc := range []struct {
		query  string
		status int
		body   string
	}{
		{"topic=%40all", 400, `{"error":"invalid_topic","message":"invalid topic name","topic":"@all"}`},
		{"topic=", 400, `{"error":"invalid_topic","message":"invalid topic name","topic":""}`},
		{"topic=a&topic=b&topic=c", 400, `{"error":"too_many_topics","message":"too many topic parameters"}`},
		{"topic=secret&user=bob", 403, `{"error":"forbidden","message":"Forbidden","topic":"secret"}`},
		{"topic=private/alice&user=bob", 403, `{"error":"forbidden","message":"Forbidden","topic":"private/alice"}`},
		{"topic=a&user=nobody", 401, `{"error":"unauthorized","message":"Unauthorized"}`},
	} {
		_, status, body := s.openSSE(t, tc.query, nil)
		require.Equal(t, tc.status, status, tc.query)
		require.JSONEq(t, tc.body, body, tc.query)
	}
	resp, err := s.client.Post(s.url+"/events?topic=a", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "GET", resp.Header.Get("Allow"))
	require.Equal(t, 0, s.hub.Len())

	admin, status, _ := s.openSSE(t, "topic=secret&user=admin", nil)
	require.Equal(t, http.StatusOK, status)
	admin.next(t, false)
	publish(t, s.hub, "secret", "ok")
	require.Equal(t, "ok", admin.event(t).Data)
}

func TestSSERejectErrorStatus(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{
		WithAuthorize(func(ratchet.Conn, string) error {
			return &ratchet.RejectError{Status: http.StatusNotFound, Reason: "no such topic"}
		}),
	}})
	_, status, body := s.openSSE(t, "topic=a", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.JSONEq(t, `{"error":"not_found","message":"no such topic","topic":"a"}`, body)
}

func TestSSEDisconnectLeavesTheHub(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/events?topic=a&topic=b", nil)
	require.NoError(t, err)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	require.Equal(t, 1, s.hub.Subscribers("a"))
	require.Equal(t, 1, s.sse.Len())
	cancel()
	resp.Body.Close()
	require.Eventually(t, func() bool {
		return s.hub.Subscribers("a") == 0 && s.hub.Subscribers("b") == 0 && s.hub.Len() == 0 && s.sse.Len() == 0
	}, 5*time.Second, 5*time.Millisecond)
}

func TestSSEShutdownEndsStreams(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	st, _, _ := s.openSSE(t, "topic=a", nil)
	st.next(t, false)
	publish(t, s.hub, "a", "last words")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.sse.Shutdown(ctx))
	require.Equal(t, "last words", st.event(t).Data)
	st.waitEnd(t)
	require.Eventually(t, func() bool { return s.hub.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	_, status, body := s.openSSE(t, "topic=a", nil)
	require.Equal(t, http.StatusServiceUnavailable, status, body)
}

// TestSSESlowConsumer: a client that stops reading is cut off once its
// queue is full, even with no write timeout, while a fast one on the same
// topic receives everything.
func TestSSESlowConsumer(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithSendQueue(4), WithWriteTimeout(0), WithHeartbeat(0)}})
	fast, _, _ := s.openSSE(t, "topic=a", nil)
	fast.next(t, false)

	// The slow client: a raw socket that reads the headers, then nothing.
	nc, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte("GET /events?topic=a HTTP/1.1\r\nHost: test\r\n\r\n"))
	require.NoError(t, err)
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "retry:") {
			break // subscribed
		}
	}
	require.Equal(t, 2, s.hub.Subscribers("a"))

	big := strings.Repeat("x", 256<<10)
	sent := 0
	for sent < 400 && s.hub.Subscribers("a") == 2 {
		publish(t, s.hub, "a", big+strconv.Itoa(sent))
		require.Equal(t, big+strconv.Itoa(sent), fast.event(t).Data)
		sent++
	}
	require.Less(t, sent, 400, "the slow client was never cut off")
	// The slow stream's handler was stuck in a write; it is interrupted.
	require.Eventually(t, func() bool { return s.sse.Len() == 1 }, 5*time.Second, 5*time.Millisecond)
	for i := range 3 {
		require.Equal(t, 1, publish(t, s.hub, "a", "after "+strconv.Itoa(i)))
		require.Equal(t, "after "+strconv.Itoa(i), fast.event(t).Data)
	}
	t.Logf("slow client cut off after %d messages of 256 KiB", sent)
}

// An event stream on App.Serve outlives the server's read timeout, which
// cuts a request whose body trickles in.
func TestSSEOutlivesAppReadTimeout(t *testing.T) {
	bodyErr := make(chan error, 1)
	p := startPushApp(t, "", map[string]http.HandlerFunc{
		"POST /upload": func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			bodyErr <- err
		},
	}, ratchet.WithReadTimeout(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // bounds the reads below
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/events?topic=a", nil)
	require.NoError(t, err)
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	events := newSSEParser(resp.Body)
	first, err := events.next()
	require.NoError(t, err)
	require.True(t, first.isRetry, "subscribed")

	// Started after the stream, so cut after its deadline has passed.
	wstest.SendRaw(t, p.addr, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
	select {
	case err := <-bodyErr:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the slow upload was not cut")
	}
	publish(t, p.hub, "a", "still here")
	ev, err := events.next()
	require.NoError(t, err)
	require.Equal(t, "still here", ev.Data)
}

// The documented setup, app.Handle("/events", events), answers every
// method but GET with the same JSON 405, HEAD included.
func TestSSEDocumentedSetupRefusesOtherMethods(t *testing.T) {
	p := startPushApp(t, "localhost", nil)
	for _, method := range []string{http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		req, err := http.NewRequest(method, "http://"+p.addr+"/events?topic=a", nil)
		require.NoError(t, err)
		req.Host = "localhost"
		resp, body := wstest.Do(t, req)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, method)
		require.Equal(t, "GET", resp.Header.Get("Allow"), method)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), method)
		if method != http.MethodHead {
			require.JSONEq(t, `{"error":"method_not_allowed","message":"use GET"}`, string(body), method)
		}
	}
}
