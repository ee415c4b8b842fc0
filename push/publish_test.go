package push

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

func TestPublishAPIAcceptsSignedRequest(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "topic=news")
	expectJSON(t, c, `{"subscribed":"news"}`)
	other := s.dial(t, "topic=sport")
	expectJSON(t, other, `{"subscribed":"sport"}`)

	status, out := s.postSigned(t, `{"topic":"news","data":"hello"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, map[string]any{"topic": "news", "delivered": 1.0}, out)
	expectText(t, c, "hello")

	status, out = s.postSigned(t, `{"topic":"news","data":{"title":"hi", "n": [1, 2]}}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	expectText(t, c, `{"title":"hi","n":[1,2]}`)

	status, out = s.postSigned(t, `{"topic":"news","data":"AAEC/w==","binary":true}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	typ, got := readMsg(t, c)
	require.Equal(t, websocket.MessageBinary, typ)
	require.Equal(t, "\x00\x01\x02\xff", got)

	status, out = s.postSigned(t, `{"topic":"nobody-listens","data":"x"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, 0.0, out["delivered"])

	// The same body twice in one second, told apart by "id".
	for _, id := range []string{"1", "2"} {
		status, out = s.postSigned(t, `{"topic":"sport","data":"goal","id":"`+id+`"}`)
		require.Equal(t, http.StatusOK, status, "%v", out)
	}
	expectText(t, other, "goal")
	expectText(t, other, "goal")

	// Content-Type parameters are fine.
	body := []byte(`{"topic":"news","data":"charset"}`)
	h := signed(testSecret, body, time.Now())
	h.Set("Content-Type", "application/json; charset=utf-8")
	status, out = s.post(t, body, h)
	require.Equal(t, http.StatusOK, status, "%v", out)
	expectText(t, c, "charset")
}

func TestPublishAPIRejects(t *testing.T) {
	s := newTestServer(t, serverOpts{publish: []PublishOption{WithMaxBodySize(1024)}})
	c := s.dial(t, "topic=news")
	expectJSON(t, c, `{"subscribed":"news"}`)
	good := []byte(`{"topic":"news","data":"hello"}`)
	now := time.Now()
	withHeader := func(h http.Header, k, v string) http.Header {
		h = h.Clone()
		h.Set(k, v)
		return h
	}
	withoutHeader := func(h http.Header, k string) http.Header {
		h = h.Clone()
		h.Del(k)
		return h
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		header http.Header
		status int
		code   string
	}{
		{"no auth", good, http.Header{}, 401, "unauthorized"},
		{"bad signature", good, signed("wrong secret", good, now), 401, "bad_signature"},
		{"body changed", []byte(`{"topic":"news","data":"hellO"}`), signed(testSecret, good, now), 401, "bad_signature"},
		{"signature not hex", good, withHeader(signed(testSecret, good, now), HeaderSignature, "sha256="+strings.Repeat("zz", 32)), 401, "unauthorized"},
		{"signature wrong scheme", good, withHeader(signed(testSecret, good, now), HeaderSignature, "md5=abc"), 401, "unauthorized"},
		{"signature missing", good, withoutHeader(signed(testSecret, good, now), HeaderSignature), 401, "unauthorized"},
		{"timestamp missing", good, withoutHeader(signed(testSecret, good, now), HeaderTimestamp), 401, "unauthorized"},
		{"timestamp not a number", good, withHeader(signed(testSecret, good, now), HeaderTimestamp, "yesterday"), 401, "unauthorized"},
		{"stale timestamp", good, signed(testSecret, good, now.Add(-6*time.Minute)), 401, "stale_timestamp"},
		{"future timestamp", good, signed(testSecret, good, now.Add(6*time.Minute)), 401, "stale_timestamp"},
		{"bearer not enabled", good, http.Header{"Authorization": {"Bearer x"}}, 401, "unauthorized"},
		{"too large", append([]byte(`{"topic":"news","data":"`), bytes.Repeat([]byte("x"), 1024)...), signed(testSecret, good, now), 413, "too_large"},
		{"too large, no auth", append([]byte(`{"topic":"news","data":"`), bytes.Repeat([]byte("x"), 1024)...), http.Header{}, 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := s.post(t, tc.body, tc.header)
			require.Equal(t, tc.status, status, "%v", out)
			require.Equal(t, tc.code, out["error"], "%v", out)
			require.NotEmpty(t, out["message"])
		})
	}

	malformed := map[string]string{
		"not json":         `hello`,
		"array":            `["news","hello"]`,
		"trailing data":    `{"topic":"news","data":"x"} {}`,
		"no target":        `{"data":"x"}`,
		"both targets":     `{"topic":"news","user":"bob","data":"x"}`,
		"no data":          `{"topic":"news"}`,
		"null data":        `{"topic":"news","data":null}`,
		"unknown field":    `{"topic":"news","data":"x","tpoic":"y"}`,
		"topic not string": `{"topic":1,"data":"x"}`,
		"bad base64":       `{"topic":"news","data":"%%%","binary":true}`,
		"binary object":    `{"topic":"news","data":{},"binary":true}`,
		"empty user":       `{"user":"","data":"x"}`,
		"long id":          `{"topic":"news","data":"x","id":"` + strings.Repeat("i", MaxIDLen+1) + `"}`,
		"empty":            ``,
		"field case":       `{"Topic":"news","data":"x"}`,
		"duplicate field":  `{"topic":"news","topic":"other","data":"x"}`,
		"binary not bool":  `{"topic":"news","data":"AA==","binary":"yes"}`,
	}
	for name, body := range malformed {
		t.Run(name, func(t *testing.T) {
			status, out := s.postSigned(t, body)
			require.Equal(t, http.StatusBadRequest, status, "%v", out)
			require.Equal(t, CodeMalformed, out["error"], "%v", out)
		})
	}
	for _, topic := range []string{"@all", "", "@user/bob"} {
		status, out := s.postSigned(t, `{"topic":"`+topic+`","data":"x"}`)
		require.Equal(t, http.StatusBadRequest, status, "%v", out)
		require.Equal(t, map[string]any{"error": "invalid_topic", "message": "invalid topic name", "topic": topic}, out)
	}

	// Wrong content type, correctly signed.
	h := signed(testSecret, good, now)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	status, out := s.post(t, good, h)
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%v", out)
	require.Equal(t, "unsupported_media_type", out["error"])

	// Wrong method.
	req, err := http.NewRequest(http.MethodGet, s.url+"/publish", nil)
	require.NoError(t, err)
	status, out = s.do(t, req)
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.Equal(t, "method_not_allowed", out["error"])

	// Nothing got through.
	_, err = s.hub.Broadcast(context.Background(), ratchet.Text("end"))
	require.NoError(t, err)
	expectText(t, c, "end")
}

