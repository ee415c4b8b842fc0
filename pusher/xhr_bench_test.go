package pusher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/pusher"
)

// BenchmarkTransports delivers events triggered from Go, in rounds of 100,
// to one client subscribed to a channel over each transport, client and
// server in this process: the cost per delivered event (ns/op, B/op,
// allocs/op) of the HTTP transports next to the WebSocket.
//
//	go test -run '^$' -bench BenchmarkTransports -benchmem ./pusher
func BenchmarkTransports(b *testing.B) {
	for _, transport := range []string{"ws", "xhr_streaming", "xhr_polling"} {
		b.Run(transport, func(b *testing.B) { benchTransport(b, transport) })
	}
}

const benchRound = 100

func benchTransport(b *testing.B, transport string) {
	hub := ratchet.NewHub(pusher.CacheHistory(testApp))
	// A shorter session timeout than the default: Shutdown, at the end
	// (not timed), waits for the session the client leaves behind. Not too
	// short: the client does not poll while it triggers a round.
	srv, err := pusher.NewServer(hub, []pusher.App{testApp},
		pusher.WithHTTPTransports(pusher.HTTPTransports{SessionTimeout: time.Second}))
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer func() {
		b.StopTimer()
		_ = srv.Shutdown(context.Background())
		hs.Close()
		_ = hub.Close(context.Background())
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// lines yields the client's Pusher frames, one by one; send sends one.
	var lines func() string
	var send func(string)
	polls := 0
	switch transport {
	case "ws":
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/app/"+testApp.Key+"?protocol=7", nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.CloseNow()
		lines = func() string {
			_, m, err := c.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			return string(m)
		}
		send = func(m string) { _ = c.Write(ctx, websocket.MessageText, []byte(m)) }
	default:
		base := hs.URL + "/pusher/app/" + testApp.Key + "/1/bench/"
		post := func(kind, body string) *http.Response {
			req, _ := http.NewRequestWithContext(ctx, "POST", base+kind+"?protocol=7", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			return resp
		}
		send = func(m string) {
			resp := post("xhr_send", `[`+string(appendQuoted(m))+`]`)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		var pending []string
		opened := false
		var next func() string // the next line of the server
		if transport == "xhr_streaming" {
			resp := post("xhr_streaming", "")
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			next = func() string {
				if !sc.Scan() {
					b.Fatal("the stream ended")
				}
				return sc.Text()
			}
		} else {
			var body []string
			next = func() string {
				for len(body) == 0 {
					polls++
					resp := post("xhr", "")
					all, _ := io.ReadAll(resp.Body)
					resp.Body.Close()

					body = strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
				}
				l := body[0]
				body = body[1:]
				return l
			}
		}
		lines = func() string {
			for len(pending) == 0 {
				l := next()
				switch {
				case strings.HasPrefix(l, "a"):
					pending = splitFrames(b, l[1:])
				case l == "o" && !opened:
					opened = true
				case l == "o" || strings.HasPrefix(l, "c"):
					b.Fatalf("the session ended: %s", l)
				}
			}
			m := pending[0]
			pending = pending[1:]
			return m
		}
	}
	expect := func(event string) {
		for !strings.Contains(lines(), `"event":"`+event+`"`) {
		}
	}
	expect("pusher:connection_established")
	send(`{"event":"pusher:subscribe","data":{"channel":"bench"}}`)
	expect("pusher_internal:subscription_succeeded")

	data := strings.Repeat("x", 100)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(benchRound, b.N-done)
		for range n {
			if err := srv.Trigger(ctx, []string{"bench"}, "e", data); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			expect("e")
		}
		done += n
	}
	if polls > 0 {
		b.ReportMetric(float64(b.N)/float64(polls), "events/poll")
	}
}

func appendQuoted(s string) []byte { return fmt.Appendf(nil, "%q", s) }

// splitFrames parses the JSON array of strings of an "a" frame.
func splitFrames(b *testing.B, arr string) []string {
	var out []string
	if err := jsonUnmarshal(arr, &out); err != nil {
		b.Fatalf("a frame: %v: %s", err, arr)
	}
	return out
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
