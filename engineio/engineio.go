// Package engineio serves a ratchet.MessageComponent over Engine.IO
// protocol version 4, the transport layer under Socket.IO, for clients such
// as the npm package engine.io-client: HTTP long polling where WebSocket
// cannot pass (a proxy, a firewall), the WebSocket transport, and the
// upgrade from one to the other mid-session.
//
//	chat := ratchet.ComponentFuncs{Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }}
//	mux.Handle("/engine.io/", engineio.NewHandler(chat))
//
//	// in the browser, with engine.io-client
//	import { Socket } from "engine.io-client";
//	const socket = new Socket("https://example.com"); // path "/engine.io/" by default
//	socket.on("message", data => console.log(data));
//	socket.send("hello");
//
// Each Engine.IO message packet is one ratchet.Message (text, or binary
// when the client sends an ArrayBuffer or Blob), and each Conn.Send goes
// out as one message packet. The component sees a ratchet.Conn like any
// other: a Hub, a ConnSet and its callbacks work the same.
//
// # Sessions
//
// A session starts with a handshake (GET with no sid) and is identified by
// a random, unguessable 128-bit sid. The origin policy and the
// authentication hook apply to every handshake; the origin policy to every
// request. The server pings every ping interval; a session whose client
// does not answer within the ping timeout (a client that vanished) ends:
// OnError receives ratchet.ErrKeepaliveTimeout, then OnClose, once.
//
// While polling, messages wait in the session until the client's next GET
// takes them; one GET may be pending at a time, and a second one closes the
// session, as the protocol says. A Send that finds the send queue full
// fails with ratchet.ErrSlowConsumer and closes the session. Messages a GET
// took are gone from the session: if the response does not reach the
// client, the session ends with an error (OnError), so a message is never
// lost silently, as with a WebSocket whose connection breaks.
//
// During the upgrade to WebSocket (2probe, 3probe, then 5) the pending GET
// is released with a noop; messages keep waiting in the session and go out
// on the WebSocket once the client sent the upgrade packet, in order, so
// nothing is lost or duplicated across the switch.
//
// # Clusters
//
// Behind a load balancer with no sticky sessions, give every node's
// handler the broker of its Hub (WithBroker): the sid then names the node
// that owns the session, and a request arriving at another node is
// forwarded to the owner over the broker and answered by it. A WebSocket
// upgrade arriving at another node is refused, so that the client stays
// on polling. See WithBroker.
package engineio

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/forward"
	"github.com/ratchetgo/ratchet/internal/longpoll"
	"github.com/ratchetgo/ratchet/internal/origin"
)

// Protocol is the Engine.IO protocol version served (the EIO query
// parameter).
const Protocol = "4"

// Defaults of the session settings, those of the reference server.
const (
	DefaultPingInterval = 25 * time.Second // between two pings of the server
	DefaultPingTimeout  = 20 * time.Second // for the pong to come back
	DefaultMaxPayload   = 1_000_000        // bytes of a POST body, or of a WebSocket message
	DefaultWriteTimeout = 10 * time.Second // to write a poll response or a WebSocket message
	// DefaultMaxPacketsPerPost bounds the packets of one POST body: the
	// work one request may ask for, whatever its size. engine.io-client
	// splits its batches by maxPayload only, so the default leaves room for
	// a busy client's queue of short messages.
	DefaultMaxPacketsPerPost = 10_000
)

// ErrProtocol is what OnError receives (wrapped, saying what happened) when
// a client breaks the Engine.IO protocol: a second pending poll, a POST
// over the payload limit, an unknown packet.
var ErrProtocol = errors.New("engineio: protocol error")

// Handler serves Engine.IO sessions for one component. Mount it at the
// path the clients use, engine.io-client's default being "/engine.io/".
type Handler struct {
	component ratchet.MessageComponent
	cfg       config
	obs       ratchet.RouteObserver // WithObserver; nil: not observed

	sessions longpoll.Registry[*session] // sessions not yet through OnClose

	node    *forward.Node // WithBroker: this node of the cluster
	nodeErr error         // why the node could not join the cluster
}

// NewHandler returns a Handler serving component, configured by opts.
func NewHandler(component ratchet.MessageComponent, opts ...Option) *Handler {
	h := &Handler{component: component, cfg: config{
		pingInterval: DefaultPingInterval,
		pingTimeout:  DefaultPingTimeout,
		maxPayload:   DefaultMaxPayload,
		maxPackets:   DefaultMaxPacketsPerPost,
		writeTimeout: DefaultWriteTimeout,
		sendQueue:    ratchet.DefaultSendQueue,
	}}
	for _, o := range opts {
		o(&h.cfg)
	}
	h.sessions.NewID = h.newSessionID
	if h.cfg.observer != nil {
		h.obs = h.cfg.observer.Route(h.cfg.route, TransportLabel)
	}
	h.joinCluster()
	return h
}

// reject reports a refused handshake.
func (h *Handler) reject(reason ratchet.RejectReason) {
	if h.obs != nil {
		h.obs.HandshakeRejected(reason)
	}
}