func TestPublishAPIRejectsReplay(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "topic=news")
	expectJSON(t, c, `{"subscribed":"news"}`)
	body := []byte(`{"topic":"news","data":"once"}`)
	h := signed(testSecret, body, time.Now())
	status, out := s.post(t, body, h)
	require.Equal(t, http.StatusOK, status, "%v", out)
	status, out = s.post(t, body, h)
	require.Equal(t, http.StatusUnauthorized, status, "%v", out)
	require.Equal(t, "replayed", out["error"])
	// A failed attempt (bad signature) is not remembered: no cache pollution.
	bad := h.Clone()
	bad.Set(HeaderSignature, "sha256="+strings.Repeat("00", 32))
	status, _ = s.post(t, body, bad)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, 1, s.pub.replay.Len())

	expectText(t, c, "once")
	_, err := s.hub.Broadcast(context.Background(), ratchet.Text("end"))
	require.NoError(t, err)
	expectText(t, c, "end")
}

func TestPublishAPIOversizedChunkedBody(t *testing.T) {
	s := newTestServer(t, serverOpts{publish: []PublishOption{WithMaxBodySize(100)}})
	body := `{"topic":"news","data":"` + strings.Repeat("x", 200) + `"}`
	// No Content-Length: the limit is found while reading.
	req, err := http.NewRequest(http.MethodPost, s.url+"/publish", struct{ io.Reader }{strings.NewReader(body)})
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range signed(testSecret, []byte(body), time.Now()) {
		req.Header[k] = v
	}
	status, out := s.do(t, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
	require.Equal(t, CodeTooLarge, out["error"])
}

func TestPublishAPIBearerToken(t *testing.T) {
	s := newTestServer(t, serverOpts{publish: []PublishOption{WithBearerToken("tok3n")}})
	c := s.dial(t, "topic=news")
	expectJSON(t, c, `{"subscribed":"news"}`)
	body := []byte(`{"topic":"news","data":"by token"}`)
	status, out := s.post(t, body, http.Header{"Authorization": {"Bearer tok3n"}})
	require.Equal(t, http.StatusOK, status, "%v", out)
	expectText(t, c, "by token")
	status, out = s.post(t, body, http.Header{"Authorization": {"bearer tok3n"}}) // scheme is case-insensitive
	require.Equal(t, http.StatusOK, status, "%v", out)
	expectText(t, c, "by token")

	for _, auth := range []string{"Bearer token", "Bearer ", "Basic dG9rM246", "tok3n"} {
		req, err := http.NewRequest(http.MethodPost, s.url+"/publish", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := s.client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, auth)
		require.Equal(t, `Bearer realm="ratchet push"`, resp.Header.Get("WWW-Authenticate"))
	}
	// Signatures still work beside the token.
	status, out = s.postSigned(t, string(body))
	require.Equal(t, http.StatusOK, status, "%v", out)
	expectText(t, c, "by token")
}

func TestPublishAPIAuthorize(t *testing.T) {
	s := newTestServer(t, serverOpts{publish: []PublishOption{
		WithPublishAuthorize(func(r *http.Request, p *Publication) error {
			switch {
			case p.User != "":
				return errors.New("no user sends")
			case p.Topic == "limited":
				return &ratchet.RejectError{Status: http.StatusTooManyRequests, Reason: "slow down"}
			}
			return nil
		}),
	}})
	status, out := s.postSigned(t, `{"user":"bob","data":"x"}`)
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, map[string]any{"error": "forbidden", "message": "Forbidden"}, out)
	status, out = s.postSigned(t, `{"topic":"limited","data":"x"}`)
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, map[string]any{"error": "too_many_requests", "message": "slow down"}, out)
	status, _ = s.postSigned(t, `{"topic":"open","data":"x"}`)
	require.Equal(t, http.StatusOK, status)
}

