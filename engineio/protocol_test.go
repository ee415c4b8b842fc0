package engineio_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
)

// get makes one request of the protocol and returns its status and body.
func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

type handshake struct {
	Sid          string
	Upgrades     []string
	PingInterval int
	PingTimeout  int
	MaxPayload   int
}

// open makes the handshake of a polling session and returns its URL.
func open(t *testing.T, base string) (string, handshake) {
	t.Helper()
	return openQuery(t, base, "")
}

// openQuery is open with more query parameters (say "&user=ann").
func openQuery(t *testing.T, base, query string) (string, handshake) {
	t.Helper()
	status, body, header := do(t, "GET", base+"/?EIO=4&transport=polling"+query, "")
	if status != 200 || !strings.HasPrefix(body, "0") {
		t.Fatalf("handshake: %d %q", status, body)
	}
	if cc := header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	var hs handshake
	if err := json.Unmarshal([]byte(body[1:]), &hs); err != nil {
		t.Fatal(err)
	}
	return base + "/?EIO=4&transport=polling&sid=" + hs.Sid, hs
}

// pollUntil polls session until the packets received end with suffix, and
// returns them all.
func pollUntil(t *testing.T, session, suffix string) string {
	t.Helper()
	var all []string
	for !strings.HasSuffix(strings.Join(all, "\x1e"), suffix) {
		status, body, _ := do(t, "GET", session, "")
		if status != 200 {
			t.Fatalf("poll: %d %q after %q", status, body, all)
		}
		all = append(all, body)
	}
	return strings.Join(all, "\x1e")
}

// The handshake announces the settings and the websocket upgrade; requests
// with another protocol version, an unknown transport or an unknown sid get
// the protocol's JSON errors.
func TestHandshakeAndRefusals(t *testing.T) {
	rec := newRecorder()
	base := serve(t, engineio.NewHandler(rec, engineio.WithMaxPayload(1000)))
	session, hs := open(t, base)
	if len(hs.Sid) < 22 || hs.PingInterval != 25000 || hs.PingTimeout != 20000 || hs.MaxPayload != 1000 ||
		len(hs.Upgrades) != 1 || hs.Upgrades[0] != "websocket" {
		t.Fatalf("handshake %+v", hs)
	}
	_, other := open(t, base)
	if other.Sid == hs.Sid {
		t.Fatal("two sessions with one sid")
	}
	for _, c := range []struct{ url, body string }{
		{base + "/?EIO=3&transport=polling", `{"code":5,"message":"Unsupported protocol version"}`},
		{base + "/?EIO=4&transport=flash", `{"code":0,"message":"Transport unknown"}`},
		{base + "/?EIO=4&transport=polling&sid=nope", `{"code":1,"message":"Session ID unknown"}`},
	} {
		status, body, _ := do(t, "GET", c.url, "")
		if status != 400 || strings.TrimSpace(body) != c.body {
			t.Errorf("%s: %d %q", c.url, status, body)
		}
	}
	if status, body, _ := do(t, "GET", session, ""); status != 200 || body != "4welcome" {
		t.Fatalf("first poll: %d %q", status, body)
	}
	for _, sid := range []string{hs.Sid, other.Sid} {
		url := base + "/?EIO=4&transport=polling&sid=" + sid
		if status, body, _ := do(t, "POST", url, "1"); status != 200 || body != "ok" {
			t.Fatalf("close packet: %d %q", status, body)
		}
		waitConn(t, rec.closed, "OnClose")
	}
}

