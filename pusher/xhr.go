package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/longpoll"
	"github.com/ratchetgo/ratchet/internal/origin"
)

// Defaults and limits of pusher-js's HTTP transports (WithHTTPTransports).
const (
	// DefaultHTTPPath is where pusher-js looks for them: its httpPath
	// option's default.
	DefaultHTTPPath = "/pusher"
	// DefaultHTTPHeartbeat is how long a stream or a poll stays silent
	// before the server sends a heartbeat frame, SockJS's 25 s: proxies
	// keep the request open, and pusher-js counts it as activity.
	DefaultHTTPHeartbeat = 25 * time.Second
	// DefaultHTTPSessionTimeout is how long a session waits for the
	// client's next request (a new poll, a renewed stream) before it ends:
	// the end of a client that vanished, or that closed its connection
	// (pusher-js says nothing to the server when it disconnects over HTTP).
	DefaultHTTPSessionTimeout = 10 * time.Second
	// MaxHTTPSendBody bounds an xhr_send body, in bytes, as
	// ratchet.DefaultReadLimit bounds a WebSocket message; a larger one
	// gets 413 and closes the connection with 1009.
	MaxHTTPSendBody = ratchet.DefaultReadLimit
	// MaxHTTPSendMessages bounds the messages of one xhr_send body
	// (pusher-js sends one at a time); more get 413 and close with 1009.
	MaxHTTPSendMessages = 100
	// httpPreludeSize is the "h" prelude of a stream (SockJS's): browsers
	// that buffer the start of a response hand the frames after it at once.
	httpPreludeSize = 2048
)

// HTTPTransports configures the server side of pusher-js's HTTP
// transports, xhr_streaming and xhr_polling (see the package doc). Zero
// fields take the defaults.
type HTTPTransports struct {
	// Path is pusher-js's httpPath: the transports answer at
	// {Path}/app/{key}/{server}/{session}/xhr_streaming|xhr|xhr_send.
	// Default DefaultHTTPPath; "" is not a default: use
	// WithoutHTTPTransports to turn them off.
	Path string
	// Origins are the browser origins that may use them, with the rules of
	// ratchet.WithOrigins; nil: any, as the Server's WebSocket side by
	// default. Give the same list as to WithWsOptions(ratchet.WithOrigins)
	// when you restrict that one.
	Origins []string
	// Heartbeat: DefaultHTTPHeartbeat. Keep it under pusher-js's
	// pongTimeout (30 s): on xhr_polling, a heartbeat is what answers its
	// pings.
	Heartbeat time.Duration
	// SessionTimeout: DefaultHTTPSessionTimeout.
	SessionTimeout time.Duration
	// SendQueue is how many messages may wait for the client's next
	// request, as ratchet.WithSendQueue (the slow-consumer rule). Default
	// ratchet.DefaultSendQueue.
	SendQueue int
	// WriteTimeout bounds the writing of a response or a stream's frame.
	// Default ratchet.DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Observer, if not nil, gets the sessions' metrics as
	// ratchet.WithObserver gets a WebSocket route's: Observer.Route(Path,
	// HTTPTransportLabel) is called once, and each session reports to it
	// (opened, closed with its close code, messages, slow consumers, session
	// timeouts as keepalive timeouts), and refused requests by reason.
	Observer ratchet.Observer
}

// HTTPTransportLabel is the transport an Observer is given for the
// sessions of pusher-js's HTTP transports, streaming and polling alike.
const HTTPTransportLabel = "pusher-http"

// WithHTTPTransports configures pusher-js's HTTP transports, which a Server
// serves by default at DefaultHTTPPath.
func WithHTTPTransports(t HTTPTransports) Option {
	return func(c *config) {
		if t.Path == "" {
			t.Path = DefaultHTTPPath
		}
		c.http = t
	}
}

// WithoutHTTPTransports turns pusher-js's HTTP transports off: the Server
// then answers WebSocket connections only, and pusher-js clients that
// cannot open one have no fallback (404).
func WithoutHTTPTransports() Option { return func(c *config) { c.noHTTP = true } }

// errHTTPSessionTimeout ends a session whose client did not come back.
var errHTTPSessionTimeout = fmt.Errorf("pusher: no request of the HTTP session within its timeout: %w", ratchet.ErrKeepaliveTimeout)

