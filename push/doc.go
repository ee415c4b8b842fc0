// Package push delivers the topics of a ratchet.Hub to browsers and lets
// other programs publish to them: push from a web request, a cron job or
// another language into the socket server, without ZeroMQ or a client
// library.
//
// It has three parts, all on the same Hub:
//
//   - Endpoint, a ratchet.MessageComponent: browsers connect with the plain
//     WebSocket API and pick topics in the URL or with JSON control messages.
//   - SSE, an http.Handler streaming the same topics as Server-Sent Events,
//     for the browser's EventSource.
//   - PublishHandler, an http.Handler taking authenticated POST requests
//     from other processes (PHP, Python, curl, ...), with Sign to sign them.
//
// Any goroutine of the program can also publish directly with Hub.Publish,
// Hub.PublishToUser and Hub.Broadcast. One Authorizer decides who may
// subscribe to what, over WebSocket and SSE alike.
//
// # Topics
//
// A client may subscribe to any name ratchet.ValidTopic accepts: 1 to 256
// (ratchet.MaxTopicLen) bytes of UTF-8 not starting with "@" (reserved for
// the Hub's own topics).
// Each connection or stream may hold at most WithMaxTopics topics.
//
// # WebSocket endpoint
//
// Connect to the Endpoint's route, optionally with topics in the query:
//
//	const ws = new WebSocket("wss://example.com/push?topic=news&topic=sport");
//	ws.onmessage = e => console.log(e.data);
//	ws.send(JSON.stringify({subscribe: "weather"}));
//
// Client to server, text frames holding one JSON object with exactly one
// member, named exactly so, whose value is a string (at most
// WithMaxControlSize bytes, default 1 KiB):
//
//	{"subscribe":"weather"}
//	{"subscribe":"weather","since":"k3x9:17"}    resume after a position (see History)
//	{"unsubscribe":"weather"}
//
// Server to client, replies to control messages (and to each URL topic, as
// if it had been sent as {"subscribe":...}):
//
//	{"subscribed":"weather"}       the subscription is in effect (on the Broker too)
//	{"subscribed":"news","position":"k3x9:17","recovered":true}   a topic with history
//	{"unsubscribed":"weather"}     it is gone (also when there was none)
//	{"error":"invalid_topic","topic":"@all"}
//	{"error":"forbidden","topic":"admin"}        refused by the Authorizer
//	{"error":"too_many_topics","topic":"t65"}
//	{"error":"unavailable","topic":"weather"}    the Hub is closed, or the Broker failed or is down
//	{"error":"malformed"}          not such a JSON object
//	{"error":"too_large"}          over the control message size
//
// Success replies can be turned off with WithAcks(false); error replies
// cannot. The "subscribed" reply comes before any message of its topic that
// the subscription delivers.
//
// Everything published to the connection's topics, to its user
// (Hub.PublishToUser) or to everyone (Hub.Broadcast) arrives as is: a text
// message as a text frame, a binary one as a binary frame, with no
// envelope. A client that needs to tell topics apart, or to resume after a
// reconnection, connects with ?envelope=1: every message of its topics then
// arrives as a JSON text frame with its topic and, for topics with history,
// its position (see ratchet.SubscribeOptions.Envelope):
//
//	{"topic":"news","position":"k3x9:17","data":"hello"}
//	{"topic":"files","position":"k3x9:18","data":"AAECAw==","binary":true}
//
// Misbehaving clients: a binary frame closes the connection with 1003
// (unsupported data); each malformed or oversized control message gets an
// error reply, and the one after WithMaxMalformed (default 5) closes the
// connection with 1008 (policy violation). More topic parameters in the URL
// than WithMaxTopics close it with 1008 too. Set the route's
// ratchet.WithReadLimit low (4 KiB, say), so that large frames are refused
// (1009) before they are read.
//
// # Server-Sent Events
//
// GET the SSE handler with the topics in the query:
//
//	const es = new EventSource("/events?topic=news&topic=sport");
//	es.onmessage = e => console.log(e.data);                    // text
//	es.addEventListener("binary", e => console.log(atob(e.data)));
//
// The answer is 200 with Content-Type text/event-stream. The stream starts
// with a reconnection hint (WithRetry, default 3 s; a ": ok" comment when it
// is off), sent once the subscriptions are in effect, and then has one event
// per message:
//
//	retry: 3000
//
//	id: 1
//	data: a text message
//
//	id: 2
//	data: a text message
//	data: of two lines
//
//	id: 3
//	event: binary
//	data: AAECAw==
//
//	: heartbeat
//
// On a stream whose topics keep no history, ids count the events of the
// stream from 1; when the browser reconnects it sends the last id it saw in
// the Last-Event-ID header, the new stream counts on from there (a
// Last-Event-ID that is not a number, or above 2^53-1, the largest integer
// JavaScript numbers hold exactly, starts over at 1), and messages
// published while it was away are lost. When a topic keeps history the ids
// are positions, and a reconnecting browser gets what it missed (see
// History). A text message is split at
// every line break (CRLF, LF or CR) into data: fields, which EventSource
// joins with LF: the text arrives whole, with CR and CRLF turned into LF
// (publish binary when every byte matters). A binary message is one data:
// field of standard base64 in an event of type "binary". When nothing has
// been sent for WithHeartbeat (default 15 s), a comment line keeps the
// connection alive.
//
// Refusals come before the stream, as JSON errors (see below): 405 for
// methods other than GET, 401 (or a *ratchet.RejectError's status) from
// WithAuthenticate, 400 invalid_topic or too_many_topics, 403 forbidden from
// the Authorizer, 503 unavailable after SSE.Shutdown or while the Broker is
// down (ratchet.ErrBrokerUnavailable). Each stream is a
// *ratchet.TransportConn with a bounded queue (WithSendQueue): when a
// publish finds it full the stream ends at once, even in the middle of a
// write (ratchet.ErrSlowConsumer), and EventSource reconnects by itself.
//
// # HTTP publish API
//
// POST a JSON body to the PublishHandler with Content-Type
// application/json (at most WithMaxBodySize, default 64 KiB):
//
//	{"topic":"news","data":"hello"}                 text "hello" to topic news
//	{"topic":"news","data":{"title":"hi","n":1}}    text {"title":"hi","n":1}
//	{"topic":"files","data":"AAECAw==","binary":true}   binary 00 01 02 03
//	{"user":"alice","data":"you have mail"}         every connection of alice
//	{"topic":"news","data":"tick","id":"8f2c41"}    "id": optional, any string
//
// Exactly one of "topic" (a valid topic name) and "user" (1 to 256 bytes)
// is required, and "data": a JSON string is delivered as its text (or, with
// "binary": true, as the bytes its standard base64 encodes), any other JSON
// value except null as its compact JSON text. "id" is not delivered; it
// only makes two otherwise identical requests differ (see replays below).
// Member names are matched exactly (case included); unknown and repeated
// members are refused.
//
// Authentication, one of:
//
//	X-Ratchet-Timestamp: 1767225600
//	X-Ratchet-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>
//
//	Authorization: Bearer <token>
//
// A signed request (WithSecret) carries the current Unix time in seconds
// and the lowercase hex HMAC-SHA256, keyed with the shared secret, of the
// timestamp, a dot, and the exact body bytes; Sign computes both headers.
// It is refused when its timestamp is more than WithMaxSkew (default 5
// minutes) away from the server's clock, and when its signature has been
// accepted before within that window (a replay): to send the same message
// twice within a second, give each request a different "id". With a shell:
//
//	body='{"topic":"news","data":"hello"}'
//	ts=$(date +%s)
//	sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
//	curl -sS http://localhost:8080/publish -H 'Content-Type: application/json' \
//	  -H "X-Ratchet-Timestamp: $ts" -H "X-Ratchet-Signature: sha256=$sig" -d "$body"
//
// A bearer token (WithBearerToken) is simpler but can be replayed by
// whoever sees it: use it over TLS or loopback only.
//
// Answers are JSON. Success is 200 with the number of local connections the
// message was queued for (with a Broker, other nodes' subscribers are not
// counted) and, for a topic with history, the message's position:
//
//	{"topic":"news","delivered":3,"position":"k3x9:18"}
//	{"user":"alice","delivered":2}
//
// Errors are {"error":code,"message":text} (plus "topic" when one is at
// fault), with these statuses and codes:
//
//	400 malformed, invalid_topic     the body is not as above
//	401 unauthorized                 no or unsupported credentials, bad timestamp or signature format
//	401 bad_signature, bad_token     the credential does not match
//	401 stale_timestamp, replayed    outside the window, or seen before
//	403 forbidden                    refused by WithPublishAuthorize
//	405 method_not_allowed           not POST
//	408 request_timeout              body not received within WithBodyTimeout (10 s)
//	413 too_large                    body over the limit
//	415 unsupported_media_type       Content-Type is not application/json
//	503 unavailable                  the Hub is closed or its Broker failed
//
// On a ratchet.App, a request for a host the App does not serve (say
// 127.0.0.1 when its httpHost is "localhost") gets 404 wrong_host, whose
// message names the host to use.
//
// The checks run in this order: method (405); the credentials as far as
// they need no body (401: missing, unsupported, malformed, a stale
// timestamp, a wrong bearer token); size (413) and time (408) of the body;
// the signature against the body (401); content type (415); body (400);
// authorization (403). A refusal before the whole body is in closes the
// connection without reading the rest of the body.
//
// # History
//
// Topics given a history policy on the Hub (ratchet.WithHistory) keep their
// recent messages, each with a position "epoch:offset" (ratchet.Position),
// so that a client that lost its connection gets exactly what it missed,
// from any node of a cluster, or is told that it cannot.
//
// SSE: each event's id is the stream's cursor, the position of each of its
// topics in the order of the topic parameters, joined by commas (empty for
// a topic without history); a stream of one topic has that topic's position.
// Each history topic's starting position comes first, as an event of type
// position (seen only by listeners of that type), so that even a browser
// that saw no message yet resumes from it:
//
//	retry: 3000
//
//	id: k3x9:17,,p0aa:4
//	event: position
//	data: {"topic":"news","position":"k3x9:17"}
//
//	id: k3x9:18,,p0aa:4
//	data: hello
//
// A reconnecting EventSource sends the last id as Last-Event-ID; a page
// that rendered state at a position passes it as ?since= on its first
// connection. The stream then sends every missed event, in order, before the
// live ones, and answers with the header Ratchet-Recovery: recovered. When
// history no longer covers the gap (the messages were trimmed or expired,
// or the stream was lost and its epoch changed), it answers
// Ratchet-Recovery: reset and sends, before that topic's live events,
//
//	id: k3x9:30
//	event: reset
//	data: {"topic":"news","position":"k3x9:30"}
//
// and the page must reload its state from the source of truth. A ?since=
// that is not a cursor of the topics is refused with 400 invalid_since; a
// Last-Event-ID that is not one (an id of another stream) makes every
// history topic report a reset.
//
// WebSocket: ?since= takes the same cursor for the URL's topics, and a
// subscribe control message a position of its topic. The missed messages
// come first, then the subscribed reply with the position the subscription
// continues from and "recovered" (true, or false for the reset case above;
// a false one is sent even with WithAcks(false)), then the live ones.
// Combine with ?envelope=1 to learn each message's position.
package push
