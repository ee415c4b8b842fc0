//go:build unix

package brokertest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

// RunApps runs two Apps, each with a Hub on its own Broker from newNode: a
// WebSocket client of node B receives, in order, what node A's Hub publishes
// to its topic, and what node A sends to its user.
func RunApps(t *testing.T, newNode NewNode) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokerA, brokerB := newNode(t), newNode(t)
	t.Cleanup(func() { _ = brokerA.Close(); _ = brokerB.Close() })
	hubA, urlA := appNode(t, brokerA, false)
	hubB, urlB := appNode(t, brokerB, false)
	topic := Topic(t)
	user := "John Smith " + topic // any string is a user

	onB := dialWS(ctx, t, urlB+"?topic="+topic+"&user="+strings.ReplaceAll(user, " ", "+"))
	onA := dialWS(ctx, t, urlA+"?topic="+topic)
	const n = 200
	for i := range n {
		if _, err := hubA.Publish(ctx, topic, ratchet.Text(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		for _, c := range []*websocket.Conn{onB, onA} {
			if got := readWS(ctx, t, c); got != fmt.Sprint(i) {
				t.Fatalf("message %d: got %q (per-topic order from one publisher)", i, got)
			}
		}
	}
	if _, err := hubA.PublishToUser(ctx, user, ratchet.Text("to the user on B")); err != nil {
		t.Fatal(err)
	}
	if got := readWS(ctx, t, onB); got != "to the user on B" {
		t.Fatalf("got %q", got)
	}
	if _, err := hubB.Publish(ctx, topic, ratchet.Binary([]byte{0, 1, 2})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{onB, onA} {
		typ, data, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageBinary || string(data) != "\x00\x01\x02" {
			t.Fatalf("binary across nodes: %v %q %v", typ, data, err)
		}
	}
}

// appNode serves an App whose route /ws subscribes each connection to the
// topics of its query and sets its user, then sends it "ready".
func appNode(t testing.TB, b ratchet.Broker, quiet bool, opts ...ratchet.RouteOption) (*ratchet.Hub, string) {
	hub := ratchet.NewHub(ratchet.WithBroker(b))
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q := c.Request().URL.Query()
		for _, topic := range q["topic"] {
			if err := hub.Subscribe(ctx, c, topic); err != nil {
				t.Errorf("subscribe: %v", err)
			}
		}
		if u := q.Get("user"); u != "" {
			if err := hub.SetUser(ctx, c, u); err != nil {
				t.Errorf("set user: %v", err)
			}
		}
		_ = c.Send(ratchet.Text("ready"))
	}, Error: func(c ratchet.Conn, err error) {
		if !quiet {
			t.Logf("server side of a connection: %v", err)
		}
	}}, []string{"*"}, opts...)
	return hub, serveApp(t, hub, app)
}

// serveApp serves app until the end of the test, then closes hub and app,
// and returns the URL of its route /ws.
func serveApp(t testing.TB, hub *ratchet.Hub, app *ratchet.App) string {
	srv := httptest.NewServer(app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hub.Close(ctx)
		_ = app.Shutdown(ctx)
		srv.CloseClientConnections()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func dialWS(ctx context.Context, t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c := dialOnly(ctx, t, url)
	if got := readWS(ctx, t, c); got != "ready" {
		t.Fatalf("first message %q, want ready", got)
	}
	return c
}

// dialOnly opens a WebSocket to url, closed at the end of the test.
func dialOnly(ctx context.Context, t testing.TB, url string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readWS(ctx context.Context, t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(data)
}
