// Command chat is Ratchet's chat server in Go: a MessageComponent routed at
// /websocket that relays every message to every other client, and at / a
// browser page to chat with. Open the URL it prints in two tabs and type.
//
// The server relays text as it is, like Ratchet's. The page adds what a chat
// needs on top: it sends {"nick": ..., "text": ...} so that each line shows
// who wrote it (?nick=ann in the URL picks the nickname), says
// "Hello, WebSocket!" as a greeting when it connects, shows whether it is
// connected, and reconnects by itself with backoff when the server goes away.
//
//	go run ./examples/chat                      # listens on 127.0.0.1:8080
//	go run ./examples/chat -addr 127.0.0.1:0    # any free port
//	go run ./examples/chat -addr :8080          # every interface (containers)
package main

import (
	_ "embed"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
	"github.com/ratchetgo/ratchet/examples/internal/ops"
)

//go:embed index.html
var page []byte

// Chat relays every message to every other client, like the
// MyWebSocketServer of Ratchet's documentation.
type Chat struct {
	clients ratchet.ConnSet
}

// OnOpen adds the new connection to the clients.
func (c *Chat) OnOpen(conn ratchet.Conn) {
	c.clients.Add(conn)
	log.Printf("new connection #%d", conn.ID())
}

// OnMessage sends msg to every client but the sender.
func (c *Chat) OnMessage(from ratchet.Conn, msg ratchet.Message) {
	n := c.clients.Broadcast(msg, from)
	log.Printf("#%d sent %q to %d other connection(s)", from.ID(), msg, n)
}

// OnClose forgets the connection.
func (c *Chat) OnClose(conn ratchet.Conn) {
	c.clients.Remove(conn)
	log.Printf("connection #%d has disconnected", conn.ID())
}

// OnError logs why a connection ended abnormally.
func (c *Chat) OnError(conn ratchet.Conn, err error) {
	log.Printf("connection #%d: %v", conn.ID(), err)
}

func main() {
	// Flags.
	addr := listen.AddrFlag()
	host := flag.String("host", "", `host name the routes answer, e.g. "localhost" ("": any)`)
	opsFlags := ops.Define()
	flag.Parse()
	o, err := opsFlags.Setup()
	if err != nil {
		log.Fatal(err)
	}
	app := newApp(*host, o.Options...)
	if _, err := o.Mount(app); err != nil { // /metrics, /healthz, /readyz
		log.Fatal(err)
	}

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("chat: open %s/ in two browser tabs\n", listen.URL("http", l, *host))
	log.Fatal(app.Serve(l))
}

// newApp builds the chat server: the Chat component at /websocket and the
// browser client at /, for requests to httpHost.
func newApp(httpHost string, opts ...ratchet.Option) *ratchet.App {
	app := ratchet.NewApp(httpHost, 0, opts...) // Serve takes the listener: no port
	app.Route("/websocket", &Chat{}, []string{"*"})
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	return app
}
