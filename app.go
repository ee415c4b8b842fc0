package ratchet

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// App is a WebSocket server with routes, the Go form of Ratchet\App:
//
//	app := ratchet.NewApp("localhost", 8080)
//	app.Route("/chat", &Chat{}, []string{"*"})
//	log.Fatal(app.Run())
//
// It is also an http.Handler, so it can be mounted on an existing server
// instead of calling Run: then port is unused (pass 0), httpHost "" lets
// the routes answer any host, and the limits Run and Serve set on their
// http.Server (WithHandshakeTimeout, WithReadTimeout, WithIdleTimeout,
// WithMaxHeaderBytes) are yours to set on your own. Under http.StripPrefix, Conn.Request().URL.Path
// is the stripped path. In tests with httptest, a route of an App whose
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

	mux http.ServeMux

	mu          sync.Mutex
	servers     []*WsServer
	shutdowners []shutdowner // handlers given to Handle that can shut down
	https       []*http.Server
	shutdown    bool
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
	return a
}

// ServeHTTP dispatches to the routes and handlers. Host names match without
// regard to case or port; unknown paths and hosts get 404.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if lower := strings.ToLower(r.Host); lower != r.Host {
		r2 := *r
		r2.Host = lower
		r = &r2
	}
	a.mux.ServeHTTP(w, r)
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
func (a *App) Serve(l net.Listener) error {
	a.mu.Lock()
	if a.shutdown {
		a.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	if a.tlsConfig != nil {
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
	}
	a.https = append(a.https, hs)
	a.mu.Unlock()
	return hs.Serve(l)
}

// Shutdown stops accepting connections, closes every WebSocket with
// StatusGoingAway (1001), and waits until each has been through OnClose or
// ctx is done. Run and Serve then return ErrServerClosed.
func (a *App) Shutdown(ctx context.Context) error {
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