// xhrTransports serves the HTTP transports of a Server.
type xhrTransports struct {
	s        *Server
	cfg      HTTPTransports
	obs      ratchet.RouteObserver // nil: not observed
	sessions longpoll.Registry[*xhrSession]
}

func (x *xhrTransports) reject(reason ratchet.RejectReason) {
	if x.obs != nil {
		x.obs.HandshakeRejected(reason)
	}
}

func (s *Server) xhrRoutes() error {
	if s.cfg.noHTTP {
		return nil
	}
	cfg := s.cfg.http
	if cfg.Path == "" {
		cfg.Path = DefaultHTTPPath
	}
	if !strings.HasPrefix(cfg.Path, "/") || strings.HasSuffix(cfg.Path, "/") || strings.ContainsAny(cfg.Path, "{}? ") {
		return fmt.Errorf("%w: HTTPTransports.Path %q: a path such as /pusher is expected", ErrInvalidApp, cfg.Path)
	}
	if cfg.Origins == nil {
		cfg.Origins = []string{"*"}
	}
	cfg.Heartbeat = cmp(cfg.Heartbeat, DefaultHTTPHeartbeat)
	cfg.SessionTimeout = cmp(cfg.SessionTimeout, DefaultHTTPSessionTimeout)
	cfg.WriteTimeout = cmp(cfg.WriteTimeout, ratchet.DefaultWriteTimeout)
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = ratchet.DefaultSendQueue
	}
	x := &xhrTransports{s: s, cfg: cfg}
	if cfg.Observer != nil {
		x.obs = cfg.Observer.Route(cfg.Path, HTTPTransportLabel)
	}
	s.xhr = x
	base := cfg.Path + "/app/{key}/{server}/{session}/"
	s.mux.HandleFunc("POST "+base+"xhr_streaming", x.serve(x.stream))
	s.mux.HandleFunc("POST "+base+"xhr", x.serve(x.poll))
	s.mux.HandleFunc("POST "+base+"xhr_send", x.serve(x.send))
	s.mux.HandleFunc("OPTIONS "+base+"{transport}", x.serve(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Max-Age", "31536000")
		w.WriteHeader(http.StatusNoContent)
	}))
	return nil
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// serve applies what every request of the transports gets: no caching,
// the origin policy and its CORS headers (pusher-js's page is often on
// another host than the server), and a well-formed session name.
func (x *xhrTransports) serve(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		longpoll.NoStore(w)
		if err := origin.Check(r, x.cfg.Origins); err != nil {
			x.reject(ratchet.RejectOrigin)
			http.Error(w, "pusher: origin not allowed: "+err.Error(), http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			h.Add("Vary", "Origin")
		}
		if !validSessionPart(r.PathValue("server")) || !validSessionPart(r.PathValue("session")) {
			x.reject(ratchet.RejectMalformed)
			http.Error(w, "pusher: malformed session name in the URL: /{server}/{session}/ of letters and digits expected", http.StatusBadRequest)
			return
		}
		next(w, r)
	}
}

// maxSessionPart bounds each part of the session name pusher-js makes
// (three digits, then eight base-32 characters).
const maxSessionPart = 32