// The error codes of the reference server, in the JSON body of a 400.
const (
	codeUnknownTransport = 0
	codeUnknownSid       = 1
	codeBadHandshake     = 2
	codeBadRequest       = 3
	codeForbidden        = 4
	codeBadVersion       = 5
)

var codeMessages = [...]string{"Transport unknown", "Session ID unknown", "Bad handshake method",
	"Bad request", "Forbidden", "Unsupported protocol version"}

func writeError(w http.ResponseWriter, status, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, codeMessages[code]})
}

// ServeHTTP answers one Engine.IO request: a handshake, a poll (GET), a
// POST of packets, or a WebSocket (new, or the upgrade of a polling
// session). Refusals are 400 with the protocol's JSON error, 403 for a
// foreign origin, 401 (or the RejectError's status) from the
// Authenticator, 503 after Shutdown. With WithBroker, a request of another
// node's session is answered by that node (see WithBroker).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.forwarded(w, r) { // WithBroker: a session of another node
		return
	}
	longpoll.NoStore(w)
	if err := origin.Check(r, h.cfg.origins); err != nil {
		h.reject(ratchet.RejectOrigin)
		writeError(w, http.StatusForbidden, codeForbidden)
		return
	}
	q := r.URL.Query()
	if q.Get("EIO") != Protocol {
		h.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusBadRequest, codeBadVersion)
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		h.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusBadRequest, codeUnknownTransport)
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		h.handshake(w, r, transport)
		return
	}
	s, ok := h.sessions.Get(sid)
	if !ok {
		writeError(w, http.StatusBadRequest, codeUnknownSid)
		return
	}
	switch {
	case transport == "websocket":
		s.upgrade(w, r)
	case r.Method == http.MethodGet:
		s.poll(w, r)
	case r.Method == http.MethodPost:
		s.post(w, r)
	default:
		writeError(w, http.StatusBadRequest, codeBadRequest)
	}
}

func (h *Handler) handshake(w http.ResponseWriter, r *http.Request, transport string) {
	if r.Method != http.MethodGet {
		h.reject(ratchet.RejectMalformed)
		writeError(w, http.StatusBadRequest, codeBadHandshake)
		return
	}
	var user string
	if h.cfg.authenticate != nil {
		u, err := h.cfg.authenticate(r)
		if err != nil {
			status := http.StatusUnauthorized
			var re *ratchet.RejectError
			if errors.As(err, &re) && re.Status >= 400 && re.Status < 600 {
				status = re.Status
			}
			h.reject(ratchet.RejectAuth)
			http.Error(w, err.Error(), status)
			return
		}
		user = u
	}
	var ws *wsConn
	if transport == "websocket" {
		var err error
		if ws, err = h.accept(w, r); err != nil {
			return // accept has answered
		}
	}
	s, ok := h.sessions.Create(func(id string) *session { return h.newSession(id, r, user) })
	if !ok {
		h.reject(ratchet.RejectShutdown)
		if ws != nil {
			ws.closeNow()
		} else {
			http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		}
		return
	}
	open := h.openPacket(s.id, ws == nil)
	if ws != nil {
		s.lp.Push(packet{typ: typeOpen, data: open}) // before OnOpen, whose Sends must follow it
	}
	s.conn.Open() // before the client has the sid, so OnOpen precedes any OnMessage
	s.armPing()
	if ws != nil {
		s.runWebSocket(ws)
		return
	}
	writePayload(w, []packet{{typ: typeOpen, data: open}}, h.cfg.writeTimeout)
}

func (h *Handler) openPacket(sid string, polling bool) []byte {
	upgrades := []string{}
	if polling {
		upgrades = append(upgrades, "websocket")
	}
	b, _ := json.Marshal(struct {
		Sid          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int64    `json:"pingInterval"`
		PingTimeout  int64    `json:"pingTimeout"`
		MaxPayload   int64    `json:"maxPayload"`
	}{sid, upgrades, h.cfg.pingInterval.Milliseconds(), h.cfg.pingTimeout.Milliseconds(), h.cfg.maxPayload})
	return b
}

// Len returns the number of open sessions.
func (h *Handler) Len() int { return h.sessions.Len() }

// Shutdown refuses new sessions, closes every open one with
// ratchet.StatusGoingAway (the client receives a close packet) and waits
// until each has been through OnClose, or until ctx is done: then the
// remaining sessions are ended at once and ctx's error is returned.
// App.Shutdown calls it for a Handler given to App.Handle.
func (h *Handler) Shutdown(ctx context.Context) error {
	err := h.sessions.Shutdown(ctx,
		func() {
			h.sessions.Each(func(s *session) { _ = s.conn.Close(ratchet.StatusGoingAway, "server shutting down") })
		},
		func() { h.sessions.Each(func(s *session) { s.end(nil) }) })
	if cerr := h.leaveCluster(ctx); err == nil { // WithBroker: after the sessions, whose polls it may carry
		err = cerr
	}
	return err
}

// tracked is the component as the sessions see it: OnClose also ends the
// session's membership of the handler.
type tracked struct {
	ratchet.MessageComponent
	h *Handler
}

func (t tracked) OnClose(c ratchet.Conn) {
	defer t.h.sessions.Leave()
	t.MessageComponent.OnClose(c)
}
