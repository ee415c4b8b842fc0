// Package pusher serves the Pusher Channels protocol on a ratchet.Hub, so
// that pusher-js, Laravel Echo and the Pusher server libraries (pusher for
// Node, pusher-php-server, which Laravel's broadcasting uses) work
// unchanged against a Go program, and across every node of a cluster.
//
//	hub := ratchet.NewHub(ratchet.WithBroker(broker), ratchet.WithPresence(presence),
//		pusher.CacheHistory(apps...))
//	srv, err := pusher.NewServer(hub, []pusher.App{{ID: "1", Key: "key", Secret: "secret"}})
//	mux.Handle("/", srv) // ws://host/app/key, http://host/pusher/app/key/... and http://host/apps/1/...
//
// # WebSocket protocol
//
// Clients connect to /app/{key}?protocol=7 and get
// pusher:connection_established with their socket_id ("123.456") and the
// activity timeout. Channels are public (any name), private-* (the
// subscription carries "key:hex(HMAC-SHA256(secret, socket_id:channel))"
// from the app's auth endpoint), private-encrypted-* (private; payloads
// pass through untouched, client events refused), presence-* (private,
// signed over socket_id:channel:channel_data, with members), and cache
// channels (cache-*, private-cache-*, private-encrypted-cache-*,
// presence-cache-*) that hand a new subscriber the last event, or
// pusher:cache_miss. A subscription is answered with
// pusher_internal:subscription_succeeded once in effect, or with
// pusher:subscription_error {type, error, status}, which pusher-js hands to
// the channel (Laravel Echo's error callback).
//
// Presence members are a user_id and user_info. A channel's subscribers
// get pusher_internal:member_added when a user's first connection joins, on
// any node, and member_removed when its last one leaves: one user with
// several tabs on several nodes is one member. Members are kept on the
// Hub's Presence (ratchet.WithPresence: MemoryPresence, or the presences of
// broker/redis and broker/nats for a cluster), under the topic
// "@pusher/" + the channel's topic. At most App.MaxPresenceMembers distinct
// users per channel.
//
// Client events (client-*, off unless App.ClientEvents) go from a
// subscriber of a private or presence channel to the channel's other
// subscribers on every node, never back to the sender, with user_id on
// presence channels; App.ClientEventsPerSecond and App.MaxEventDataSize
// limit them (pusher:error 4301).
//
// User authentication: pusher:signin with
// "key:hex(HMAC-SHA256(secret, socket_id::user::user_data))" answers
// pusher:signin_success; the connection then gets what is sent to
// #server-to-user-{id}, and the HTTP API can terminate it.
//
// Close codes: 4001 unknown app key, 4006/4007 bad protocol version, 4009
// unauthorized (sign-in timeout, terminated by the app), 4100 over the
// app's connection cap, 4200 server shutting down (reconnect at once), 4201
// no answer to pusher:ping. A client silent for App.ActivityTimeout gets a
// pusher:ping; pusher:ping from a client is answered pusher:pong.
//
// # HTTP transports: pusher-js's fallback
//
// Where a WebSocket cannot pass (a proxy, a firewall), pusher-js falls back
// to its HTTP transports, xhr_streaming and xhr_polling, at httpHost and
// httpPath, whose defaults are Pusher's own sockjs-{cluster}.pusher.com
// and "/pusher". A Server serves them (WithHTTPTransports,
// WithoutHTTPTransports) with the same protocol as over WebSocket: each
// HTTP session is a ratchet.Conn like a WebSocket connection, with its
// channels, presence, client events, close codes and send queue. Point
// pusher-js at it, never at Pusher's hosts:
//
//	new Pusher(key, {
//	  cluster: "mt1", forceTLS: false,
//	  wsHost: "host", wsPort: 6001,
//	  httpHost: "host", httpPort: 6001, // without these, pusher-js asks sockjs-mt1.pusher.com
//	  enabledTransports: ["ws", "xhr_streaming", "xhr_polling"],
//	});
//
// pusher-js names each session itself, /{server}/{session}/ of the URL
// (three digits, eight random base-32 characters: about 50 bits), and
// makes every request a POST. The name is all that binds a request to its
// session, as with Pusher's own endpoints (the app key is part of it): a
// request that names another client's session acts for it, so serve the
// transports over TLS, where the names cannot be read off the wire.
//
//	POST {httpPath}/app/{key}/{server}/{session}/xhr_streaming  one long response, a frame per line
//	POST {httpPath}/app/{key}/{server}/{session}/xhr            a long poll: one response, then the next poll
//	POST {httpPath}/app/{key}/{server}/{session}/xhr_send       the client's messages: ["{...}", ...] -> 204
//
// Frames are SockJS's: "o" opens the session (the first xhr or
// xhr_streaming request of a session makes it), "a" + a JSON array of
// Pusher messages as strings, "h" a heartbeat (after
// HTTPTransports.Heartbeat of silence, so that a poll returns and proxies
// keep a stream), "c[code,reason]" the close with its Pusher close code. A
// stream starts with a 2 KiB "h" prelude, for browsers that hold back the
// start of a response. pusher-js answers a heartbeat on a stream with an
// xhr_send of "[]", and renews its stream after 256 KiB by aborting it and
// opening another: a new request of a session replaces the pending one.
// pusher-js sends each message in an xhr_send of its own, without waiting
// for the previous one: messages sent in the same instant are handled in
// the order their requests arrive, which may not be the order they were
// sent in.
//
// A session ends, with OnClose once, when its connection is closed (the
// client gets the "c" frame), when the client's response failed after
// taking frames (they did not reach it: the session ends rather than lose
// them silently), or when no request of the client is pending for
// HTTPTransports.SessionTimeout (10 s): pusher-js tells the server nothing
// when it disconnects over HTTP, and a client that vanished stops polling.
// A client that vanished with its stream still open is found by the
// protocol's pusher:ping (App.ActivityTimeout), as on a WebSocket. The
// one case the server cannot see: frames written on a stream in the
// instant pusher-js aborts it to renew it (after 256 KiB) are lost with
// the aborted response, as with any SockJS-style server; messages that
// need delivery should not rely on a single frame either way.
//
// Requests answer Cache-Control: no-store, apply HTTPTransports.Origins
// (any origin by default, like the WebSocket side) with CORS headers and
// preflights for pages on other hosts. An xhr_send for an unknown session
// gets 404; a body that is not a JSON array of strings 400, one over
// MaxHTTPSendBody bytes or MaxHTTPSendMessages messages 413, and those
// close the connection (1002, 1009) so the client learns it too. A
// malformed session name gets 400, a request during Shutdown 503.
//
// # Behind a load balancer
//
// Sessions live on the node that made them: behind a load balancer, send
// every request of a session to the same node. The balancer needs no
// cookie and no client address for it: it hashes the /{server}/{session}/
// part of the path, the same in every request of a session, and sends
// WebSocket connections and the HTTP API to any node. A request on
// another node would make a new session there, which pusher-js notices
// ("Server lost session") and reconnects, and an xhr_send there would get
// 404, which pusher-js ignores: a message lost. (Engine.IO's polling
// forwards a request to the node that owns its session over the Broker
// instead; pusher-js's sessions are sticky.)
//
// nginx, in http {} (the map's capture is {server}/{session}; with
// consistent hashing, a node added or removed moves only its own share of
// the sessions, which reconnect once):
//
//	map $uri $pusher_session {
//	    ~^/pusher/app/[^/]+/([^/]+/[^/]+)/  $1;
//	    default                             "";
//	}
//	upstream pusher_sessions {
//	    hash $pusher_session consistent;
//	    server 10.0.0.1:6001;
//	    server 10.0.0.2:6001;
//	}
//	upstream pusher_nodes {
//	    server 10.0.0.1:6001;
//	    server 10.0.0.2:6001;
//	}
//	server {
//	    listen 80;
//	    location /pusher/ {                # HTTPTransports.Path
//	        proxy_pass http://pusher_sessions;
//	        proxy_http_version 1.1;
//	        proxy_set_header Connection "";
//	        proxy_buffering off;           # xhr_streaming: each frame as it comes
//	        proxy_read_timeout 60s;        # above HTTPTransports.Heartbeat (25 s), a poll's longest wait
//	    }
//	    location /app/ {                   # WebSocket
//	        proxy_pass http://pusher_nodes;
//	        proxy_http_version 1.1;
//	        proxy_set_header Upgrade $http_upgrade;
//	        proxy_set_header Connection "upgrade";
//	        proxy_read_timeout 180s;       # above App.ActivityTimeout + App.PongTimeout (150 s)
//	    }
//	    location / {                       # the HTTP API (/apps/)
//	        proxy_pass http://pusher_nodes;
//	    }
//	}
//
// HAProxy (balance uri counts a level for each slash of the path and
// hashes the path up to the slash after the last level: depth 5 is
// /pusher/app/{key}/{server}/{session}, without the xhr, xhr_send or
// xhr_streaming after it (depth 4 would put every session of one {server}
// number on one node, depth 6 would split a session's requests); add one
// per slash of a longer
// HTTPTransports.Path; path-only hashes the same path for HTTP/2's
// absolute URIs):
//
//	frontend pusher
//	    mode http
//	    bind :80
//	    timeout client 60s                 # above HTTPTransports.Heartbeat
//	    acl pusher_http path_beg /pusher/  # HTTPTransports.Path
//	    use_backend pusher_sessions if pusher_http
//	    default_backend pusher_nodes
//	backend pusher_sessions
//	    mode http
//	    balance uri path-only depth 5
//	    hash-type consistent
//	    timeout connect 5s
//	    timeout server 60s
//	    server node1 10.0.0.1:6001
//	    server node2 10.0.0.2:6001
//	backend pusher_nodes                   # WebSocket, HTTP API
//	    mode http
//	    balance roundrobin
//	    timeout connect 5s
//	    timeout server 60s
//	    timeout tunnel 180s                # an upgraded WebSocket: above App.ActivityTimeout + App.PongTimeout
//	    server node1 10.0.0.1:6001
//	    server node2 10.0.0.2:6001
//
// Both were checked with nginx 1.22 and HAProxy 2.6 in front of two nodes
// (every request of a session on one node, sessions on both, streams
// flushed, WebSockets upgraded). The package's tests run pusher-js over
// both HTTP transports through a proxy that balances the same way, with
// two nodes on Redis.
//
// # HTTP API
//
//	POST /apps/{id}/events                      {"name","data","channels"|"channel","socket_id","info"}
//	POST /apps/{id}/batch_events                {"batch":[{"name","data","channel","socket_id","info"}, ...]}
//	GET  /apps/{id}/channels                    ?filter_by_prefix=&info=user_count,subscription_count
//	GET  /apps/{id}/channels/{channel}          ?info=user_count,subscription_count
//	GET  /apps/{id}/channels/{channel}/users
//	POST /apps/{id}/users/{user}/terminate_connections
//
// Requests are signed as Pusher's libraries sign them (auth_key,
// auth_timestamp, auth_version=1.0, body_md5, auth_signature =
// hex(HMAC-SHA256(secret, METHOD\nPATH\nsorted query)), checked in constant
// time), with two checks more than the other self-hosted servers make: the
// timestamp must be within WithMaxSkew (600 s) of the server's clock, and a
// signature is accepted only once within that window, on every node (the
// very same event sent twice within one second is one request twice: the
// second is refused). Limits: event data
// App.MaxEventDataSize (10 KiB, else 413), names MaxEventNameLength,
// channels ValidChannelName and MaxTriggerChannels, batches MaxBatchEvents.
// Counts are cluster-wide: user_count from the Presence,
// subscription_count and occupied by asking the other nodes over the Hub
// (see WithQueryTimeout).
//
// # Webhooks
//
// App.Webhooks get channel_occupied, channel_vacated, member_added,
// member_removed, client_event and cache_miss, batched as {"time_ms",
// "events"} and signed with X-Pusher-Key and X-Pusher-Signature, as the
// server libraries' webhook().isValid() expects. A batch is retried with
// backoff on an error or a non-2xx answer (WithWebhookRetries), then logged
// and counted (Server.WebhookFailures). Events about the whole cluster
// (occupied, vacated, members) are sent by one node, whichever node the
// connections are on; client_event and cache_miss by the node where they
// happen. A departure (channel_vacated, member_removed) waits
// App.WebhookGrace, so that a page reload makes no vacated/occupied pair.
//
// # Channels and Hub topics
//
// Channel c of an app is the Hub topic App.TopicPrefix + c. An event is
// encoded once into the frame its subscribers get, and published on that
// topic with a short header (the socket_id to leave out); every node hands
// the same bytes to every subscriber. So Server.Trigger and the HTTP API
// reach subscribers on every node, and socket_id exclusion works whichever
// node the excluded connection is on.
//
// Anything else published on a channel's topic, by Hub.Publish from Go, the
// push package's publish API or straight into the Broker, reaches the
// channel's subscribers as an event named App.HubEvent ("message") whose
// data is the message (base64 for binary ones); Hub.Broadcast reaches every
// Pusher connection as such an event without a channel (pusher.bind in
// pusher-js). Use Trigger to choose the event name.
//
// A Pusher connection's User is "" for the Hub, so Hub.PublishToUser does
// not reach it: send to #server-to-user-{id} instead.
package pusher
