package ratchet

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// App is a WebSocket server with routes, the Go form of Ratchet\App:
//
//	app := ratchet.NewApp("localhost", 8080)
//	app.Route("/chat", &Chat{}, []string{"*"})
//	log.Fatal(app.Run())
//
// It is also an http.Handler, so it can be mounted on an existing server
// instead of calling Run; upgrades then take net/http's path, not Serve's
// faster one. Mounted, port is unused (pass 0), httpHost "" lets
// the routes answer any host, and the limits Run and Serve set on their
// http.Server (WithHandshakeTimeout, WithReadTimeout, WithIdleTimeout,
// WithMaxHeaderBytes) are yours to set on your own. Under
// http.StripPrefix, Conn.Request().URL.Path is the stripped path. In tests with httptest, a route of an App whose
// httpHost is "localhost" needs that Host header (websocket.DialOptions.Host).
type App struct {
	httpHost         string
	port             int
	address          string
	tlsConfig        *tls.Config
	handshakeTimeout time.Duration
	readTimeout      time.Duration
	idleTimeout      time.Duration
	maxHeaderBytes   int
	defaults         []WsOption
	logger           *slog.Logger  // WithLogger among the defaults; nil: slog.Default()
	obs              RouteObserver // WithObserver among the defaults, for refusals before any route

	mux   http.ServeMux
	hosts atomic.Pointer[[]string] // every host a pattern names, lower case

	mu          sync.Mutex
	servers     []*WsServer
	shutdowners []shutdowner // handlers given to Handle that can shut down
	https       []*http.Server
	shutdown    bool
	fresh       map[net.Conn]struct{} // accepted, no request yet (http.StateNew)
	draining    atomic.Bool           // Shutdown has begun: ReadyHandler answers 503
}

type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// NewApp returns an App whose routes answer requests for httpHost ("" or "*":
// any host) and whose Run listens on port. Run listens on 127.0.0.1 unless
// WithAddress says otherwise, as Ratchet does.
func NewApp(httpHost string, port int, opts ...Option) *App {
	a := &App{
		httpHost:         httpHost,
		port:             port,
		address:          DefaultAddress,
		handshakeTimeout: DefaultHandshakeTimeout,
		readTimeout:      DefaultReadTimeout,
		idleTimeout:      DefaultIdleTimeout,
		maxHeaderBytes:   DefaultMaxHeaderBytes,
	}
	for _, o := range opts {
		o.applyApp(a)
	}
	var cfg wsConfig
	for _, o := range a.defaults {
		o(&cfg)
	}
	a.logger = cfg.logger
	if cfg.observer != nil {
		a.obs = cfg.observer.Route("", "websocket")
	}
	return a
}

