package metrics_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/metrics"
)

// BenchmarkEcho measures a round trip of 64 bytes with metrics off and on,
// in one run, so the cost of the observer reads as the difference:
//
//	go test -run - -bench Echo -count 6 ./metrics
func BenchmarkEcho(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		var opts []ratchet.WsOption
		if on {
			name = "on"
			opts = append(opts, ratchet.WithObserver(metrics.New(prometheus.NewRegistry())))
		}
		b.Run(name, func(b *testing.B) {
			echo := ratchet.ComponentFuncs{Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }}
			s := ratchet.NewWsServer(echo, opts...)
			srv := httptest.NewServer(s)
			defer srv.Close()
			defer func() { _ = s.Shutdown(context.Background()) }()
			ctx := context.Background()
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseNow()
			msg := []byte(strings.Repeat("x", 64))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
