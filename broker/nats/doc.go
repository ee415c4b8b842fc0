// Package nats is a ratchet.Broker on NATS core subjects, so that the Hubs
// of several processes behind a load balancer share topics, and a
// ratchet.Presence on a JetStream key-value bucket that tells which users are
// connected to a topic on any of them.
//
// # Usage
//
//	broker, err := nats.Connect("nats://127.0.0.1:4222",
//		nats.WithPrefix("myapp."),
//		nats.WithOnError(func(err error) { log.Print(err) }))
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer broker.Close()
//	// Hand broker to the Hub; or use it directly:
//	sub, _ := broker.Subscribe(ctx, "news", func(m ratchet.Message) { ... })
//	_ = broker.Publish(ctx, "news", ratchet.Text("hello"))
//
// # Connections
//
// The broker owns one NATS connection that carries every topic of the
// process: the first subscription of the node to a topic subscribes its
// subject, the last one to leave unsubscribes it. Each topic has its own
// delivering goroutine; messages of a topic are delivered in the order one
// publisher published them.
//
// A topic T is carried by the subject prefix+T ("ratchet.T" by default)
// when that is a literal subject: no whitespace, no empty token ("a..b"), no
// "*" or ">" token. Other topics, and those starting with "~", are carried
// by prefix+"~"+base64url(T) (unpadded), so that any string is a topic, user
// names with spaces included, and no topic ever subscribes a wildcard.
// Subject returns the subject of a topic. Dots in topics ("chat.room1") make
// subject hierarchies other programs may subscribe to with wildcards.
//
// # Outages
//
// The client reconnects forever, with exponential backoff and jitter
// (WithBackoff), and PINGs the server every health interval to notice one
// that vanished silently. When the connection is lost the broker counts an
// outage (Outages), logs it and calls the WithOnError function with an error
// wrapping ErrUnavailable; failed reconnection attempts are reported the same
// way. Once connected again the client has sent every subscription again,
// and the WithOnReconnect function is called. Messages published while the
// outage lasted are lost, as NATS core keeps nothing.
//
// The client's reconnect buffer is disabled: Publish while disconnected
// returns an error wrapping ErrUnavailable at once instead of queueing the
// message. By default Publish also waits for the server to have the message
// (a flush: one round trip), so a message written just before a failure is
// reported too; WithAsyncPublish trades that for speed.
//
// # Message format
//
// The payload of a NATS message is the payload of the WebSocket message. A
// binary message carries the header "Ratchet-Type: binary" (TypeHeader). A
// message without the header, as any NATS client publishes it
// (nats pub ratchet.news hello), or with "Ratchet-Type: text", is delivered
// as text.
//
// Text must be valid UTF-8: a WebSocket text frame that is not makes a
// browser fail the whole connection, so one bad message to every connection
// would disconnect them all. A text payload that is not valid UTF-8 is
// therefore delivered as binary (a Blob in the browser's onmessage, a
// "binary" event on an event stream), intact, and reported: logged as a
// warning and handed to the WithOnError function as an error wrapping
// ratchet.ErrInvalidUTF8.
//
// # Presence
//
// NewPresence returns the node's ratchet.Presence, on a JetStream key-value
// bucket (nats-server -js) named after the broker's prefix
// ("ratchet-presence" for the default "ratchet.", "myapp-presence" for
// "myapp."; see PresenceBucket): see its documentation.
package nats
