// Command benchserver is ratchet-go speaking the BENCH PROTOCOL of the
// side-by-side benchmark harness (../shared/bench): WebSocket at /ws on
// 127.0.0.1:$PORT (or -addr); a message starting with 'B' goes to every
// connected client, anything else back to its sender.
//
// It uses the public API only, as a user would write it: a
// MessageComponent and the Hub's Broadcast. What it measures is what users
// get.
//
// BENCH_TOPIC=topic makes every connection subscribe to one topic and 'B'
// messages go out with Hub.Publish on it; BENCH_TOPIC=history does the same
// on a topic that keeps history (positions assigned and carried by every
// delivery): the two rows measure what history costs a fan-out.
//
// BENCH_METRICS=1 turns on package metrics (Prometheus counters on every
// connection and on the Hub, served at /metrics): the row measures what
// observing costs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // served only when PPROF_ADDR is set
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
	"github.com/ratchetgo/ratchet/metrics"
)

// Bench answers the BENCH PROTOCOL.
type Bench struct {
	hub   *ratchet.Hub
	topic string // "" for Hub.Broadcast
}

func (b *Bench) OnOpen(c ratchet.Conn) {
	if b.topic == "" {
		_ = b.hub.Add(context.Background(), c)
		return
	}
	_ = b.hub.Subscribe(context.Background(), c, b.topic)
}

func (b *Bench) OnMessage(from ratchet.Conn, msg ratchet.Message) {
	if len(msg.Data) > 0 && msg.Data[0] == 'B' {
		if b.topic == "" {
			_, _ = b.hub.Broadcast(context.Background(), msg)
		} else {
			_, _ = b.hub.Publish(context.Background(), b.topic, msg)
		}
		return
	}
	_ = from.Send(msg)
}

func (b *Bench) OnClose(ratchet.Conn) {}

func (b *Bench) OnError(c ratchet.Conn, err error) {}

func main() {
	// Flags.
	addr := listen.AddrFlag()
	flag.Parse()

	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go func() { log.Println(http.ListenAndServe(addr, nil)) }()
	}
	app := ratchet.NewApp("", 0) // any Host header; Serve takes the listener
	bench := &Bench{hub: ratchet.NewHub()}
	switch mode := os.Getenv("BENCH_TOPIC"); mode {
	case "":
	case "topic":
		bench.topic = "bench"
	case "history":
		bench.topic = "bench"
		bench.hub = ratchet.NewHub(ratchet.WithHistory("bench", ratchet.HistoryPolicy{}))
	default:
		log.Fatalf("BENCH_TOPIC=%q: want topic or history", mode)
	}
	var opts []ratchet.RouteOption
	if os.Getenv("BENCH_METRICS") == "1" {
		m := metrics.New(prometheus.DefaultRegisterer)
		bench.hub = ratchet.NewHub(ratchet.WithHubObserver(m))
		opts = append(opts, ratchet.WithObserver(m))
		app.Handle("/metrics", promhttp.Handler())
	}
	app.Route("/ws", bench, []string{"*"}, opts...)
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("benchserver: %s/ws\n", listen.URL("ws", l, ""))
	log.Fatal(app.Serve(l))
}