// A foreign Origin is refused on the handshake and on the requests of a
// session; the Authenticator refuses a handshake, or names the session's
// user.
func TestOriginAndAuthenticate(t *testing.T) {
	rec := newRecorder()
	base := serve(t, engineio.NewHandler(rec, engineio.WithOrigins("good.example"),
		engineio.WithAuthenticate(func(r *http.Request) (string, error) {
			if u := r.URL.Query().Get("user"); u != "" {
				return u, nil
			}
			return "", &ratchet.RejectError{Status: http.StatusForbidden, Reason: "who are you?"}
		})))
	get := func(url, origin string) int {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := get(base+"/?EIO=4&transport=polling&user=ann", "https://evil.example"); status != http.StatusForbidden {
		t.Fatalf("foreign origin: %d", status)
	}
	if status := get(base+"/?EIO=4&transport=polling", "https://good.example"); status != http.StatusForbidden {
		t.Fatalf("refused by the Authenticator: %d", status)
	}
	session, _ := openQuery(t, base, "&user=ann")
	conn := waitConn(t, rec.opened, "OnOpen")
	if conn.User() != "ann" {
		t.Fatalf("User %q", conn.User())
	}
	if status := get(session, "https://evil.example"); status != http.StatusForbidden {
		t.Fatalf("foreign origin on a session: %d", status)
	}
	if status, _, _ := do(t, "POST", session, "1"); status != 200 {
		t.Fatalf("close: %d", status)
	}
	waitConn(t, rec.closed, "OnClose")
}

// A second poll while one is pending closes the session, as the protocol
// says: one of the two gets 400, the other the close packet; OnError
// receives ErrProtocol, then OnClose runs once.
func TestSecondPollClosesSession(t *testing.T) {
	rec := newRecorder()
	base := serve(t, engineio.NewHandler(rec))
	session, _ := open(t, base)
	waitConn(t, rec.opened, "OnOpen")
	if _, body, _ := do(t, "GET", session, ""); body != "4welcome" {
		t.Fatalf("first poll %q", body)
	}
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i := range results {
		wg.Go(func() {
			status, body, _ := do(t, "GET", session, "")
			results[i] = http.StatusText(status) + " " + body
		})
	}
	wg.Wait()
	if !(strings.HasPrefix(results[0], "Bad Request") && results[1] == "OK 1" ||
		strings.HasPrefix(results[1], "Bad Request") && results[0] == "OK 1") {
		t.Fatalf("two polls answered %q", results)
	}
	waitConn(t, rec.closed, "OnClose")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !errors.Is(rec.errs[0], engineio.ErrProtocol) || rec.closes != 1 {
		t.Fatalf("errors %v, %d OnClose", rec.errs, rec.closes)
	}
}

// A POST body over maxPayload gets 413 and ends the session with
// ErrProtocol; the packets of a POST within it reach OnMessage in order.
func TestPostLimits(t *testing.T) {
	rec := newRecorder()
	base := serve(t, engineio.NewHandler(rec, engineio.WithMaxPayload(100)))
	session, _ := open(t, base)
	waitConn(t, rec.opened, "OnOpen")
	if status, body, _ := do(t, "POST", session, "4one\x1e4two\x1ebAAE="); status != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", status, body)
	}
	if got := pollUntil(t, session, "bAAE="); got != "4welcome\x1e4echo:one\x1e4echo:two\x1ebAAE=" {
		t.Fatalf("polls: %q", got)
	}
	if status, _, _ := do(t, "POST", session, "4"+strings.Repeat("x", 100)); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST over maxPayload: %d", status)
	}
	waitConn(t, rec.closed, "OnClose")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !errors.Is(rec.errs[0], engineio.ErrProtocol) {
		t.Fatalf("errors %v", rec.errs)
	}
}

// A POST with more packets than WithMaxPacketsPerPost allows gets 413 and
// ends the session before any of its packets reaches OnMessage.
func TestPostPacketLimit(t *testing.T) {
	rec := newRecorder()
	base := serve(t, engineio.NewHandler(rec, engineio.WithMaxPacketsPerPost(3)))
	session, _ := open(t, base)
	waitConn(t, rec.opened, "OnOpen")
	if status, body, _ := do(t, "POST", session, "4a\x1e4b\x1e4c"); status != 200 || body != "ok" {
		t.Fatalf("POST of 3 packets: %d %q", status, body)
	}
	if status, _, _ := do(t, "POST", session, "4d\x1e4e\x1e4f\x1e4g"); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST of 4 packets: %d", status)
	}
	waitConn(t, rec.closed, "OnClose")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !errors.Is(rec.errs[0], engineio.ErrProtocol) {
		t.Fatalf("errors %v", rec.errs)
	}
	for _, m := range rec.got {
		if m == "d" {
			t.Fatalf("a packet of the refused POST reached OnMessage: %q", rec.got)
		}
	}
}

