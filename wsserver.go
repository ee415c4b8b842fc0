package ratchet

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet/internal/lifecycle"
	"github.com/ratchetgo/ratchet/internal/wire"
)

// WsServer serves one MessageComponent over WebSocket; it is an http.Handler
// that can be mounted on any mux (Ratchet's new WsServer($component)). App
// builds one per route.
//
// Each upgraded connection is read by a goroutine of its own, and the
// handler goroutine of net/http returns right after the handshake, so its
// buffers are freed while the connection lives on.
type WsServer struct {
	component MessageComponent
	cfg       wsConfig
	accept    websocket.AcceptOptions

	conns ConnSet         // every open connection
	life  lifecycle.Group // connections not yet through OnClose
	obs   RouteObserver   // nil: not observed
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
	hw := &hijackWriter{ResponseWriter: w, writeTimeout: s.cfg.writeTimeout}
	ws, err := websocket.Accept(hw, r, &s.accept)
	if err != nil {
		release()
		s.reject(RejectMalformed)
		s.cfg.log().Debug("ratchet: handshake refused", "remote", r.RemoteAddr, "err", err)
		return // Accept has answered the request
	}
	c := newConn(s, ws, hw.wc, r, user, hw.header.Get("Sec-WebSocket-Extensions") != "")
	if !s.life.Enter(func() { s.conns.Add(c) }) {
		release()
		_ = ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	context.AfterFunc(c.ctx, release) // the slots are free once the connection has ended
	if s.obs != nil {
		s.obs.ConnOpened()
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

// hijackWriter hands coder/websocket our wrapped connection instead of the
// raw hijacked one (see package internal/wire), and writes the 101 answer
// itself, in one write from the headers coder/websocket chose, instead of
// through net/http's general response machinery. Any other answer (a
// refusal) goes to the real ResponseWriter.
type hijackWriter struct {
	http.ResponseWriter
	writeTimeout time.Duration
	header       http.Header // set by coder/websocket
	switching    bool        // WriteHeader(101) was called: ours to send
	forwarded    bool        // the header went to the real ResponseWriter
	wc           *wire.Conn
}

func (h *hijackWriter) Header() http.Header {
	if h.header == nil {
		h.header = make(http.Header, 4)
	}
	return h.header
}

func (h *hijackWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		h.switching = true
		return
	}
	h.forward()
	h.ResponseWriter.WriteHeader(code)
}

func (h *hijackWriter) Write(b []byte) (int, error) {
	h.forward()
	return h.ResponseWriter.Write(b)
}

func (h *hijackWriter) forward() {
	if h.forwarded {
		return
	}
	h.forwarded = true
	dst := h.ResponseWriter.Header()
	for k, v := range h.header {
		dst[k] = v
	}
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	wc, rw := wire.Hijacked(nc, brw, readBufferSize, writeBufferSize, h.writeTimeout)
	if h.switching {
		b := make([]byte, 0, 256)
		b = append(b, "HTTP/1.1 101 Switching Protocols\r\n"...)
		for k, vs := range h.header {
			for _, v := range vs {
				b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
			}
		}
		if _, err := wc.Write(append(b, "\r\n"...)); err != nil {
			_ = nc.Close()
			return nil, nil, err
		}
	}
	h.wc = wc
	return wc, rw, nil
}

// checkOrigin applies the origin policy; see WithOrigins.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" || slices.Contains(patterns, "*") {
		return nil
	}
	if origin == opaqueOrigin {
		if slices.ContainsFunc(patterns, func(p string) bool { return strings.EqualFold(p, opaqueOrigin) }) {
			return nil
		}
		return errOriginNotAllowed
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return errors.New("ratchet: malformed Origin header")
	}
	if len(patterns) == 0 {
		if strings.EqualFold(u.Host, r.Host) {
			return nil
		}
		return errOriginNotAllowed
	}
	for _, p := range patterns {
		if strings.EqualFold(p, opaqueOrigin) {
			continue // not a host name
		}
		target := u.Hostname()
		switch {
		case strings.Contains(p, "://"):
			target = u.Scheme + "://" + u.Host
		case strings.Contains(p, ":"):
			target = u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return errOriginNotAllowed
}

// opaqueOrigin is the Origin a browser sends for a page without an origin
// of its own: a file:// page, a sandboxed frame, a data: URL (RFC 6454 §7.3).
const opaqueOrigin = "null"

var errOriginNotAllowed = errors.New("ratchet: origin not allowed")
