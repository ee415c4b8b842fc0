package ratchet

import (
	"context"
	"errors"
	"net/http"
	"runtime"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet/internal/lifecycle"
	"github.com/ratchetgo/ratchet/internal/origin"
	"github.com/ratchetgo/ratchet/internal/wire"
)

// WsServer serves one MessageComponent over WebSocket; it is an http.Handler
// that can be mounted on any mux (Ratchet's new WsServer($component)). App
// builds one per route.
//
// On Linux an idle connection holds no goroutine: between messages its
// socket waits in an epoll set, and a goroutine reads only while input is
// there (the environment variable RATCHET_EPOLL=0 turns that off). The
// handler's goroutine runs OnOpen and reads what came with the handshake,
// and ServeHTTP returns once the connection waits for input, so that the
// handshake starts no goroutine. Elsewhere, and over TLS, ServeHTTP returns
// right after the handshake and each connection is read by a goroutine of
// its own. Either way the server's buffers of the request are freed while
// the connection lives on.
type WsServer struct {
	component MessageComponent
	cfg       wsConfig
	accept    websocket.AcceptOptions

	conns ConnSet         // every open connection
	life  lifecycle.Group // connections not yet through OnClose
	obs   RouteObserver   // nil: not observed

	keepalive keepaliveSweep // pings every connection's peer, ends the silent ones
}

// NewWsServer returns a handler serving c, configured by opts.
func NewWsServer(c MessageComponent, opts ...WsOption) *WsServer {
	s := &WsServer{component: c, cfg: defaultWsConfig()}
	for _, o := range opts {
		o(&s.cfg)
	}
	s.accept.InsecureSkipVerify = true // checkOrigin does it, with Ratchet's rules
	if sp, ok := c.(SubProtocoler); ok {
		s.accept.Subprotocols = sp.SubProtocols()
	}
	if s.cfg.compression {
		s.accept.CompressionMode = websocket.CompressionNoContextTakeover
	}
	if s.cfg.observer != nil {
		s.obs = s.cfg.observer.Route(s.cfg.routeName, "websocket")
	}
	return s
}

// ServeHTTP checks the origin and the Authenticator, upgrades the request and
// starts the connection. Refusals are plain HTTP answers sent before any
// upgrade: 403 for a foreign origin, 401 (or the RejectError's status) from
// the Authenticator, 4xx for a malformed handshake, 503 after Shutdown, and
// 503 or 429 with Retry-After over a limit (WithMaxConns,
// WithMaxConnsPerIP, WithHandshakeRate).
func (s *WsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.life.Closed() {
		s.reject(RejectShutdown)
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	ip := clientIP(r, s.cfg.trustedProxies)
	if !s.handshakeAllowed(w, ip) {
		s.reject(RejectLimit)
		return
	}
	if err := checkOrigin(r, s.cfg.origins); err != nil {
		s.reject(RejectOrigin)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	var user string
	if s.cfg.authenticate != nil {
		u, err := s.cfg.authenticate(r)
		if err != nil {
			s.reject(RejectAuth)
			status := http.StatusUnauthorized
			var re *RejectError
			if errors.As(err, &re) && re.Status >= 400 && re.Status < 600 {
				status = re.Status
			}
			http.Error(w, err.Error(), status)
			return
		}
		user = u
	}
	release, ok := s.admit(w, r, ip)
	if !ok {
		s.reject(RejectLimit)
		return
	}
	c := new(conn)
	ws, wc, deflate, err := wire.Accept(w, r, c.acceptOptions(s), s.cfg.writeTimeout)
	if err != nil {
		release()
		s.reject(RejectMalformed)
		s.cfg.log().Debug("ratchet: handshake refused", "remote", r.RemoteAddr, "err", err)
		return // Accept has answered the request
	}
	// coder/websocket sets a finalizer on every Conn, to close one its user
	// forgets; finish always closes ours. Without it a connection holds no
	// runtime record outside the heap and the collector no special to scan.
	runtime.SetFinalizer(ws, nil)
	c.start(s, ws, wc, r, user, deflate)
	if !s.life.Enter(func() { s.conns.Add(c) }) {
		release()
		_ = ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	c.release = release // finish frees the slots once the connection has ended
	if s.obs != nil {
		s.obs.ConnOpened()
	}
	if c.parks {
		// run returns as soon as the connection waits for input: OnOpen and
		// the first read take the handshake's goroutine instead of a new one.
		c.run()
		return
	}
	go c.run()
}

// Broadcast sends msg to every open connection of this server except those
// listed, and returns how many it was queued for. It never blocks on a slow
// peer (see Conn.Send).
func (s *WsServer) Broadcast(msg Message, except ...Conn) int {
	return s.conns.Broadcast(msg, except...)
}

// Len returns the number of open connections.
func (s *WsServer) Len() int { return s.conns.Len() }

// Shutdown refuses new connections, closes every open one with
// StatusGoingAway (1001) and waits until each has been through OnClose, or
// until ctx is done: then the remaining sockets are dropped and ctx's error
// is returned.
func (s *WsServer) Shutdown(ctx context.Context) error {
	return s.life.Shutdown(ctx,
		func() { s.conns.Each(func(c Conn) { _ = c.Close(StatusGoingAway, "server shutting down") }) },
		func() { s.conns.Each(func(c Conn) { c.(*conn).abort(nil) }) },
		false) // OnClose follows the dropped sockets; a stuck OnClose must not hold Shutdown
}

func (s *WsServer) remove(c *conn) {
	if s.obs != nil {
		s.obs.ConnClosed(c.closeStatus())
	}
	s.conns.Remove(c)
	s.life.Leave()
}

// checkOrigin applies the origin policy; see WithOrigins.
func checkOrigin(r *http.Request, patterns []string) error { return origin.Check(r, patterns) }
