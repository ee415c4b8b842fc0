// Package redis is a ratchet.Broker on Redis pub/sub, so that the Hubs of
// several processes behind a load balancer share topics, and a
// ratchet.Presence that tells which users are connected to a topic on any of
// them.
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
// and never later than its context allows.
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
//
// Only a JSON object with exactly the three fields ratchet (the number 1),
// type ("text" or "binary") and data (a string) is an envelope: application
// JSON such as {"type":"chat","data":"hi"} travels as the text it is.
// Encode and Decode implement the format.
//
// Text must be valid UTF-8: a WebSocket text frame that is not makes a
// browser fail the whole connection, so one bad message to every connection
// would disconnect them all. A raw payload that is not valid UTF-8 is
// therefore delivered as binary (a Blob in the browser's onmessage, a
// "binary" event on an event stream), intact, and reported: logged as a
// warning and handed to the WithOnError function as an error wrapping
// ratchet.ErrInvalidUTF8. Publish binary data in an envelope instead.
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
