// Command echo is the smallest ratchet-go server: every message a client
// sends on ws://localhost:8080/echo comes straight back to it.
//
//	go run ./examples/echo -port 8080
package main

import (
	"flag"
	"fmt"
	"log"

	"github.com/ratchetgo/ratchet"
)

func main() {
	port := flag.Int("port", 8080, "port to listen on")
	host := flag.String("host", "", `host name the routes answer, e.g. "localhost" ("": any)`)
	flag.Parse()

	app := ratchet.NewApp(*host, *port)
	app.Route("/echo", ratchet.ComponentFuncs{
		Message: func(from ratchet.Conn, msg ratchet.Message) {
			_ = from.Send(msg) // fails only once the connection is closing
		},
	}, []string{"*"})
	fmt.Printf("echo: ws://localhost:%d/echo\n", *port)
	log.Fatal(app.Run())
}
