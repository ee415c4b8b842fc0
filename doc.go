// Package ratchet serves real-time message push over WebSocket with the
// component model of PHP's Ratchet: implement MessageComponent (OnOpen,
// OnMessage, OnClose, OnError), route it with an App, and serve it on its
// own or on any net/http server.
//
//	type Chat struct{ clients ratchet.ConnSet }
//
//	func (c *Chat) OnOpen(conn ratchet.Conn)                       { c.clients.Add(conn) }
//	func (c *Chat) OnMessage(from ratchet.Conn, m ratchet.Message) { c.clients.Broadcast(m, from) }
//	func (c *Chat) OnClose(conn ratchet.Conn)                      { c.clients.Remove(conn) }
//	func (c *Chat) OnError(conn ratchet.Conn, err error)           { log.Print(err) }
//
//	app := ratchet.NewApp("localhost", 8080)
//	app.Route("/websocket", &Chat{}, []string{"*"})
//	log.Fatal(app.Run())
//
// # Connections
//
// The callbacks of one connection run one at a time, in order: OnOpen, each
// OnMessage, OnError after an abnormal end, then OnClose exactly once.
// Different connections run concurrently. Conn.Send never blocks: it writes
// at once when the connection is idle and otherwise queues for a writer that
// exists only while there is a backlog; a peer whose queue fills up is cut
// off with close code 1008 and ErrSlowConsumer. Panics in callbacks close
// their connection with 1011. Limits (read size, write timeout, keepalive,
// handshake timeout) have safe defaults; see the With options. On Linux an
// idle connection holds no goroutine: it waits in an epoll set until input
// arrives (RATCHET_EPOLL=0 in the environment turns that off; see WsServer).
//
// # Push
//
// A Hub keeps connections by topic and by user so that any goroutine can
// publish (Hub.Publish, Hub.PublishToUser, Hub.Broadcast). With a Broker
// (broker/redis, broker/nats) several processes share topics, and a Presence
// tells who is connected where. Package push adds a browser push endpoint,
// Server-Sent Events and an HTTP publish API for other languages.
//
// The WebSocket protocol is github.com/coder/websocket's; importing this
// package builds nothing else but the standard library.
package ratchet
