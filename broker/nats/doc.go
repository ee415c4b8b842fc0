// Package nats is a ratchet.Broker on NATS core subjects, so that the Hubs
// of several processes behind a load balancer share topics, with history on
// JetStream (ratchet.HistoryBroker) for the topics that keep it, and a
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
// outage lasted are lost, as NATS core keeps nothing, except those of
// topics with history, which the broker reads back from the stream.
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
// # History
//
// The Broker is a ratchet.HistoryBroker on JetStream (nats-server -js, 2.9
// or later): a Hub given WithHistory keeps the recent messages of its topics
// there, so that a client that reconnects, to any node, gets what it missed,
// or is told it cannot.
//
// One stream per prefix, created on first use (a publish, or a read: see
// below) and named
// RATCHET_HISTORY_<prefix>_<epoch>, stores the history subjects: a topic T
// published with history goes to <prefix without its last ".">_h.T
// (HistorySubject), a namespace apart from the live subjects, and the stream
// republishes each message, once stored, to the live subject prefix+T, where
// every node's subscription receives it with its stream sequence. History
// therefore needs a prefix that ends with "." (ErrHistoryPrefix otherwise).
//
// A position is the stream's epoch and the message's stream sequence. The
// epoch is a random word the creating node puts at the end of the stream's
// name: JetStream's acknowledgements and republished messages carry the
// name, so every position is known without a lookup, and a stream that was
// deleted or lost with the server's storage and created again starts a new
// epoch, whose positions never pass for the old ones. Sequences grow but
// are shared by every topic of the prefix, so offsets of one topic are not
// contiguous (other topics' messages sit between them); gaps are still
// detected. The stream drops messages in two ways only (no single deletes:
// DenyDelete): the oldest of a subject beyond its per-subject limit, and
// expired ones, oldest first. History reads the newest message of the
// topic, reads the messages after the position with one ephemeral consumer
// (a ranged read: a thousand messages cost the same few requests as one),
// then the stream's state. The position is Lost when more of the topic's
// messages follow it than its Size (or than the stream keeps per subject),
// or when messages after it may have expired: when the stream's first
// message comes after the position's next sequence. That next sequence may
// have been another topic's message, expired while none of this topic's
// did: then Lost is conservative; it is never missing when a message was.
//
// A topic of which nothing is kept (no message yet, or all expired) has as
// Latest the stream's last sequence: every later message of the topic
// comes after it, so a client that holds it resumes from it like from any
// position. Without a stream there is no epoch to give, so History creates
// an empty stream that keeps nothing (one message per subject, for 100 ms)
// until the first publish raises its limits to the publish's policy; a
// publish goes only into a stream whose limits it checked
// (Nats-Expected-Stream).
//
// Limits. JetStream's limits are per stream, not per topic. Every message
// carries its HistoryPolicy.Size (SizeHeader), and the history of a topic is
// exactly the newest Size messages of its subject, Size taken from its newest
// message; a position more than Size behind is Lost, as with the other
// brokers. The stream keeps, per subject, one message more than the largest
// Size any publish asked for (the one before the oldest kept, which tells a
// client exactly Size behind that it missed nothing), and messages for the
// largest TTL any publish asked for: the broker raises these limits when a
// policy asks for more, and never lowers them (an operator may, with the
// nats CLI; history then reaches back less far, and says so). TTL therefore
// bounds the age of each message (JetStream's MaxAge, at least 100 ms),
// not the idle time of a topic as with MemoryBroker and Redis, and a topic
// whose messages all expired keeps its epoch: a position before its newest
// expired message is Lost, and the next message gets a later sequence of
// the same stream. The stream is stored in files
// with one replica; acknowledged messages survive a restart or a crash of
// the server process (not the loss of its storage, which is a new epoch).
//
// Live order. nats-server 2.9 republishes the messages of publishers on
// different connections in the order they finish storing, which is not
// always the order of their sequences. Each republished message also
// carries the sequence of the previous message of its subject, and the
// broker delivers a topic's messages along that chain: a message whose
// predecessor has not come yet is preceded by the missing messages, read
// back from the stream, and the late copies are dropped. The same read
// brings, after a reconnection, the messages published during the outage,
// and those the client dropped from a slow subscription; messages the stream
// no longer has are reported to WithOnError as ErrLiveGap. So every node
// delivers a topic's history messages in position order, without gaps
// while the stream keeps them. The first subscription of a node to a topic
// asks the stream where the topic stands (one request, once the node knows
// the stream); before the node has seen any history, a message that the
// server sent late, before the first one a subscription received, is still
// delivered, out of order, rather than dropped.
//
// # Presence
//
// NewPresence returns the node's ratchet.Presence, on a JetStream key-value
// bucket (nats-server -js) named after the broker's prefix
// ("ratchet-presence" for the default "ratchet.", "myapp-presence" for
// "myapp."; see PresenceBucket): see its documentation.
package nats
