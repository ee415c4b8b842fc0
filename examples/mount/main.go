// Command mount shows ratchet-go inside an existing net/http server instead
// of App.Run: an http.ServeMux that already has its own handlers gets one
// WsServer mounted at /ws and a whole App mounted under /app/, and a plain
// http.Server serves it all.
//
//	go run ./examples/mount                      # listens on 127.0.0.1:8080
//	go run ./examples/mount -addr 127.0.0.1:0    # any free port
//
//	GET  /healthz      "ok"
//	GET  /api/time     the server's time, RFC 3339
//	WS   /ws           echo
//	WS   /app/chat     chat: every message goes to every other client
//
// On SIGINT (Ctrl-C) or SIGTERM the server shuts down gracefully: the
// http.Server stops accepting, then the WebSocket servers close their
// connections with 1001 going away. http.Server.Shutdown does not know about
// upgraded (hijacked) connections, which is why the WsServer and the App
// have Shutdown methods of their own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
)

func main() {
	// Flags.
	addr := listen.AddrFlag()
	flag.Parse()

	mux := http.NewServeMux()

	// Handlers the application had before it spoke WebSocket.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/time", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(time.Now().Format(time.RFC3339) + "\n"))
	})

	// One component, mounted as a plain http.Handler. Without WithOrigins
	// only pages served from this host may connect (non-browser clients send
	// no Origin and are always let in).
	echo := ratchet.NewWsServer(ratchet.ComponentFuncs{
		Message: func(from ratchet.Conn, msg ratchet.Message) { _ = from.Send(msg) },
	})
	mux.Handle("GET /ws", echo)

	// A whole App, with its own routes, under a prefix. Host "" makes its
	// routes answer for any host; the port is not used since Run is not
	// called. StripPrefix hands the App paths relative to /app.
	var clients ratchet.ConnSet
	app := ratchet.NewApp("", 0)
	app.Route("/chat", ratchet.ComponentFuncs{
		Open:    func(c ratchet.Conn) { clients.Add(c) },
		Message: func(from ratchet.Conn, msg ratchet.Message) { clients.Broadcast(msg, from) },
		Close:   func(c ratchet.Conn) { clients.Remove(c) },
	}, nil)
	mux.Handle("/app/", http.StripPrefix("/app", app))

	srv := &http.Server{
		Handler: mux,
		// The limits App.Run sets: no slowloris, no trickling bodies, no
		// idle keep-alive connections held forever, no megabytes of
		// headers kept by Conn.Request.
		ReadHeaderTimeout: ratchet.DefaultHandshakeTimeout,
		ReadTimeout:       ratchet.DefaultReadTimeout,
		IdleTimeout:       ratchet.DefaultIdleTimeout,
		MaxHeaderBytes:    ratchet.DefaultMaxHeaderBytes,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("mount: serving %s/healthz, /api/time; WS /ws, /app/chat\n", listen.URL("http", l, ""))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()

	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C kills the process the usual way
	log.Print("mount: shutting down")

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Stop accepting and finish plain HTTP requests first, then close the
	// WebSocket connections, which http.Server no longer tracks.
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Printf("mount: http shutdown: %v", err)
	}
	if err := echo.Shutdown(shutdownCtx); err != nil {
		log.Printf("mount: /ws shutdown: %v", err)
	}
	if err := app.Shutdown(shutdownCtx); err != nil {
		log.Printf("mount: /app shutdown: %v", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		log.Printf("mount: %v", err)
	}
	log.Print("mount: bye")
}
