// Command echo is the smallest ratchet-go server: every message a client
// sends on ws://localhost:8080/echo comes straight back to it.
//
//	go run ./examples/echo                      # listens on 127.0.0.1:8080
//	go run ./examples/echo -addr 127.0.0.1:0    # any free port
package main

import (
	"flag"
	"fmt"
	"log"
	"net"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
)

func main() {
	// Flags.
	addr := listen.AddrFlag()
	host := flag.String("host", "", `host name the routes answer, e.g. "localhost" ("": any)`)
	flag.Parse()

	app := ratchet.NewApp(*host, 0) // Serve takes the listener: no port
	app.Route("/echo", ratchet.ComponentFuncs{
		Message: func(from ratchet.Conn, msg ratchet.Message) {
			_ = from.Send(msg) // fails only once the connection is closing
		},
	}, []string{"*"})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo: %s/echo\n", listen.URL("ws", l, *host))
	log.Fatal(app.Serve(l))
}
