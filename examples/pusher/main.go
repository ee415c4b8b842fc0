// Command pusher is a Pusher Channels server: point Laravel's broadcasting
// (or any Pusher server library) and Laravel Echo / pusher-js at it instead
// of Pusher. Run one, or several behind a load balancer sharing Redis or
// NATS.
//
//	go run ./examples/pusher                 # open http://localhost:6001/ in two tabs
//	php examples/pusher/trigger.php chat message '{"user":"php","text":"hello from PHP"}'
//
// Settings, from the environment:
//
//	PORT               port to listen on (default 6001); or -addr host:port
//	PUSHER_APP_ID      the app's id (default app-id)
//	PUSHER_APP_KEY     its key (default app-key)
//	PUSHER_APP_SECRET  its secret (default app-secret: set your own)
//	REDIS_ADDR         host:port of Redis, for a cluster of servers
//	NATS_URL           nats://host:port (with JetStream), for a cluster on NATS instead
//	PUSHER_WEBHOOK_URL where to send the app's webhooks
//
// Routes:
//
//	WS   /app/{key}                the Pusher protocol (pusher-js, Laravel Echo)
//	POST /pusher/app/{key}/...     the same over pusher-js's HTTP fallback (xhr_streaming, xhr_polling)
//	     /apps/{id}/...            the HTTP API (Laravel broadcasting, pusher-php-server, pusher for Node)
//	GET  /                         a demo page: public, private and presence channels, whisper
//	POST /broadcasting/auth        channel authorization for the page
//	POST /messages                 {"user","text"}: the page's chat, sent with Server.Trigger
//	GET  /js/...                   pusher-js and laravel-echo, from -js (a node_modules directory)
//
// The demo's authorization lets everyone in under the name the page sends;
// a real application checks its session first (Laravel's channel routes).
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	natsbroker "github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/pusher"
)

//go:embed index.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

// Development defaults; trigger.php has the same.
const (
	devAppID  = "app-id"
	devKey    = "app-key"
	devSecret = "app-secret"
)

// config is what the server is started with.
type config struct {
	addr       string
	app        pusher.App
	redisAddr  string
	natsURL    string
	jsDir      string // node_modules holding pusher-js and laravel-echo; "" for a CDN
	webhookURL string
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := newServer(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // Pusher connections first: 4200, clients reconnect elsewhere
		_ = hs.Shutdown(sctx)
	}()
	fmt.Printf("Pusher app %q (key %q) on http://%s/\n", cfg.app.ID, cfg.app.Key, l.Addr())
	if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// parseConfig reads the flags and the environment.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("pusher", flag.ContinueOnError)
	port := getenv("PORT")
	if port == "" {
		port = "6001"
	}
	addr := fs.String("addr", ":"+port, "address to listen on")
	jsDir := fs.String("js", "", "node_modules directory with pusher-js and laravel-echo for the page (default: from a CDN)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	or := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	cfg := config{
		addr: *addr,
		app: pusher.App{
			ID:           or("PUSHER_APP_ID", devAppID),
			Key:          or("PUSHER_APP_KEY", devKey),
			Secret:       or("PUSHER_APP_SECRET", devSecret),
			ClientEvents: true, // whisper
		},
		redisAddr:  getenv("REDIS_ADDR"),
		natsURL:    getenv("NATS_URL"),
		jsDir:      *jsDir,
		webhookURL: getenv("PUSHER_WEBHOOK_URL"),
	}
	if cfg.app.Secret == devSecret {
		fmt.Printf("PUSHER_APP_SECRET is not set: using the development secret %q\n", devSecret)
	}
	if cfg.webhookURL != "" {
		cfg.app.Webhooks = []pusher.Webhook{{URL: cfg.webhookURL}}
	}
	return cfg, nil
}

// server is the Pusher server and the demo's routes.
type server struct {
	http.ServeMux
	srv     *pusher.Server
	hub     *ratchet.Hub
	closers []func(context.Context)
}

