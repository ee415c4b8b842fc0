// Command chat is Ratchet's chat server in Go: a MessageComponent routed at
// /websocket that relays every message to every other client, and at / a
// browser page to chat with. Open http://localhost:8080/ in two tabs and
// type.
package main

import (
	_ "embed"
	"flag"
	"fmt"
	"log"
	"net/http"

	"github.com/ratchetgo/ratchet"
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
	port := flag.Int("port", 8080, "port to listen on")
	flag.Parse()

	app := newApp("localhost", *port)
	fmt.Printf("chat: open http://localhost:%d/ in two browser tabs\n", *port)
	log.Fatal(app.Run())
}

// newApp builds the chat server: the Chat component at /websocket and the
// browser client at /, for requests to httpHost.
func newApp(httpHost string, port int) *ratchet.App {
	app := ratchet.NewApp(httpHost, port)
	app.Route("/websocket", &Chat{}, []string{"*"})
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	return app
}
