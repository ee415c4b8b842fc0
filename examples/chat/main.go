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
//
// With RATCHET_BROKER (redis://127.0.0.1:6379/0 or nats://127.0.0.1:4222,
// and RATCHET_PREFIX to share the server) two copies form a two-node
// cluster, to run behind a load balancer with no sticky sessions: each
// message is relayed to the other nodes over the broker, so clients of
// either node, WebSocket or Engine.IO, chat together; and a long-polling
// request that lands on the node that does not hold its Engine.IO session
// is forwarded over the broker to the one that does (engineio.WithBroker).
// A WebSocket upgrade that lands on the wrong node is refused, and that
// client stays on long polling.
//
//	RATCHET_BROKER=redis://127.0.0.1:6379/0 go run ./examples/chat -addr 127.0.0.1:8081
//	RATCHET_BROKER=redis://127.0.0.1:6379/0 go run ./examples/chat -addr 127.0.0.1:8082
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
	"github.com/ratchetgo/ratchet/examples/internal/brokerenv"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
	"github.com/ratchetgo/ratchet/examples/internal/ops"
)

//go:embed index.html
var page []byte

// Chat relays every message to every other client, like the
// MyWebSocketServer of Ratchet's documentation, on every node of a
// cluster when it has a Broker.
type Chat struct {
	clients ratchet.ConnSet
	broker  ratchet.Broker       // nil: one node
	node    string               // this node's tag on the broker
	sub     ratchet.Subscription // the room's topic
}

// room is the broker topic that carries the chat between nodes.
const room = "chat"

// nodeTagLen is the length of a node's tag, which starts each message on
// the broker, so that a node skips what it published itself.
const nodeTagLen = 16

// NewChat returns a Chat for one node, or for a cluster of nodes sharing
// broker (nil: one node).
func NewChat(ctx context.Context, broker ratchet.Broker) (*Chat, error) {
	c := &Chat{broker: broker}
	if broker == nil {
		return c, nil
	}
	tag := make([]byte, nodeTagLen*3/4)
	_, _ = rand.Read(tag)
	c.node = base64.RawURLEncoding.EncodeToString(tag)
	sub, err := broker.Subscribe(ctx, room, c.fromBroker)
	if err != nil {
		return nil, fmt.Errorf("chat: subscribe to %q: %w", room, err)
	}
	c.sub = sub
	return c, nil
}

// Close leaves the cluster.
func (c *Chat) Close(ctx context.Context) error {
	if c.sub == nil {
		return nil
	}
	return c.sub.Unsubscribe(ctx)
}

// OnOpen adds the new connection to the clients.
func (c *Chat) OnOpen(conn ratchet.Conn) {
	c.clients.Add(conn)
	log.Printf("new connection #%d", conn.ID())
}

// OnMessage sends msg to every client but the sender, here and on the
// other nodes.
func (c *Chat) OnMessage(from ratchet.Conn, msg ratchet.Message) {
	n := c.clients.Broadcast(msg, from)
	log.Printf("#%d sent %q to %d other connection(s)", from.ID(), msg, n)
	if c.broker == nil {
		return
	}
	tagged := ratchet.Message{Type: msg.Type, Data: append([]byte(c.node), msg.Data...)}
	if err := c.broker.Publish(from.Context(), room, tagged); err != nil {
		log.Printf("#%d: relay to the other nodes: %v", from.ID(), err)
	}
}

// fromBroker sends what another node published to every client here.
func (c *Chat) fromBroker(msg ratchet.Message) {
	if len(msg.Data) < nodeTagLen || bytes.Equal(msg.Data[:nodeTagLen], []byte(c.node)) {
		return // ours, sent to our clients already (or not the chat's)
	}
	msg.Data = msg.Data[nodeTagLen:]
	n := c.clients.Broadcast(msg)
	log.Printf("another node sent %q to %d connection(s)", msg, n)
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
	cluster, err := brokerenv.FromEnv(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	chat, err := NewChat(context.Background(), cluster.Broker)
	if err != nil {
		log.Fatal(err)
	}
	app := newApp(*host, *eioClient, chat, cluster.Broker, o.Metrics, o.Options...)
	var brokers []ratchet.Broker // /readyz follows it
	if cluster.Broker != nil {
		brokers = append(brokers, cluster.Broker)
	}
	if _, err := o.Mount(app, brokers...); err != nil { // /metrics, /healthz, /readyz
		log.Fatal(err)
	}

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("chat: broker %s\n", cluster.Name)
	fmt.Printf("chat: open %s/ in two browser tabs\n", listen.URL("http", l, *host))
	log.Fatal(app.Serve(l))
}

// defaultEngineIOClient is where npm ci at the repository root puts
// engine.io-client's browser build (go run ./examples/chat from there).
const defaultEngineIOClient = "node_modules/engine.io-client/dist/engine.io.min.js"

// newApp builds the chat server: the chat component at /websocket and at
// /engine.io/, the browser client at /, and eioClient (engine.io-client's
// browser build) at /engine.io.js, for requests to httpHost. With broker
// (nil: one node), a polling request of another node's Engine.IO session
// is forwarded to it. obs, if not nil, observes the Engine.IO sessions
// (opts observe the WebSocket route).
func newApp(httpHost, eioClient string, chat *Chat, broker ratchet.Broker, obs ratchet.Observer, opts ...ratchet.Option) *ratchet.App {
	app := ratchet.NewApp(httpHost, 0, opts...) // Serve takes the listener: no port
	app.Route("/websocket", chat, []string{"*"})
	eioOpts := []engineio.Option{engineio.WithOrigins("*"), engineio.WithObserver(obs, "/engine.io/")}
	if broker != nil {
		eioOpts = append(eioOpts, engineio.WithBroker(broker))
	}
	app.Handle("/engine.io/", engineio.NewHandler(chat, eioOpts...))
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