func validSessionPart(s string) bool {
	if s == "" || len(s) > maxSessionPart {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// sessionID names a session: the app key and pusher-js's two parts.
func sessionID(r *http.Request) string {
	return r.PathValue("key") + "/" + r.PathValue("server") + "/" + r.PathValue("session")
}

// xhrItem is one thing for the client: a Pusher frame, or the close.
type xhrItem struct {
	frame  []byte
	close  bool
	code   ratchet.StatusCode
	reason string
}

// xhrSession is one pusher-js HTTP session: the ratchet.Transport of its
// Conn, which the Server handles as it handles a WebSocket connection.
type xhrSession struct {
	x    *xhrTransports
	id   string
	lp   *longpoll.Session[xhrItem]
	conn *ratchet.TransportConn

	closeSent atomic.Bool // the close frame has been written
}

// xhrComponent is the Server's component for a session: OnClose also
// ends its membership of the registry.
type xhrComponent struct {
	component
	x *xhrTransports
}

func (c xhrComponent) OnClose(rc ratchet.Conn) {
	defer c.x.sessions.Leave()
	c.component.OnClose(rc)
}

// open returns the session the request names, made (not yet opened) if
// new: only xhr_streaming and xhr make sessions, as in SockJS.
func (x *xhrTransports) open(w http.ResponseWriter, r *http.Request) (*xhrSession, bool) {
	hs, created, ok := x.sessions.CreateAt(sessionID(r), func(id string) *xhrSession {
		hs := &xhrSession{x: x, id: id}
		// A new request replaces the pending one: pusher-js aborts its
		// stream or poll and makes a new one, which may arrive before the
		// server has seen the abort.
		hs.lp = longpoll.NewSession[xhrItem](longpoll.Config{Overlap: longpoll.Replace,
			Idle: x.cfg.SessionTimeout, IdleErr: errHTTPSessionTimeout, OnEnd: hs.ended})
		hs.conn = ratchet.NewTransportConn(xhrComponent{component{x.s}, x}, hs, r, "", x.cfg.SendQueue)
		if x.obs != nil {
			hs.conn.Observe(x.obs)
		}
		return hs
	})
	if !ok {
		x.reject(ratchet.RejectShutdown)
		http.Error(w, "pusher: server shutting down", http.StatusServiceUnavailable)
		return nil, false
	}
	if created {
		// OnOpen admits the connection (or refuses it: the first frames
		// then say why) before the client has the open frame, so it
		// precedes any message of the client.
		hs.conn.Open()
	}
	return hs, created
}

// begin starts a response of frames, after the prelude if any.
func (x *xhrTransports) begin(w http.ResponseWriter, prelude []byte) error {
	w.Header().Set("Content-Type", "application/javascript; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	return x.write(w, prelude)
}

// write writes b within the write timeout and flushes it.
func (x *xhrTransports) write(w http.ResponseWriter, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(x.cfg.WriteTimeout))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// stream serves xhr_streaming: one long response of frames, one per line,
// until the session ends or pusher-js renews the request (it does after
// 256 KiB, with the same session).
func (x *xhrTransports) stream(w http.ResponseWriter, r *http.Request) {
	hs, created := x.open(w, r)
	if hs == nil {
		return
	}
	first := true
	_ = hs.lp.Stream(r.Context(), x.cfg.Heartbeat, func(batch []xhrItem, closed bool) error {
		if !first {
			return x.write(w, hs.appendFrames(nil, batch, closed))
		}
		// The first call, at once: the prelude, the open frame of a new
		// session, and what already waits.
		first = false
		b := make([]byte, httpPreludeSize, httpPreludeSize+64)
		for i := range b {
			b[i] = 'h'
		}
		b = append(b, '\n')
		if created {
			b = append(b, 'o', '\n')
		}
		if len(batch) > 0 || closed {
			b = hs.appendFrames(b, batch, closed)
		}
		return x.begin(w, b)
	})
}

// poll serves xhr (pusher-js's xhr_polling): the open frame for a new
// session, else what waits for the client, or a heartbeat after
// Heartbeat; pusher-js polls again on every 200.
func (x *xhrTransports) poll(w http.ResponseWriter, r *http.Request) {
	hs, created := x.open(w, r)
	switch {
	case hs == nil:
	case created:
		_ = x.begin(w, []byte("o\n"))
	default:
		_ = hs.lp.Poll(r.Context(), x.cfg.Heartbeat, func(batch []xhrItem, closed bool) error {
			return x.begin(w, hs.appendFrames(nil, batch, closed))
		})
	}
}

// send serves xhr_send: a JSON array of the client's messages, each a
// Pusher message as a string; "[]" is pusher-js's heartbeat.
func (x *xhrTransports) send(w http.ResponseWriter, r *http.Request) {
	hs, ok := x.sessions.Get(sessionID(r))
	if !ok {
		http.Error(w, "pusher: unknown HTTP session (open it with xhr_streaming or xhr first)", http.StatusNotFound)
		return
	}
	body, err := longpoll.ReadBody(w, r, MaxHTTPSendBody)
	if errors.Is(err, longpoll.ErrTooLarge) {
		hs.refuse(w, http.StatusRequestEntityTooLarge, ratchet.StatusMessageTooBig,
			"xhr_send body over "+strconv.Itoa(MaxHTTPSendBody)+" bytes")
		return
	}
	if err != nil {
		http.Error(w, "pusher: reading the xhr_send body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var msgs []string
	if err := json.Unmarshal(body, &msgs); err != nil {
		hs.refuse(w, http.StatusBadRequest, ratchet.StatusProtocolError, "xhr_send body is not a JSON array of strings")
		return
	}
	if len(msgs) > MaxHTTPSendMessages {
		hs.refuse(w, http.StatusRequestEntityTooLarge, ratchet.StatusMessageTooBig,
			"xhr_send body of "+strconv.Itoa(len(msgs))+" messages, over "+strconv.Itoa(MaxHTTPSendMessages))
		return
	}
	for _, m := range msgs {
		if hs.conn.Receive(ratchet.Message{Type: ratchet.MessageText, Data: []byte(m)}) != nil {
			break // closing: its last frames are on their way
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// refuse answers a broken xhr_send and closes the connection with code:
// the client's next poll or its stream gets the close frame.
func (hs *xhrSession) refuse(w http.ResponseWriter, status int, code ratchet.StatusCode, reason string) {
	http.Error(w, "pusher: "+reason, status)
	_ = hs.conn.Close(code, reason)
}

// appendFrames appends the lines of a batch: consecutive Pusher frames as
// one "a" frame (a JSON array of strings), the close as a "c" frame; a
// heartbeat "h" for an empty batch; and a close frame at the end of a
// session that ended without one.
func (hs *xhrSession) appendFrames(b []byte, batch []xhrItem, closed bool) []byte {
	if len(batch) == 0 && !closed {
		return append(b, 'h', '\n')
	}
	for i := 0; i < len(batch); {
		if batch[i].close {
			b = appendClose(b, batch[i].code, batch[i].reason)
			hs.closeSent.Store(true)
			i++
			continue
		}
		b = append(b, 'a', '[')
		for j := i; i < len(batch) && !batch[i].close; i++ {
			if i > j {
				b = append(b, ',')
			}
			b = appendJSONString(b, string(batch[i].frame))
		}
		b = append(b, ']', '\n')
	}
	if closed && !hs.closeSent.Swap(true) {
		b = appendClose(b, ratchet.StatusAbnormalClosure, "Session ended")
	}
	return b
}

func appendClose(b []byte, code ratchet.StatusCode, reason string) []byte {
	b = append(b, 'c', '[')
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ',')
	b = appendJSONString(b, reason)
	return append(b, ']', '\n')
}

// WriteMessages implements ratchet.Transport: it waits until a poll or the
// stream has taken msgs (or the session ends, at the latest after the
// session timeout without a request).
func (hs *xhrSession) WriteMessages(msgs []ratchet.Message) error {
	items := make([]xhrItem, len(msgs))
	for i, m := range msgs {
		items[i] = xhrItem{frame: m.Data}
	}
	n, ok := hs.lp.Push(items...)
	if !ok || !hs.lp.WaitTaken(context.Background(), n) {
		return hs.lp.EndErr(ratchet.ErrClosed)
	}
	return nil
}

// Close implements ratchet.Transport: the close frame, for the client's
// next poll or its stream, then the end.
func (hs *xhrSession) Close(code ratchet.StatusCode, reason string) error {
	if n, ok := hs.lp.Push(xhrItem{close: true, code: code, reason: reason}); ok {
		ctx, cancel := context.WithTimeout(context.Background(), hs.x.cfg.SessionTimeout+hs.x.cfg.Heartbeat)
		hs.lp.WaitTaken(ctx, n)
		cancel()
	}
	hs.lp.End(nil)
	return nil
}

// ended runs once when the session ends: out of the registry, and the
// Conn told.
func (hs *xhrSession) ended(err error) {
	hs.x.sessions.Remove(hs.id)
	hs.conn.End(err)
}

// shutdown waits until every HTTP session has ended (the Server has
// closed their connections with 4200), or ends the rest when ctx is done.
func (x *xhrTransports) shutdown(ctx context.Context) error {
	if x == nil {
		return nil
	}
	return x.sessions.Shutdown(ctx, func() {}, func() { x.sessions.Each(func(hs *xhrSession) { hs.lp.End(nil) }) })
}
