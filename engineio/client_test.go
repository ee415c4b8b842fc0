package engineio_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
	"github.com/ratchetgo/ratchet/internal/jstest"
)

// recorder is a component that answers each text message "cN" with "sN"
// (any other with "echo:" and the message) and records what happened.
type recorder struct {
	opened chan ratchet.Conn
	closed chan ratchet.Conn
	mu     sync.Mutex
	got    []string
	errs   []error
	closes int
}

func newRecorder() *recorder {
	return &recorder{opened: make(chan ratchet.Conn, 16), closed: make(chan ratchet.Conn, 16)}
}

func (r *recorder) OnOpen(c ratchet.Conn) {
	_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: []byte("welcome")})
	r.opened <- c
}

func (r *recorder) OnMessage(c ratchet.Conn, m ratchet.Message) {
	r.mu.Lock()
	r.got = append(r.got, string(m.Data))
	r.mu.Unlock()
	reply := "echo:" + string(m.Data)
	if n, ok := strings.CutPrefix(string(m.Data), "c"); ok && m.Type == ratchet.MessageText {
		reply = "s" + n
	}
	if m.Type == ratchet.MessageBinary {
		_ = c.Send(m)
		return
	}
	_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: []byte(reply)})
}

func (r *recorder) OnError(c ratchet.Conn, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *recorder) OnClose(c ratchet.Conn) {
	r.mu.Lock()
	r.closes++
	r.mu.Unlock()
	r.closed <- c
}

func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func waitConn(t *testing.T, ch chan ratchet.Conn, what string) ratchet.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(jstest.LineTimeout):
		t.Fatalf("no %s within %v", what, jstest.LineTimeout)
	}
	return nil
}

type event struct {
	Event     string
	Transport string
	Data      string
	Reason    string
	Error     string
}

// serve starts h on a loopback server; the cleanup shuts both down.
func serve(t *testing.T, h *engineio.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return srv.URL
}

func start(t *testing.T, url, transports string) *jstest.Process {
	return jstest.Start(t, []string{"engine.io-client"}, "testdata/client.mjs", url, transports)
}

// next returns the client's next event, skipping none.
func next(p *jstest.Process) event {
	var e event
	p.NextJSON(&e)
	return e
}

func expect(t *testing.T, p *jstest.Process, want event) {
	t.Helper()
	if got := next(p); got != want {
		t.Fatalf("client event %+v, want %+v", got, want)
	}
}

