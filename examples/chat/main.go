// Command chat is Ratchet's chat server in Go: a MessageComponent routed at
// /websocket that relays every message to every other client, and at / a
// browser page to chat with. Open the URL it prints in two tabs and type.
//
// The same component also answers Engine.IO (package engineio) at
// /engine.io/, engine.io-client's default path, for browsers whose
// WebSocket cannot get through (a proxy, a firewall): when the page's first
// WebSocket fails, or the browser has none, or the URL says
// ?transport=engineio, the page loads engine.io-client from /engine.io.js
// and chats over long polling, upgrading to WebSocket where it can. Clients
// of both routes chat together. /engine.io.js is the file of the npm
// package (run npm ci at the repository root; -engineio-client names
// another copy); without it the page stays on plain WebSocket.
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
	"github.com/ratchetgo/ratchet/engineio"
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
	eioClient := flag.String("engineio-client", defaultEngineIOClient, "engine.io-client's browser build, served at /engine.io.js")
	opsFlags := ops.Define()
	flag.Parse()
	o, err := opsFlags.Setup()
	if err != nil {
		log.Fatal(err)
	}
	app := newApp(*host, *eioClient, o.Metrics, o.Options...)
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

// defaultEngineIOClient is where npm ci at the repository root puts
// engine.io-client's browser build (go run ./examples/chat from there).
const defaultEngineIOClient = "node_modules/engine.io-client/dist/engine.io.min.js"

// newApp builds the chat server: the Chat component at /websocket and at
// /engine.io/, the browser client at /, and eioClient (engine.io-client's
// browser build) at /engine.io.js, for requests to httpHost. obs, if not
// nil, observes the Engine.IO sessions (opts observe the WebSocket route).
func newApp(httpHost, eioClient string, obs ratchet.Observer, opts ...ratchet.Option) *ratchet.App {
	app := ratchet.NewApp(httpHost, 0, opts...) // Serve takes the listener: no port
	chat := &Chat{}
	app.Route("/websocket", chat, []string{"*"})
	app.Handle("/engine.io/", engineio.NewHandler(chat, engineio.WithOrigins("*"), engineio.WithObserver(obs, "/engine.io/")))
	app.HandleFunc("GET /engine.io.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, eioClient) // 404 when it is not installed: the page stays on WebSocket
	})
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	return app
}