// Sends to a session nobody polls are bounded by the send queue: once it
// is full, Send fails with ErrSlowConsumer, OnError receives it, the queue
// is dropped, and the polls get what had been handed to the session, then
// the close packet.
func TestSlowConsumer(t *testing.T) {
	const queue = 4
	rec := newRecorder()
	base := serve(t, engineio.NewHandler(rec, engineio.WithSendQueue(queue)))
	session, _ := open(t, base)
	conn := waitConn(t, rec.opened, "OnOpen")
	var err error
	sent := 0
	for ; sent < 3*queue && err == nil; sent++ {
		err = conn.Send(ratchet.Message{Type: ratchet.MessageText, Data: []byte("m")})
	}
	if !errors.Is(err, ratchet.ErrSlowConsumer) {
		t.Fatalf("%d sends: %v", sent, err)
	}
	got := pollUntil(t, session, "1") // the close packet; no message ends with "1"
	if n := strings.Count(got, "4m"); n >= sent {
		t.Fatalf("after %d sends, the polls got %d messages: %q", sent, n, got)
	}
	waitConn(t, rec.closed, "OnClose")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !errors.Is(rec.errs[0], ratchet.ErrSlowConsumer) {
		t.Fatalf("errors %v", rec.errs)
	}
}

// The Conn of a session keeps the guarantees of a WebSocket connection: a
// component's Close sends what is queued, then the close packet, then
// OnClose runs once and Send fails with ErrClosed; a panic in OnMessage is
// reported to OnError as a *ratchet.PanicError and closes the session.
func TestConnCloseAndPanic(t *testing.T) {
	type end struct {
		errs []error
	}
	ends := make(chan end, 2)
	var mu sync.Mutex
	var errs []error
	comp := ratchet.ComponentFuncs{
		Message: func(c ratchet.Conn, m ratchet.Message) {
			switch string(m.Data) {
			case "bye":
				_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: []byte("last words")})
				_ = c.Close(ratchet.StatusNormalClosure, "bye")
			case "panic":
				panic("component bug")
			}
		},
		Error: func(c ratchet.Conn, err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		},
		Close: func(c ratchet.Conn) {
			if err := c.Send(ratchet.Message{Type: ratchet.MessageText, Data: []byte("late")}); !errors.Is(err, ratchet.ErrClosed) {
				t.Errorf("Send in OnClose: %v", err)
			}
			if c.Context().Err() == nil {
				t.Error("Context not done in OnClose")
			}
			mu.Lock()
			ends <- end{errs}
			errs = nil
			mu.Unlock()
		},
	}
	base := serve(t, engineio.NewHandler(comp))

	session, _ := open(t, base)
	if status, _, _ := do(t, "POST", session, "4bye"); status != 200 {
		t.Fatalf("POST: %d", status)
	}
	if got := pollUntil(t, session, "1"); got != "4last words\x1e1" {
		t.Fatalf("polls after Close: %q", got)
	}
	if e := <-ends; len(e.errs) != 0 {
		t.Fatalf("OnError after a clean Close: %v", e.errs)
	}

	session, _ = open(t, base)
	if status, _, _ := do(t, "POST", session, "4panic"); status != 200 {
		t.Fatalf("POST: %d", status)
	}
	if got := pollUntil(t, session, "1"); got != "1" {
		t.Fatalf("polls after the panic: %q", got)
	}
	e := <-ends
	var pe *ratchet.PanicError
	if len(e.errs) != 1 || !errors.As(e.errs[0], &pe) || pe.Value != "component bug" {
		t.Fatalf("OnError after a panic: %v", e.errs)
	}
}