// ServeHTTP dispatches to the routes and handlers. Host names match without
// regard to case or port; unknown paths and hosts get 404.
//
// A request that no route or handler takes for its host, but one would for
// another host, gets a 404 that names the hosts that would take it, and a
// debug line in the App's log (WithLogger): with httpHost "localhost",
// http://127.0.0.1:8080/ is such a request. The answer is JSON,
// {"error":"wrong_host","message":"..."}, when the request sends or accepts
// JSON (Content-Type or Accept application/json), as a publish request of
// package push does; plain text otherwise.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if lower := strings.ToLower(r.Host); lower != r.Host {
		r2 := *r
		r2.Host = lower
		r = &r2
	}
	if hosts := a.hostsServing(r); len(hosts) > 0 {
		a.wrongHost(w, r, hosts)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// hostsServing returns the hosts whose patterns would take r when none
// takes it for its own host; nil at no cost when r's host is one the App
// names, or when it names none.
func (a *App) hostsServing(r *http.Request) []string {
	hosts := a.hosts.Load()
	if hosts == nil {
		return nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if slices.Contains(*hosts, host) {
		return nil
	}
	if _, pattern := a.mux.Handler(r); pattern != "" {
		return nil // a pattern for any host takes it
	}
	var serving []string
	for _, h := range *hosts {
		r2 := *r
		r2.Host = h
		if _, pattern := a.mux.Handler(&r2); pattern != "" {
			serving = append(serving, h)
		}
	}
	return serving
}

// wrongHost answers a request that only other hosts' patterns take.
func (a *App) wrongHost(w http.ResponseWriter, r *http.Request, hosts []string) {
	quoted := make([]string, len(hosts))
	for i, h := range hosts {
		quoted[i] = strconv.Quote(h)
	}
	if a.obs != nil && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		a.obs.HandshakeRejected(RejectHost)
	}
	msg := "this server answers " + r.URL.Path + " for host " + strings.Join(quoted, " or ") +
		", not for " + strconv.Quote(r.Host)
	a.log().Debug("ratchet: request for a host the app does not serve",
		"host", r.Host, "serves", hosts, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	if !wantsJSON(r) {
		http.Error(w, "404 page not found: "+msg, http.StatusNotFound)
		return
	}
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"wrong_host", msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(append(b, '\n'))
}

// log is the App's logger (WithLogger).
func (a *App) log() *slog.Logger { return (&wsConfig{logger: a.logger}).log() }

// wantsJSON reports whether r sends or accepts JSON.
func wantsJSON(r *http.Request) bool {
	for _, v := range []string{r.Header.Get("Content-Type"), r.Header.Get("Accept")} {
		if strings.Contains(strings.ToLower(v), "application/json") {
			return true
		}
	}
	return false
}

// nameHost records a host that a pattern names, for hostsServing.
func (a *App) nameHost(host string) {
	if anyHost(host) {
		return
	}
	host = strings.ToLower(host)
	a.mu.Lock()
	defer a.mu.Unlock()
	var hosts []string
	if p := a.hosts.Load(); p != nil {
		hosts = *p
	}
	if !slices.Contains(hosts, host) {
		hosts = append(slices.Clip(hosts), host)
		a.hosts.Store(&hosts)
	}
}

// Run listens on the App's address and port and serves until Shutdown, when
// it returns ErrServerClosed.
func (a *App) Run() error {
	l, err := net.Listen("tcp", net.JoinHostPort(a.address, strconv.Itoa(a.port)))
	if err != nil {
		return err
	}
	return a.Serve(l)
}

// RunTLS is Run over TLS (wss://) with the certificate and key in the given
// PEM files.
func (a *App) RunTLS(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	a.mu.Lock()
	cfg := &tls.Config{}
	if a.tlsConfig != nil {
		cfg = a.tlsConfig.Clone()
	}
	cfg.Certificates = append(cfg.Certificates, cert)
	a.tlsConfig = cfg
	a.mu.Unlock()
	return a.Run()
}

// Serve serves on l until Shutdown, when it returns ErrServerClosed. With
// WithTLSConfig the connections speak TLS.
//
// Without TLS, Serve accepts the connections itself and reads each one's
// request head (under WithHandshakeTimeout): a WebSocket upgrade to a
// route (GET, HTTP/1.1, a head within 4 KiB that net/http would take as it
// is) goes straight to the route, without net/http's per-connection
// buffers, contexts and goroutines, which saves about 9 KiB of garbage and
// some CPU per handshake. Every other connection (pages and APIs given to
// Handle, larger heads, malformed requests, Engine.IO or SSE) is handed to
// the App's http.Server with the bytes already read, and answered exactly
// as before. An upgrade the route refuses (403, 401, 429, 503) is answered
// with "Connection: close". The request a route sees carries
// http.ServerContextKey and http.LocalAddrContextKey, and its context is
// canceled once the handshake is over, as with net/http. An App or a
// WsServer mounted on a server of your own (ServeHTTP) always takes
// net/http's path.
func (a *App) Serve(l net.Listener) error {
	a.mu.Lock()
	if a.shutdown {
		a.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	tlsOn := a.tlsConfig != nil
	if tlsOn {
		cfg := a.tlsConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"} // WebSocket needs HTTP/1.1 (no RFC 8441 here)
		l = tls.NewListener(l, cfg)
	}
	hs := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: a.handshakeTimeout,
		ReadTimeout:       a.readTimeout,
		IdleTimeout:       a.idleTimeout,
		MaxHeaderBytes:    a.maxHeaderBytes,
		ConnState:         a.trackFresh,
	}
	hs.RegisterOnShutdown(a.closeFresh)
	a.https = append(a.https, hs)
	a.mu.Unlock()
	if tlsOn {
		return hs.Serve(l)
	}
	return a.serveFast(hs, l)
}

// trackFresh records the connections that have not sent a request yet.
// Browsers open such spare connections ahead of need, and
// http.Server.Shutdown counts one as busy for five seconds.
func (a *App) trackFresh(c net.Conn, state http.ConnState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if state == http.StateNew {
		if a.fresh == nil {
			a.fresh = make(map[net.Conn]struct{})
		}
		a.fresh[c] = struct{}{}
	} else {
		delete(a.fresh, c)
	}
}

// closeFresh closes the connections that have sent no request, once
// http.Server.Shutdown has closed the listeners: nothing was asked on them,
// and a client retries its request on a new connection.
func (a *App) closeFresh() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for c := range a.fresh {
		_ = c.Close()
		delete(a.fresh, c)
	}
}

// Shutdown turns readiness off (see ReadyHandler), stops accepting
// connections, closes every WebSocket with
// StatusGoingAway (1001), and waits until each has been through OnClose or
// ctx is done. Run and Serve then return ErrServerClosed.
func (a *App) Shutdown(ctx context.Context) error {
	a.draining.Store(true) // readiness goes first, before any 1001
	a.mu.Lock()
	a.shutdown = true
	https := a.https
	handlers := make([]shutdowner, 0, len(a.servers)+len(a.shutdowners))
	for _, s := range a.servers {
		handlers = append(handlers, s)
	}
	handlers = append(handlers, a.shutdowners...)
	a.mu.Unlock()

	// Long-lived requests (WebSockets, event streams) end first, so that
	// http.Server.Shutdown does not wait for them.
	errs := make([]error, len(handlers)+len(https))
	var wg sync.WaitGroup
	for i, s := range handlers {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Shutdown(ctx) }()
	}
	wg.Wait()
	for i, hs := range https {
		errs[len(handlers)+i] = hs.Shutdown(ctx)
	}
	return errors.Join(errs...)
}
