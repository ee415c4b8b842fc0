package push

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet"
)

// FuzzControl feeds the WebSocket endpoint's control message parser.
// Checked in: testdata/fuzz/FuzzControl.
func FuzzControl(f *testing.F) {
	for _, s := range []string{
		`{"subscribe":"news"}`,
		`{"unsubscribe":"news"}`,
		` {"subscribe" : "caf\u00e9"} `,
		`{"subscribe":"a","unsubscribe":"b"}`,
		`{"subscribe":null}`,
		`{"subscribe":1}`,
		`{"subscribe":"a"}{}`,
		`{"Subscribe":"a"}`,
		`{"subscribe":"a","x":1}`,
		`[]`, `null`, `"subscribe"`, ``, `{`,
		`{"subscribe":"` + strings.Repeat("a", 2000) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctl, err := parseControl(data, DefaultMaxControlSize)
		if len(data) > DefaultMaxControlSize {
			if err != errControlTooLarge {
				t.Fatalf("oversized input: err = %v", err)
			}
			return
		}
		if err != nil {
			if err != errMalformed {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !utf8.ValidString(ctl.topic) {
			t.Fatalf("topic %q is not UTF-8", ctl.topic)
		}
		// What parses round-trips, and the reply is one JSON object.
		key := "unsubscribe"
		if ctl.subscribe {
			key = "subscribe"
		}
		again, err := json.Marshal(map[string]string{key: ctl.topic})
		if err != nil {
			t.Fatal(err)
		}
		if len(again) <= DefaultMaxControlSize {
			ctl2, err := parseControl(again, DefaultMaxControlSize)
			if err != nil || ctl2 != ctl {
				t.Fatalf("round trip of %s: %+v, %v", again, ctl2, err)
			}
		}
		r := reply{Subscribed: &ctl.topic}.encode()
		if !json.Valid(r) {
			t.Fatalf("reply %s is not JSON", r)
		}
	})
}

// FuzzPublishBody feeds the publish API's body parser.
// Checked in: testdata/fuzz/FuzzPublishBody.
func FuzzPublishBody(f *testing.F) {
	for _, s := range []string{
		`{"topic":"news","data":"hello"}`,
		`{"topic":"news","data":{"title":"hi","n":[1,2.5e3,null]}}`,
		`{"topic":"files","data":"AAECAw==","binary":true}`,
		`{"user":"alice","data":"you have mail","id":"8f2c41"}`,
		`{"topic":"news","user":"bob","data":"x"}`,
		`{"topic":"@all","data":"x"}`,
		`{"topic":"news","data":null}`,
		`{"topic":"news","data":"%%","binary":true}`,
		`{"topic":"news","data":"x","extra":true}`,
		`{"topic":"news","data":"\ud800"}`,
		`{"topic":"news","data":"x"} trailing`,
		`[1]`, ``, `{"data":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parsePublication(body)
		if err != nil {
			be, ok := err.(*bodyError)
			if !ok || be.code == "" || be.msg == "" || !utf8.ValidString(be.msg) {
				t.Fatalf("error %#v", err)
			}
			return
		}
		if (p.Topic == "") == (p.User == "") {
			t.Fatalf("want exactly one target: %+v", p)
		}
		if p.Topic != "" && !ratchet.ValidTopic(p.Topic) {
			t.Fatalf("invalid topic %q accepted", p.Topic)
		}
		if len(p.User) > 256 || len(p.ID) > MaxIDLen {
			t.Fatalf("oversized field accepted: %+v", p)
		}
		switch p.Message.Type {
		case ratchet.MessageText:
			if !utf8.Valid(p.Message.Data) {
				t.Fatalf("text is not UTF-8: %q", p.Message.Data)
			}
		case ratchet.MessageBinary:
		default:
			t.Fatalf("message type %v", p.Message.Type)
		}
		// Bounded: at most 3 bytes out (U+FFFD) per byte in.
		if len(p.Message.Data) > 3*len(body) {
			t.Fatalf("%d bytes out of %d in", len(p.Message.Data), len(body))
		}
	})
}

// FuzzSignature feeds the signature check with arbitrary headers, and checks
// that only the right MAC passes and that Sign's output always does.
// Checked in: testdata/fuzz/FuzzSignature.
func FuzzSignature(f *testing.F) {
	body := []byte(`{"topic":"news","data":"hello"}`)
	ts, sig := Sign([]byte("secret"), body, time.Unix(1767225600, 0))
	f.Add([]byte("secret"), body, ts, sig, int64(0))
	f.Add([]byte("secret"), body, ts, strings.ToUpper(sig), int64(299))
	f.Add([]byte("secret"), body, ts, sig, int64(-301))
	f.Add([]byte("secret"), body, "+1767225600", sig, int64(0))
	f.Add([]byte("secret"), body, "1767225600 ", sig, int64(0))
	f.Add([]byte("secret"), body, ts, "sha256=", int64(0))
	f.Add([]byte("secret"), body, ts, "sha256="+strings.Repeat("g", 64), int64(0))
	f.Add([]byte(""), []byte(""), "0", "sha256=00", int64(0))
	f.Add([]byte("k"), []byte("\x00\xff"), "99999999999999999999", "SHA256=ab", int64(1<<40))
	f.Fuzz(func(t *testing.T, secret, body []byte, tsHeader, sigHeader string, offset int64) {
		if len(secret) == 0 {
			secret = []byte{0}
		}
		const window = 5 * time.Minute
		base, ok := parseTimestamp(tsHeader)
		if !ok {
			base = 1767225600
		}
		now := time.Unix(base, 0).Add(time.Duration(offset%(1<<20)) * time.Second)

		// Arbitrary headers: no panic, and success only with the real MAC.
		if gotTS, mac, err := verify(secret, tsHeader, sigHeader, body, now, window); err == nil {
			want := computeMAC(secret, tsHeader, body)
			if mac != want || gotTS != base {
				t.Fatalf("accepted with a wrong MAC or timestamp")
			}
			if !strings.EqualFold(sigHeader, SignaturePrefix+hex.EncodeToString(want[:])) {
				t.Fatalf("accepted signature %q", sigHeader)
			}
		}

		// Sign's headers always pass within the window and fail outside it.
		at := time.Unix(base, 0)
		ts, sig := Sign(secret, body, at)
		_, _, err := verify(secret, ts, sig, body, now, window)
		inWindow := now.Unix()-at.Unix() <= 300 && at.Unix()-now.Unix() <= 300
		if inWindow && err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if !inWindow && err != errStale {
			t.Fatalf("outside the window: %v", err)
		}
		if inWindow {
			// Any change to the body breaks it.
			changed := append(bytes.Clone(body), 'x')
			if _, _, err := verify(secret, ts, sig, changed, now, window); err != errBadSignature {
				t.Fatalf("changed body: %v", err)
			}
		}
	})
}

// FuzzPublishHandler runs whole requests through the publish handler: any
// body and headers, signed correctly or not, get a JSON answer with one of
// the documented statuses. Checked in: testdata/fuzz/FuzzPublishHandler.
func FuzzPublishHandler(f *testing.F) {
	f.Add([]byte(`{"topic":"news","data":"hello"}`), "application/json", "", "", true)
	f.Add([]byte(`{"topic":"news","data":"hello"}`), "text/plain", "", "", true)
	f.Add([]byte(`{"user":"u","data":{"a":1}}`), "application/json; charset=utf-8", "", "", true)
	f.Add([]byte(`{"topic":"@all","data":"x"}`), "application/json", "", "", true)
	f.Add([]byte(`{"topic":"news","data":"hello"}`), "application/json", "1767225600", "sha256=00", false)
	f.Add([]byte(`not json`), "application/json", "", "", true)
	f.Add(bytes.Repeat([]byte("x"), 5000), "application/json", "", "", true)
	f.Add([]byte(``), "", "", "", false)

	hub := ratchet.NewHub()
	secret := []byte("fuzz-secret")
	clock := time.Unix(1767225600, 0)
	h := NewPublishHandler(hub, WithSecret(secret), WithMaxBodySize(4096), WithReplayCacheSize(1024),
		WithClock(func() time.Time { return clock }))
	allowed := map[int]bool{200: true, 400: true, 401: true, 413: true, 415: true}
	f.Fuzz(func(t *testing.T, body []byte, contentType, tsHeader, sigHeader string, sign bool) {
		req := httptest.NewRequest(http.MethodPost, "/publish", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if sign {
			// Vary the timestamp so that repeated inputs are not replays.
			tsHeader, sigHeader = Sign(secret, body, clock.Add(-time.Duration(len(body)%200)*time.Second))
		}
		if tsHeader != "" {
			req.Header.Set(HeaderTimestamp, tsHeader)
		}
		if sigHeader != "" {
			req.Header.Set(HeaderSignature, sigHeader)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if !allowed[w.Code] {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body)
		}
		if w.Code == 200 {
			if _, ok := out["delivered"]; !ok {
				t.Fatalf("no count: %s", w.Body)
			}
		} else if out["error"] == nil || out["message"] == nil {
			t.Fatalf("error without code or message: %s", w.Body)
		}
	})
}

// FuzzSSEEvent checks that any message written as an event reads back, with
// the HTML standard's parser, as the same data (line breaks as LF).
// Checked in: testdata/fuzz/FuzzSSEEvent.
func FuzzSSEEvent(f *testing.F) {
	for _, s := range []string{"", "a", "a\nb", "a\r\nb", "a\rb", "\n", "\r\n\r\n", " lead", ":colon", "data: x\n\nid: 9", "\x00"} {
		f.Add([]byte(s), false, uint64(1))
	}
	f.Add([]byte{0, 1, 2, 255}, true, uint64(1<<63))
	f.Fuzz(func(t *testing.T, data []byte, binary bool, id uint64) {
		msg := ratchet.Message{Type: ratchet.MessageText, Data: data}
		if binary {
			msg.Type = ratchet.MessageBinary
		}
		wire := appendEvent(strconv.AppendUint([]byte("id: "), id, 10), msg)
		p := newSSEParser(bytes.NewReader(wire))
		ev, err := p.next()
		if err != nil {
			t.Fatalf("no event in %q: %v", wire, err)
		}
		if _, err := p.next(); err == nil {
			t.Fatalf("more than one event in %q", wire)
		}
		if ev.ID != strconv.FormatUint(id, 10) {
			t.Fatalf("id %q, want %d", ev.ID, id)
		}
		want := string(data)
		if binary {
			if ev.Event != "binary" {
				t.Fatalf("event type %q", ev.Event)
			}
			want = base64.StdEncoding.EncodeToString(data)
		} else {
			if ev.Event != "message" {
				t.Fatalf("event type %q", ev.Event)
			}
			want = strings.ReplaceAll(strings.ReplaceAll(want, "\r\n", "\n"), "\r", "\n")
		}
		if ev.Data != want {
			t.Fatalf("data %q, want %q (wire %q)", ev.Data, want, wire)
		}
	})
}