func TestPublishAPIClosedHub(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	require.NoError(t, s.hub.Close(context.Background()))
	status, out := s.postSigned(t, `{"topic":"news","data":"x"}`)
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, CodeUnavailable, out["error"])
}

// Without a credential NewPublishHandler panics, naming the option that got
// an empty one: os.Getenv of a variable that is not set, most often.
func TestNewPublishHandlerNeedsCredentials(t *testing.T) {
	require.PanicsWithValue(t, "push: NewPublishHandler needs WithSecret or WithBearerToken with a non-empty credential",
		func() { NewPublishHandler(ratchet.NewHub()) })
	const empty = "push: NewPublishHandler: empty credential from %s (is the variable it is read from set?); a publish API needs a non-empty secret or bearer token"
	require.PanicsWithValue(t, fmt.Sprintf(empty, "WithSecret"),
		func() {
			NewPublishHandler(ratchet.NewHub(), WithSecret([]byte(os.Getenv("RATCHET_TEST_UNSET_VARIABLE"))))
		})
	require.PanicsWithValue(t, fmt.Sprintf(empty, "WithSecret and WithBearerToken"),
		func() { NewPublishHandler(ratchet.NewHub(), WithSecret(nil), WithBearerToken("")) })
	require.NotPanics(t, func() { NewPublishHandler(ratchet.NewHub(), WithBearerToken("x")) })
	require.NotPanics(t, func() { NewPublishHandler(ratchet.NewHub(), WithSecret(nil), WithBearerToken("x")) })
}

func TestSignMatchesSpec(t *testing.T) {
	// The vector from the package documentation, computed independently:
	// printf '%s' '1767225600.{"topic":"news","data":"hello"}' | openssl dgst -sha256 -hmac secret
	ts, sig := Sign([]byte("secret"), []byte(`{"topic":"news","data":"hello"}`), time.Unix(1767225600, 0))
	require.Equal(t, "1767225600", ts)
	require.Equal(t, "sha256="+opensslVector, sig)
}

func TestParsePublication(t *testing.T) {
	p, err := parsePublication([]byte(` {"id":"x1","data":"h\u00e9","topic":"news"} `))
	require.NoError(t, err)
	require.Equal(t, Publication{Topic: "news", ID: "x1", Message: ratchet.Text("hé")}, p)
	p, err = parsePublication([]byte(`{"user":"alice","data":[1, {"a" : true}]}`))
	require.NoError(t, err)
	require.Equal(t, Publication{User: "alice", Message: ratchet.Text(`[1,{"a":true}]`)}, p)
	p, err = parsePublication([]byte(`{"topic":"t","data":"","binary":true}`))
	require.NoError(t, err)
	require.Equal(t, ratchet.MessageBinary, p.Message.Type)
	require.Empty(t, p.Message.Data)
	var be *bodyError
	_, err = parsePublication([]byte(`{"topic":"t","data":"x","extra":1}`))
	require.ErrorAs(t, err, &be)
	require.Equal(t, "unknown field \"extra\"", be.msg)
}

