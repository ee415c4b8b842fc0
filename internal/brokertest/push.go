//go:build unix

package brokertest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/push"
)

// PushNode is a node that serves browsers from a Hub on a Broker: package
// push's WebSocket endpoint at /push and its Server-Sent Events at /events.
type PushNode struct {
	Hub *ratchet.Hub
	URL string // http://host:port
}

// NewPushNode serves a PushNode on b until the end of the test.
func NewPushNode(t *testing.T, b ratchet.Broker) *PushNode {
	hub := ratchet.NewHub(ratchet.WithBroker(b))
	app := ratchet.NewApp("", 0)
	app.Route("/push", push.NewEndpoint(hub), []string{"*"})
	app.Handle("GET /events", push.NewSSE(hub))
	srv := httptest.NewServer(app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
		srv.CloseClientConnections()
		srv.Close()
		_ = hub.Close(ctx)
	})
	return &PushNode{Hub: hub, URL: srv.URL}
}

// Dial opens a WebSocket to /push?query, closed at the end of the test.
func (n *PushNode) Dial(ctx context.Context, t *testing.T, query string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/push?"+query, nil)
	if err != nil {
		t.Fatalf("dial /push?%s: %v", query, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// ExpectFrame reads the next message of c and checks its type and payload;
// a text frame must be valid UTF-8, or a browser would fail the connection.
func ExpectFrame(ctx context.Context, t *testing.T, c *websocket.Conn, typ websocket.MessageType, want string) {
	t.Helper()
	got, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got == websocket.MessageText && !utf8.Valid(data) {
		t.Fatalf("a text frame that is not UTF-8: %q", data)
	}
	if got != typ || string(data) != want {
		t.Fatalf("got %v %q, want %v %q", got, data, typ, want)
	}
}

// ExpectJSON reads the next message of c and checks it is the JSON want.
func ExpectJSON(ctx context.Context, t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var g, w any
	if json.Unmarshal(data, &g) != nil || json.Unmarshal([]byte(want), &w) != nil || !jsonEqual(g, w) {
		t.Fatalf("got %s, want %s", data, want)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// getEvents sends GET /events?query and returns the answer.
func (n *PushNode) getEvents(ctx context.Context, t *testing.T, query string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// eventsStatus opens /events?query and returns the status of the answer.
func (n *PushNode) eventsStatus(ctx context.Context, t *testing.T, query string) int {
	t.Helper()
	resp := n.getEvents(ctx, t, query)
	resp.Body.Close()
	return resp.StatusCode
}

func writeWS(ctx context.Context, t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// EventStream reads a Server-Sent Events stream.
type EventStream struct {
	r *bufio.Reader
}

// Event is one event of a stream.
type Event struct{ Type, Data string }

// Events opens /events?query and reads past its retry hint: the stream's
// subscriptions are then in effect. It is closed at the end of the test.
func (n *PushNode) Events(ctx context.Context, t *testing.T, query string) *EventStream {
	t.Helper()
	resp := n.getEvents(ctx, t, query)
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events?%s: %s", query, resp.Status)
	}
	s := &EventStream{r: bufio.NewReader(resp.Body)}
	if line, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream starts with %q, %v", line, err)
	}
	return s
}

// Next returns the next event, skipping comments, ids and the blank lines
// between events.
func (s *EventStream) Next(t *testing.T) Event {
	t.Helper()
	e := Event{Type: "message"}
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if !utf8.ValidString(line) {
			t.Fatalf("an event stream line that is not UTF-8: %q", line)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != nil:
			e.Data = strings.Join(data, "\n")
			return e
		case strings.HasPrefix(line, "event: "):
			e.Type = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

// RawPublish publishes data on topic's channel or subject as a program
// other than the broker would, saying it is text: a Redis PUBLISH of the
// raw bytes, a NATS message with "Ratchet-Type: text".
type RawPublish func(t *testing.T, b ratchet.Broker, topic string, data []byte)

// NewReportingNode returns a new node of the cluster that hands its errors
// to onError. The suite closes it.
type NewReportingNode func(t *testing.T, onError func(error)) ratchet.Broker

// RunInvalidText publishes text that is not valid UTF-8 straight into the
// broker, to a topic and to every connection (the Hub's "@all"), and checks
// that a WebSocket client receives it as a binary frame and stays
// connected, that an event stream receives it as a binary event, and that
// the broker reports it with an error wrapping ratchet.ErrInvalidUTF8.
func RunInvalidText(t *testing.T, newNode NewReportingNode, raw RawPublish) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := new(ErrorLog)
	b := newNode(t, log.Report)
	t.Cleanup(func() { _ = b.Close() })
	node := NewPushNode(t, b)
	topic := Topic(t)
	ws := node.Dial(ctx, t, "topic="+topic)
	ExpectJSON(ctx, t, ws, `{"subscribed":"`+topic+`"}`)
	es := node.Events(ctx, t, "topic="+topic)

	const bad = "caf\xe9 \xff\xfe"
	raw(t, b, topic, []byte(bad))
	if _, err := node.Hub.Publish(ctx, topic, ratchet.Text("after")); err != nil {
		t.Fatal(err)
	}
	ExpectFrame(ctx, t, ws, websocket.MessageBinary, bad)
	ExpectFrame(ctx, t, ws, websocket.MessageText, "after")
	binary := Event{Type: "binary", Data: base64.StdEncoding.EncodeToString([]byte(bad))}
	if e := es.Next(t); e != binary {
		t.Fatalf("event %+v, want %+v", e, binary)
	}
	if e := es.Next(t); e != (Event{Type: "message", Data: "after"}) {
		t.Fatalf("event %+v, want the text after", e)
	}

	// The same on "@all": every connection gets it, none is cut.
	raw(t, b, "@all", []byte(bad))
	if _, err := node.Hub.Broadcast(ctx, ratchet.Text("to all")); err != nil {
		t.Fatal(err)
	}
	ExpectFrame(ctx, t, ws, websocket.MessageBinary, bad)
	ExpectFrame(ctx, t, ws, websocket.MessageText, "to all")
	if e := es.Next(t); e != binary {
		t.Fatalf("event %+v, want %+v", e, binary)
	}

	var reported []error
	WaitFor(t, "both reported", func() bool {
		reported = reported[:0]
		for _, err := range log.Errors() {
			if errors.Is(err, ratchet.ErrInvalidUTF8) {
				reported = append(reported, err)
			}
		}
		return len(reported) == 2
	})
	t.Logf("reported: %v", reported)
}