// newServer connects to the broker, if any, and builds the handler.
func newServer(ctx context.Context, cfg config) (*server, error) {
	s := &server{}
	opts := []ratchet.HubOption{pusher.CacheHistory(cfg.app)}
	switch {
	case cfg.redisAddr != "":
		client := goredis.NewClient(&goredis.Options{Addr: cfg.redisAddr})
		b, err := redis.New(ctx, client)
		if err != nil {
			return nil, err
		}
		p := redis.NewPresence(b)
		// Redis and NATS keep no history here: cache channels need a
		// HistoryBroker.
		opts = []ratchet.HubOption{ratchet.WithBroker(b), ratchet.WithPresence(p)}
		s.closers = append(s.closers, func(ctx context.Context) { _ = p.Close(ctx); _ = b.Close(); _ = client.Close() })
	case cfg.natsURL != "":
		b, err := natsbroker.Connect(cfg.natsURL, natsbroker.WithNATSOptions(nats.Name("ratchet-pusher")))
		if err != nil {
			return nil, err
		}
		p, err := natsbroker.NewPresence(ctx, b)
		if err != nil {
			_ = b.Close()
			return nil, err
		}
		opts = []ratchet.HubOption{ratchet.WithBroker(b), ratchet.WithPresence(p)}
		s.closers = append(s.closers, func(ctx context.Context) { _ = p.Close(ctx); _ = b.Close() })
	}
	s.hub = ratchet.NewHub(opts...)
	srv, err := pusher.NewServer(s.hub, []pusher.App{cfg.app})
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.srv = srv
	s.Handle("/app/", srv)
	s.Handle("/apps/", srv)
	s.Handle(pusher.DefaultHTTPPath+"/", srv) // pusher-js's HTTP fallback
	s.HandleFunc("POST /broadcasting/auth", func(w http.ResponseWriter, r *http.Request) { authorize(w, r, cfg.app) })
	s.HandleFunc("POST /messages", s.message)
	scripts := map[string]string{
		"Pusher": "https://cdn.jsdelivr.net/npm/pusher-js@8.6.0/dist/web/pusher.min.js",
		"Echo":   "https://cdn.jsdelivr.net/npm/laravel-echo@2.5.0/dist/echo.iife.js",
	}
	if cfg.jsDir != "" {
		s.Handle("GET /js/", http.StripPrefix("/js/", http.FileServer(http.Dir(cfg.jsDir))))
		scripts["Pusher"], scripts["Echo"] = "/js/pusher-js/dist/web/pusher.min.js", "/js/laravel-echo/dist/echo.iife.js"
		for _, f := range []string{scripts["Pusher"], scripts["Echo"]} {
			if _, err := os.Stat(filepath.Join(cfg.jsDir, f[len("/js/"):])); err != nil {
				s.close(ctx)
				return nil, fmt.Errorf("-js %s: %w", cfg.jsDir, err)
			}
		}
	}
	s.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]any{"Key": cfg.app.Key, "Scripts": scripts})
	})
	return s, nil
}

// Shutdown ends the Pusher connections, then releases the broker.
func (s *server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.close(ctx)
	return err
}

func (s *server) close(ctx context.Context) {
	if s.hub != nil {
		_ = s.hub.Close(ctx)
	}
	for _, c := range s.closers {
		c(ctx)
	}
}

// message triggers a chat message of the page on channel chat, from Go.
func (s *server) message(w http.ResponseWriter, r *http.Request) {
	var m struct {
		User string `json:"user"`
		Text string `json:"text"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&m); err != nil || !namePattern.MatchString(m.User) || m.Text == "" {
		http.Error(w, `{"user":name,"text":text} expected`, http.StatusBadRequest)
		return
	}
	if err := s.srv.Trigger(r.Context(), []string{"chat"}, "message", m); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var namePattern = regexp.MustCompile(`^[\pL\pN _.-]{1,32}$`)

// authorize is the page's channel authorization endpoint, in the form
// Laravel's /broadcasting/auth takes (socket_id, channel_name) plus the
// name the page sends (a demo: a real app knows its user from the session).
func authorize(w http.ResponseWriter, r *http.Request, app pusher.App) {
	name := r.FormValue("name")
	if !namePattern.MatchString(name) {
		http.Error(w, "a name of 1 to 32 letters or digits, please", http.StatusForbidden)
		return
	}
	member := &pusher.PresenceMember{UserID: name, UserInfo: map[string]string{"name": name}}
	auth, err := app.AuthorizeChannel(r.FormValue("socket_id"), r.FormValue("channel_name"), member)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(auth)
}