// opensslVector is the output of
// printf '%s' '1767225600.{"topic":"news","data":"hello"}' | openssl dgst -sha256 -hmac secret
const opensslVector = "699ce848b761a8bf2b3142800add75a706ce6d2f4786f5608980c6451c55a81b"

// A body that trickles in is cut by WithBodyTimeout, on any server (here
// one without timeouts of its own): 408, and the connection is closed.
func TestPublishAPISlowBodyIsCut(t *testing.T) {
	s := newTestServer(t, serverOpts{publish: []PublishOption{WithBodyTimeout(50 * time.Millisecond)}})
	c := s.dial(t, "topic=news")
	expectJSON(t, c, `{"subscribed":"news"}`)
	body := `{"topic":"news","data":"never whole"}`
	nc := wstest.SendRaw(t, strings.TrimPrefix(s.url, "http://"), rawPublish(signed(testSecret, []byte(body), time.Now()), len(body))+body[:10])
	br := bufio.NewReader(nc)
	resp, answer := wstest.ReadResponse(t, nc, br)
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, "%s", answer)
	require.JSONEq(t, `{"error":"request_timeout","message":"request body not received in time"}`, string(answer))
	require.True(t, resp.Close)
	wstest.RequireClosed(t, nc, br)

	_, err := s.hub.Broadcast(context.Background(), ratchet.Text("end"))
	require.NoError(t, err)
	expectText(t, c, "end") // nothing was published
}

// Credentials that need no body are checked before the body is read: these
// requests announce a body and never send it, and get their answer at once,
// on a closed connection. So does a body announced over the size limit.
func TestPublishAPIChecksHeadersBeforeBody(t *testing.T) {
	s := newTestServer(t, serverOpts{publish: []PublishOption{WithBearerToken("tok3n"), WithMaxBodySize(1024)}})
	body := []byte(`{"topic":"news","data":"hello"}`)
	now := time.Now()
	badFormat := signed(testSecret, body, now)
	badFormat.Set(HeaderSignature, "md5=abc")
	for _, tc := range []struct {
		name   string
		header http.Header
		size   int
		status int
		code   string
	}{
		{"no credentials", http.Header{}, len(body), 401, "unauthorized"},
		{"stale timestamp", signed(testSecret, body, now.Add(-6*time.Minute)), len(body), 401, "stale_timestamp"},
		{"future timestamp", signed(testSecret, body, now.Add(6*time.Minute)), len(body), 401, "stale_timestamp"},
		{"signature format", badFormat, len(body), 401, "unauthorized"},
		{"wrong token", http.Header{"Authorization": {"Bearer t0ken"}}, len(body), 401, "bad_token"},
		{"other scheme", http.Header{"Authorization": {"Basic dG9rM246"}}, len(body), 401, "unauthorized"},
		{"too large", http.Header{"Authorization": {"Bearer tok3n"}}, 1025, 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := wstest.SendRaw(t, strings.TrimPrefix(s.url, "http://"), rawPublish(tc.header, tc.size))
			br := bufio.NewReader(nc)
			resp, answer := wstest.ReadResponse(t, nc, br)
			require.Equal(t, tc.status, resp.StatusCode, "%s", answer)
			require.Contains(t, string(answer), `"error":"`+tc.code+`"`)
			require.True(t, resp.Close)
			wstest.RequireClosed(t, nc, br)
		})
	}
}

// rawPublish is the head of a POST /publish with the given headers and a
// body of n bytes, to be sent (or not) after it.
func rawPublish(h http.Header, n int) string {
	var b strings.Builder
	b.WriteString("POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(n) + "\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.String()
}

// A publish request sent to a host the App does not serve (127.0.0.1 for
// an App of "localhost") gets a JSON 404 that names the App's host.
func TestPublishAPIWrongHost(t *testing.T) {
	p := startPushApp(t, "localhost", nil)
	body := []byte(`{"topic":"news","data":"hello"}`)
	req, err := http.NewRequest(http.MethodPost, "http://"+p.addr+"/publish", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range signed(testSecret, body, time.Now()) {
		req.Header[k] = v
	}
	resp, answer := wstest.Do(t, req)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.JSONEq(t, `{"error":"wrong_host","message":"this server answers /publish for host \"localhost\", not for \"`+p.addr+`\""}`, string(answer))
}
