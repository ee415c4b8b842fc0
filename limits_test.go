package ratchet_test

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/ratchetgo/ratchet"
)

// refused tries a handshake that must be refused and returns the answer.
func refused(t *testing.T, url string, opts *websocket.DialOptions) *http.Response {
	t.Helper()
	resp := dialResponse(t, url, opts)
	require.NotNil(t, resp, "handshake accepted, want a refusal")
	return resp
}

// retryAfter returns the Retry-After of resp in seconds.
func retryAfter(t *testing.T, resp *http.Response) int {
	t.Helper()
	n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", resp.Header.Get("Retry-After"))
	return n
}

// closeAndWait closes a client and waits for the server's OnClose.
func closeAndWait(t *testing.T, c *websocket.Conn, rec *recorder) {
	t.Helper()
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	rec.expect(t, "close")
}

// WithMaxConns given to NewApp counts the connections of every route; given
// to a route, that route's. Over either, 503 with Retry-After; a slot is
// free again once a connection has ended.
func TestMaxConns(t *testing.T) {
	recA, recB, recC := newRecorder(), newRecorder(), newRecorder()
	app := ratchet.NewApp("", 0, ratchet.WithMaxConns(2))
	app.Route("/a", recA, nil)
	app.Route("/b", recB, nil)
	app.Route("/c", recC, nil, ratchet.WithMaxConns(1))
	base := "ws://" + startApp(t, app)

	a := dial(t, base+"/a", nil)
	recA.expect(t, "open")
	c := dial(t, base+"/c", nil)
	recC.expect(t, "open")
	resp := refused(t, base+"/b", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the App's limit")
	assert.Equal(t, int(ratchet.LimitRetryAfter/time.Second), retryAfter(t, resp))

	closeAndWait(t, a, recA)
	resp = refused(t, base+"/c", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the route's limit")
	b := dial(t, base+"/b", nil)
	recB.expect(t, "open")

	closeAndWait(t, c, recC)
	c = dial(t, base+"/c", nil)
	recC.expect(t, "open")
	closeAndWait(t, b, recB)
	closeAndWait(t, c, recC)
}

// WithMaxConnsPerIP counts the peer's address; X-Forwarded-For and
// Forwarded count only from a trusted proxy.
func TestMaxConnsPerIP(t *testing.T) {
	xff := func(v string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {v}}}
	}
	t.Run("untrusted", func(t *testing.T) {
		rec := newRecorder()
		_, url := serveComponent(t, rec, ratchet.WithMaxConnsPerIP(1))
		a := dial(t, url, xff("203.0.113.1"))
		rec.expect(t, "open")
		resp := refused(t, url, xff("203.0.113.2"))
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a header from an untrusted peer is ignored")
		assert.Equal(t, int(ratchet.LimitRetryAfter/time.Second), retryAfter(t, resp))
		closeAndWait(t, a, rec)
		a = dial(t, url, nil)
		rec.expect(t, "open")
		closeAndWait(t, a, rec)
	})
	t.Run("trusted", func(t *testing.T) {
		rec := newRecorder()
		_, url := serveComponent(t, rec, ratchet.WithMaxConnsPerIP(1),
			ratchet.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")))
		a := dial(t, url, xff("203.0.113.1"))
		rec.expect(t, "open")
		// The client's own claim (left) is not believed past an untrusted hop.
		b := dial(t, url, xff("203.0.113.1, 203.0.113.2, 10.1.2.3"))
		rec.expect(t, "open")
		resp := refused(t, url, xff("198.51.100.7, 203.0.113.1"))
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		fwd := &websocket.DialOptions{HTTPHeader: http.Header{"Forwarded": {`for="[2001:db8::1]:4711";proto=http, for=10.0.0.1`}}}
		c := dial(t, url, fwd)
		rec.expect(t, "open")
		resp = refused(t, url, fwd)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "Forwarded names the same client")
		for _, cl := range []*websocket.Conn{a, b, c} {
			closeAndWait(t, cl, rec)
		}
	})
}

// WithHandshakeRate refuses attempts past the burst with 429 and a
// Retry-After saying when the next token comes.
func TestHandshakeRate(t *testing.T) {
	rec := newRecorder()
	app := ratchet.NewApp("", 0, ratchet.WithHandshakeRate(rate.Every(time.Hour), 2))
	app.Route("/ws", rec, nil)
	url := "ws://" + startApp(t, app) + "/ws"
	for range 2 {
		c := dial(t, url, nil)
		rec.expect(t, "open")
		closeAndWait(t, c, rec)
	}
	resp := refused(t, url, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Greater(t, retryAfter(t, resp), 60, "the next token is most of an hour away")
}

// A connection sending past WithMessageRate is closed with 1008 and
// OnError gets ErrMessageRate; the messages within the burst are served.
func TestMessageRate(t *testing.T) {
	rec := newRecorder()
	rec.onMessage = func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }
	_, url := serveComponent(t, rec, ratchet.WithMessageRate(rate.Every(time.Hour), 3))
	c := dial(t, url, nil)
	rec.expect(t, "open")
	for i := range 4 {
		write(t, c, strconv.Itoa(i))
	}
	for i := range 3 {
		_, m := read(t, c)
		assert.Equal(t, strconv.Itoa(i), m)
		rec.expect(t, "message")
	}
	assert.Equal(t, websocket.StatusPolicyViolation, readClose(t, c))
	assert.ErrorIs(t, rec.expect(t, "error").err, ratchet.ErrMessageRate)
	rec.expect(t, "close")
}

// WithMaxSubscriptions bounds the topics of one connection; subscribing
// again to one of them, or after leaving one, is allowed.
func TestHubMaxSubscriptions(t *testing.T) {
	hub := ratchet.NewHub(ratchet.WithMaxSubscriptions(2))
	url, opened := hubServer(t, hub)
	ctx := context.Background()
	dial(t, url+"?topic=a&topic=b&user=u", nil)
	conn := <-opened
	other := dial(t, url, nil)
	otherConn := <-opened

	assert.ErrorIs(t, hub.Subscribe(ctx, conn, "c"), ratchet.ErrTooManySubscriptions)
	assert.Equal(t, []string{"a", "b"}, hub.TopicsOf(conn))
	assert.NoError(t, hub.Subscribe(ctx, conn, "a"), "already subscribed")
	require.NoError(t, hub.Unsubscribe(ctx, conn, "a"))
	require.NoError(t, hub.Subscribe(ctx, conn, "c"))
	assert.Equal(t, []string{"b", "c"}, hub.TopicsOf(conn))
	require.NoError(t, hub.Subscribe(ctx, otherConn, "c"), "the limit is per connection")
	n, err := hub.Publish(ctx, "c", ratchet.Text("x"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	_, m := read(t, other)
	assert.Equal(t, "x", m)
}