// A polling-only engine.io-client session exchanges text and binary
// messages both ways, Send from outside a callback included, and closing
// it ends the Conn with one OnClose and no OnError.
func TestPollingSession(t *testing.T) {
	rec := newRecorder()
	url := serve(t, engineio.NewHandler(rec))
	p := start(t, url, "polling")
	expect(t, p, event{Event: "open", Transport: "polling"})
	conn := waitConn(t, rec.opened, "OnOpen")
	expect(t, p, event{Event: "message", Data: "welcome"})

	p.WriteJSON(map[string]any{"send": "hello ✓"})
	expect(t, p, event{Event: "message", Data: "echo:hello ✓"})
	p.WriteJSON(map[string]any{"binary": "00ff10"})
	expect(t, p, event{Event: "message", Data: "binary:00ff10"})
	if err := conn.Send(ratchet.Message{Type: ratchet.MessageText, Data: []byte("pushed")}); err != nil {
		t.Fatal(err)
	}
	expect(t, p, event{Event: "message", Data: "pushed"})

	p.WriteJSON(map[string]any{"close": true})
	expect(t, p, event{Event: "close", Reason: "forced close"})
	waitConn(t, rec.closed, "OnClose")
	if got := rec.received(); strings.Join(got, "|") != "hello ✓|\x00\xff\x10" {
		t.Fatalf("component received %q", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 0 || rec.closes != 1 {
		t.Fatalf("errors %v, %d OnClose", rec.errs, rec.closes)
	}
}

// A WebSocket-only client (no polling at all) opens its session on the
// WebSocket transport and exchanges messages both ways.
func TestWebSocketOnlySession(t *testing.T) {
	rec := newRecorder()
	url := serve(t, engineio.NewHandler(rec))
	p := start(t, url, "websocket")
	expect(t, p, event{Event: "open", Transport: "websocket"})
	waitConn(t, rec.opened, "OnOpen")
	expect(t, p, event{Event: "message", Data: "welcome"})
	p.WriteJSON(map[string]any{"send": "c7"})
	expect(t, p, event{Event: "message", Data: "s7"})
	p.WriteJSON(map[string]any{"binary": "0102"})
	expect(t, p, event{Event: "message", Data: "binary:0102"})
	p.WriteJSON(map[string]any{"close": true})
	expect(t, p, event{Event: "close", Reason: "forced close"})
	waitConn(t, rec.closed, "OnClose")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 0 || rec.closes != 1 {
		t.Fatalf("errors %v, %d OnClose", rec.errs, rec.closes)
	}
}

// A session that starts on polling upgrades to WebSocket while 1,000
// messages are in flight each way: 500 sent at open on polling, 500 more
// sent the moment the probe succeeded (buffered by the client across the
// switch), each answered by the component. Nothing is lost, duplicated or
// reordered, either way.
func TestUpgradeMidStream(t *testing.T) {
	const n = 1000
	rec := newRecorder()
	url := serve(t, engineio.NewHandler(rec, engineio.WithSendQueue(2*n)))
	p := start(t, url, "polling,websocket")
	// Both bursts are armed before the session opens: sent after the open
	// event instead, the first could follow the second when the probe is
	// quick.
	p.WriteJSON(map[string]any{"burstOnOpen": n / 2, "from": 0})
	p.WriteJSON(map[string]any{"burstOnUpgrading": n / 2, "from": n / 2})
	expect(t, p, event{Event: "open", Transport: "polling"})
	waitConn(t, rec.opened, "OnOpen")

	want, upgrading, upgraded, before := -1, false, false, 0 // -1: "welcome" first
	for want < n {
		e := next(p)
		switch e.Event {
		case "upgrading":
			upgrading = true
		case "upgrade":
			upgraded, before = true, want
		case "message":
			if want < 0 && e.Data == "welcome" {
				want++
				continue
			}
			if e.Data != fmt.Sprintf("s%d", want) {
				t.Fatalf("client received %q, want s%d", e.Data, want)
			}
			want++
		default:
			t.Fatalf("client event %+v", e)
		}
	}
	if !upgrading || !upgraded {
		t.Fatalf("no upgrade: upgrading %v, upgrade %v", upgrading, upgraded)
	}
	t.Logf("upgraded after %d of %d replies", before, n)
	got := rec.received()
	if len(got) != n {
		t.Fatalf("component received %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m != fmt.Sprintf("c%d", i) {
			t.Fatalf("component message %d is %q", i, m)
		}
	}
	p.WriteJSON(map[string]any{"close": true})
	expect(t, p, event{Event: "close", Reason: "forced close"})
	waitConn(t, rec.closed, "OnClose")
}

// A client that vanishes (its event loop frozen: no poll, no pong, its
// sockets still open) is closed after the ping timeout: OnError receives
// ratchet.ErrKeepaliveTimeout, and OnClose runs once.
func TestVanishedClient(t *testing.T) {
	rec := newRecorder()
	h := engineio.NewHandler(rec, engineio.WithPing(50*time.Millisecond, 200*time.Millisecond))
	url := serve(t, h)
	p := start(t, url, "polling")
	expect(t, p, event{Event: "open", Transport: "polling"})
	waitConn(t, rec.opened, "OnOpen")
	expect(t, p, event{Event: "message", Data: "welcome"})
	p.WriteJSON(map[string]any{"freeze": true})
	waitConn(t, rec.closed, "OnClose")
	if h.Len() != 0 {
		t.Fatalf("%d sessions left", h.Len())
	}
	_ = p.Stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !errors.Is(rec.errs[0], ratchet.ErrKeepaliveTimeout) || rec.closes != 1 {
		t.Fatalf("errors %v, %d OnClose", rec.errs, rec.closes)
	}
}
