// Command benchserver is ratchet-go speaking the BENCH PROTOCOL of the
// side-by-side benchmark harness (../shared/bench): WebSocket at /ws on
// 127.0.0.1:$PORT (or -addr); a message starting with 'B' goes to every
// connected client, anything else back to its sender.
//
// It uses the public API only, as a user would write it: a
// MessageComponent and the Hub's Broadcast. What it measures is what users
// get.
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

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
)

// Bench answers the BENCH PROTOCOL.
type Bench struct{ hub *ratchet.Hub }

func (b *Bench) OnOpen(c ratchet.Conn) { _ = b.hub.Add(context.Background(), c) }

func (b *Bench) OnMessage(from ratchet.Conn, msg ratchet.Message) {
	if len(msg.Data) > 0 && msg.Data[0] == 'B' {
		_, _ = b.hub.Broadcast(context.Background(), msg)
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
	app.Route("/ws", &Bench{hub: ratchet.NewHub()}, []string{"*"})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("benchserver: %s/ws\n", listen.URL("ws", l, ""))
	log.Fatal(app.Serve(l))
}
