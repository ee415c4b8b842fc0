package pusher

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/replay"
)

// FuzzParseMessage feeds the parser of client messages, and what it reads
// into the frames the server builds from it. Checked in:
// testdata/fuzz/FuzzParseMessage.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"k:00","channel_data":"{\"user_id\":1}"}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"news\"}"}`,
		`{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"u\"}"}}`,
		`{"event":"client-typing","channel":"private-x","data":{"who":"\u00e9\u2028"}}`,
		`{"event":"e","data":null}`, `{"event":""}`, `{"event":1}`, `{"event":"e","event":"f"}`,
		`[]`, `"x"`, ``, `{`, `{"event":"e"}garbage`, "{\"event\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMessage(b)
		if err != nil {
			if err != errMalformed {
				t.Fatalf("error %v", err)
			}
			return
		}
		if m.Event == "" || !utf8.ValidString(m.Event) || !utf8.ValidString(m.Channel) {
			t.Fatalf("parsed %+v", m)
		}
		var data []byte
		if m.Data != nil {
			data = m.Data
		}
		frame := appendFrame(nil, m.Event, m.Channel, data, m.Channel)
		var back struct {
			Event   string          `json:"event"`
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
			UserID  string          `json:"user_id"`
		}
		if err := json.Unmarshal(frame, &back); err != nil {
			t.Fatalf("frame %s: %v", frame, err)
		}
		if back.Event != m.Event || back.Channel != m.Channel || back.UserID != m.Channel {
			t.Fatalf("round trip: %+v -> %s", m, frame)
		}
		var sd subscribeData
		if decodeData(m.Data, &sd) == nil && sd.ChannelData != "" {
			if mem, err := parseMember(sd.ChannelData, "user_id"); err == nil {
				id, _, ok := decodeMember(mem.encoded)
				if !ok || id != mem.id || !json.Valid([]byte(mem.encoded)) {
					t.Fatalf("member %+v", mem)
				}
			}
		}
		var sig signinData
		_ = decodeData(m.Data, &sig)
	})
}

// FuzzJSONString checks the string encoder against encoding/json.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\/\n\r\t\b\f\x00\x1f", "caf\u00e9 \u2028\u2029", "\xff\xfe", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(ours, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, ours, err)
		}
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("%q: %q, encoding/json %q", s, got, want)
		}
		if bytes.Contains(ours, []byte("\u2028")) || bytes.Contains(ours, []byte("\u2029")) {
			t.Fatalf("%s holds a raw line separator", ours)
		}
	})
}

// signQuery signs an HTTP API request as pusher-http-node does, written
// here apart from the server's code: keys sorted, "k=v" joined by "&".
func signQuery(secret, method, path string, params map[string]string, body []byte, ts int64) url.Values {
	p := map[string]string{"auth_key": "k", "auth_timestamp": strconv.FormatInt(ts, 10), "auth_version": "1.0"}
	if len(body) > 0 {
		sum := md5.Sum(body)
		p["body_md5"] = hex.EncodeToString(sum[:])
	}
	for k, v := range params {
		p[k] = v
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	q := url.Values{}
	for i, k := range keys {
		pairs[i] = k + "=" + p[k]
		q.Set(k, p[k])
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method + "\n" + path + "\n" + strings.Join(pairs, "&")))
	q.Set("auth_signature", hex.EncodeToString(m.Sum(nil)))
	return q
}

// FuzzAuthenticate feeds the HTTP API's signature check: an arbitrary
// query is never accepted (it would need the secret); a request signed as
// the server libraries sign it is accepted once within the window, and
// refused outside it, as a replay, or with its body or any parameter
// changed. Checked in: testdata/fuzz/FuzzAuthenticate.
func FuzzAuthenticate(f *testing.F) {
	f.Add("POST", "/apps/1/events", "", []byte(`{"name":"e","channel":"a","data":"1"}`), "", int64(0))
	f.Add("GET", "/apps/1/channels", "filter_by_prefix=presence-&info=user_count", []byte(nil), "", int64(-600))
	f.Add("GET", "/apps/1/channels/presence-a", "info=subscription_count", []byte(nil), "auth_key=k&auth_signature=00", int64(601))
	f.Add("POST", "/apps/1/users/u/terminate_connections", "x=a b&y=%zz", []byte("{}"), "auth_key=k&auth_timestamp=1800000000&auth_version=1.0&auth_signature="+strings.Repeat("0", 64), int64(-601))
	f.Add("POST", "/apps/1/events", "", []byte("x"), "%", int64(1<<40))

	clock := time.Unix(1_800_000_000, 0)
	s, err := NewServer(ratchet.NewHub(), []App{{ID: "1", Key: "k", Secret: "fuzz-secret"}}, WithClock(func() time.Time { return clock }))
	if err != nil {
		f.Fatal(err)
	}
	a := s.apps[0]
	f.Fuzz(func(t *testing.T, method, path, params string, body []byte, raw string, skew int64) {
		if !validMethodPath(method, path) {
			return
		}
		s.replay = replay.New(64, s.cfg.maxSkew)
		req := func(query string, body []byte) *apiError {
			r := httptest.NewRequest(method, "http://x"+path, nil)
			r.URL.RawQuery = query
			return s.authenticate(a, r, body)
		}
		if req(raw, body) == nil {
			t.Fatalf("arbitrary query %q accepted", raw)
		}

		extra := map[string]string{}
		parsed, _ := url.ParseQuery(params)
		for k, vs := range parsed {
			if k == "" || k != strings.ToLower(k) || strings.HasPrefix(k, "auth_") || k == "body_md5" || len(vs) != 1 {
				return // not what a server library sends
			}
			extra[k] = vs[0]
		}
		skew %= 1 << 20
		ts := clock.Unix() + skew
		q := signQuery("fuzz-secret", method, path, extra, body, ts)
		err := req(q.Encode(), body)
		inWindow := skew >= -600 && skew <= 600
		if inWindow != (err == nil) {
			t.Fatalf("skew %d: %v", skew, err)
		}
		if !inWindow {
			return
		}
		if req(q.Encode(), body) == nil {
			t.Fatal("replay accepted")
		}
		s.replay = replay.New(64, s.cfg.maxSkew)
		if req(q.Encode(), append(bytes.Clone(body), 'x')) == nil {
			t.Fatal("changed body accepted")
		}
		for k := range q {
			if k == "auth_signature" {
				continue
			}
			changed := url.Values{}
			for k2, v := range q {
				changed[k2] = v
			}
			changed.Set(k, q.Get(k)+"1")
			if req(changed.Encode(), body) == nil {
				t.Fatalf("changed %s accepted", k)
			}
		}
	})
}

// validMethodPath keeps the inputs httptest.NewRequest takes.
func validMethodPath(method, path string) bool {
	if method == "" || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?# %") || len(path) > 200 {
		return false
	}
	for i := 0; i < len(method); i++ {
		if c := method[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
