// Package redis is a ratchet.Broker on Redis pub/sub, so that the Hubs of
// several processes behind a load balancer share topics, with the history
// of a ratchet.HistoryBroker in Redis Streams, so that a subscriber that
// reconnects to any of them gets what it missed, and a ratchet.Presence that
// tells which users are connected to a topic on any of them.
//
// # Usage
//
//	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
//	defer client.Close()
//	broker, err := redis.New(ctx, client,
//		redis.WithPrefix("myapp:"),
//		redis.WithOnError(func(err error) { log.Print(err) }))
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer broker.Close()
//	// Hand broker to the Hub; or use it directly:
//	sub, _ := broker.Subscribe(ctx, "news", func(m ratchet.Message) { ... })
//	_ = broker.Publish(ctx, "news", ratchet.Text("hello"))
//	// With history (what a Hub given WithHistory does):
//	hub := ratchet.NewHub(ratchet.WithBroker(broker),
//		ratchet.WithHistory("orders.*", ratchet.HistoryPolicy{Size: 100, TTL: time.Hour}))
//
// # Connections
//
// Publish uses the client's connection pool. Everything a node receives
// comes on one pub/sub connection of its own, opened from the client's
// options, that carries every topic: the broker SUBSCRIBEs a topic's channel
// when the node's first subscription to the topic arrives, and UNSUBSCRIBEs
// it when the last one leaves. Messages of a topic are delivered in the order
// Redis relayed them, which is the order one publisher published them.
//
// New takes any *goredis.Client: a standalone Redis, or Sentinel through
// goredis.NewFailoverClient (not tested here). Redis Cluster is not
// supported: the presence scripts touch keys they do not declare.
//
// # Outages
//
// When the pub/sub connection fails, or stays silent for two health
// intervals (a PING checks it), the broker counts an outage (Outages), logs
// it, calls the WithOnError function with an error wrapping ErrUnavailable,
// and reconnects with exponential backoff. Once connected again it
// SUBSCRIBEs every topic that still has subscribers and calls the
// WithOnReconnect function. Subscriptions stay in place across the outage;
// messages published while it lasted are lost, as Redis pub/sub keeps
// nothing.
//
// Publish while Redis is unreachable returns an error: never a silent drop,
// and never later than its context allows. Topics with history are caught
// up after an outage (see History).
//
// # Message format
//
// A topic T is carried by the Redis channel prefix+T ("ratchet:T" by
// default). On the channel:
//
//   - A text message is its raw payload. So any program can publish to
//     WebSocket clients with a plain PUBLISH, PHP for instance:
//     $redis->publish('ratchet:news', json_encode(['headline' => 'Hi']));
//     or redis-cli PUBLISH ratchet:news hello.
//   - A binary message is a JSON envelope with its payload in base64:
//     {"ratchet":1,"type":"binary","data":"AAEC"}
//     From PHP: $redis->publish('ratchet:news', json_encode(['ratchet' => 1,
//     'type' => 'binary', 'data' => base64_encode($bytes)]));
//   - An envelope may also carry text: {"ratchet":1,"type":"text","data":"hi"}.
//     A Go publisher uses that form only for a text that is itself exactly
//     such an envelope, so that it arrives as it was sent.
//   - A message published with history (PublishHistory) is an envelope
//     with its position, "epoch:offset", first:
//     {"position":"k3x9:17","ratchet":1,"type":"text","data":"hello"}
//     {"position":"k3x9:18","ratchet":1,"type":"binary","data":"AAEC"}
//
// Only a JSON object with exactly the three fields ratchet (the number 1),
// type ("text" or "binary") and data (a string), and optionally position,
// is an envelope: application JSON such as {"type":"chat","data":"hi"}
// travels as the text it is. Payloads without a position, raw or
// enveloped, are delivered with the zero position. Encode and Decode
// implement the format.
//
// Text must be valid UTF-8: a WebSocket text frame that is not makes a
// browser fail the whole connection, so one bad message to every connection
// would disconnect them all. A raw payload that is not valid UTF-8 is
// therefore delivered as binary (a Blob in the browser's onmessage, a
// "binary" event on an event stream), intact, and reported: logged as a
// warning and handed to the WithOnError function as an error wrapping
// ratchet.ErrInvalidUTF8. Publish binary data in an envelope instead
// (PublishHistory keeps such text as binary).
//
// # History
//
// The Broker is a ratchet.HistoryBroker. The history of a topic T lives in
// two keys under the broker's prefix P:
//
//   - P+"history:"+T, a stream holding the newest HistoryPolicy.Size
//     messages (trimmed exactly, MAXLEN =), each under the ID "<offset>-0"
//     with one field, d, the channel payload a plain publish of the message
//     would carry: XRANGE ratchet:history:news 18 + reads what follows
//     offset 17;
//   - P+"history-latest:"+T, a string holding the newest position, such as
//     "k3x9:18"; "k3x9:0" for a stream without messages yet.
//
// PublishHistory runs one Lua script that reads the newest position, XADDs
// the message at the next offset, writes the new position, sets the
// policy's TTL on both keys and PUBLISHes the position envelope on T's
// channel. Redis runs one script at a time, so offsets grow by exactly one
// per message of a topic, and every node receives them in offset order.
// When the keys are gone (the TTL passed with no publish, Redis restarted
// without persistence, a FLUSHDB), the next publish starts a new random
// epoch at offset 1, so a position of the lost stream is never taken for
// one of the new.
//
// History reads the newest position and up to limit entries after since in
// one MULTI/EXEC: one round trip, however many messages it returns. For a
// topic without a stream it creates an empty one (offset 0, expiring after
// ratchet.DefaultHistoryTTL unless a publish comes), so that the Latest it
// returns is always a position to resume from. It reports Lost when since is
// of another epoch (or the stream was gone), after the newest position, or
// when the entry that follows it was trimmed or expired.
//
// Redis pub/sub keeps nothing for a node that is not subscribed. So the
// broker remembers, per topic, the newest position it delivered (or, before
// any, the newest one History reported), and when Redis confirms the
// re-subscription after an outage it first delivers from the stream what
// was published meanwhile; a live message whose offset skips is preceded
// the same way by the ones in between. What the stream no longer holds
// shows in the positions: a new epoch, or an offset that skips. Run Redis
// with an append-only file (appendonly yes) for history to survive a
// restart; without one, a restart loses it, and recovering clients are told
// (HistoryPage.Lost, ratchet.Recovery.Recovered false).
//
// # Presence
//
// NewPresence returns the node's ratchet.Presence on the same client and
// pub/sub connection. Its data, under its own prefix P, which follows the
// broker's ("ratchet-presence:" for the default "ratchet:", "myapp-presence:"
// for "myapp:"; see PresencePrefix), for a topic T:
//
//   - P+"m:"+T, a sorted set of the users present, each scored with the time
//     (Unix ms, Redis clock) its last entry expires;
//   - one sorted set per user, of the nodes that hold it, scored likewise;
//   - P+"e:"+T, the channel of T's events, JSON such as
//     {"kind":"join","user":"alice"} or {"kind":"leave","user":"alice"}, which
//     a non-Go program may SUBSCRIBE to as well.
//
// Every change runs in a Lua script, so the membership and its events stay
// consistent when nodes race. Each node refreshes its entries every TTL/3; a
// node that dies stops refreshing, and the nodes that use the topic reap the
// expired entries within TTL/3 after they expire, publishing the leaves.
package redis
