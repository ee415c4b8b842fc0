package forward_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokertest"
)

// BenchmarkRoundTrip measures one request answered by its owner: served
// where it lands (local), or forwarded over a MemoryBroker or Redis. The
// request carries 100 bytes, the answer 1 KB, about a POST and a poll of
// a chat. Each op is one HTTP request from a client on loopback.
func BenchmarkRoundTrip(b *testing.B) {
	answer := bytes.Repeat([]byte("x"), 1024)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write(answer)
	})
	for _, tc := range []struct {
		name  string
		pair  func(b *testing.B) (ratchet.Broker, ratchet.Broker)
		local bool
	}{
		{name: "local", local: true, pair: func(*testing.B) (ratchet.Broker, ratchet.Broker) {
			m := ratchet.NewMemoryBroker()
			return m, m
		}},
		{name: "memory", pair: func(*testing.B) (ratchet.Broker, ratchet.Broker) {
			m := ratchet.NewMemoryBroker()
			return m, m
		}},
		{name: "redis", pair: func(b *testing.B) (ratchet.Broker, ratchet.Broker) {
			prefix := brokertest.Topic(b) + ":"
			return redisBroker(b, prefix), redisBroker(b, prefix)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bA, bB := tc.pair(b)
			owner := node(b, bB, handler, 0)
			a := node(b, bA, handler, 0)
			to := owner.ID
			if tc.local {
				to = a.ID
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.Forward(w, r, to()) }))
			defer srv.Close()
			client := srv.Client()
			body := bytes.Repeat([]byte("y"), 100)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Post(srv.URL, "text/plain", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(answer)) {
					b.Fatalf("answer of %d bytes", n)
				}
			}
		})
	}
}
