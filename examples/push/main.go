// Command push is a push server: a PHP project (or any program) pushes
// messages into it over HTTP, and it delivers them to browsers in real time
// over WebSocket and Server-Sent Events.
//
//	go run ./examples/push                      # listens on 127.0.0.1:8080
//	# open the URL it prints and, in another terminal:
//	php examples/push/publish.php news "hello from PHP"
//
// Routes:
//
//	GET  /          a page showing pushed messages live, with their positions
//	WS   /push      push endpoint: ?topic=a&topic=b, {"subscribe":"a"}, {"unsubscribe":"a"}
//	GET  /events    Server-Sent Events: ?topic=a&topic=b
//	POST /publish   publish API, HMAC-signed with RATCHET_PUSH_SECRET
//
// Every topic keeps its last 100 messages for 10 minutes
// (ratchet.DefaultHistorySize, ratchet.DefaultHistoryTTL): a page that loses
// its connection gets what it missed when it comes back, or is told that it
// cannot. With RATCHET_BROKER (redis://127.0.0.1:6379/0 or
// nats://127.0.0.1:4222) and RATCHET_PREFIX, two copies on two ports form a
// cluster, and a page moved from one to the other misses nothing:
//
//	RATCHET_BROKER=redis://127.0.0.1:6379/0 go run ./examples/push -addr 127.0.0.1:8080
//	RATCHET_BROKER=redis://127.0.0.1:6379/0 go run ./examples/push -addr 127.0.0.1:8081
//
// The server itself publishes the time to topic "time" every 10 seconds,
// to show publishing from anywhere in a Go program. Topics starting with
// "admin" are refused to everyone, to show the authorization hook; and the
// ?user= parameter names the connection's user, so that {"user":"alice",...}
// reaches every tab opened with ?user=alice (a demo: real applications take
// the user from a session cookie or a token).
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/brokerenv"
	"github.com/ratchetgo/ratchet/examples/internal/listen"
	"github.com/ratchetgo/ratchet/examples/internal/ops"
	"github.com/ratchetgo/ratchet/push"
)

//go:embed index.html
var page []byte

// devSecret is the development default of RATCHET_PUSH_SECRET; publish.php
// has the same default.
const devSecret = "dev-secret-change-me"

func main() {
	// Flags.
	addr := listen.AddrFlag()
	host := flag.String("host", "", `host name the routes answer, e.g. "localhost" ("": any)`)
	opsFlags := ops.Define()
	flag.Parse()
	o, err := opsFlags.Setup()
	if err != nil {
		log.Fatal(err)
	}

	secret := os.Getenv("RATCHET_PUSH_SECRET")
	if secret == "" {
		secret = devSecret
		fmt.Printf("RATCHET_PUSH_SECRET is not set: using the development secret %q\n", secret)
	}

	cluster, err := brokerenv.FromEnv(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	hub := ratchet.NewHub(append(cluster.HubOptions(),
		ratchet.WithHistory("*", ratchet.HistoryPolicy{}), // defaults: 100 messages, 10 minutes
		ratchet.WithHubObserver(o.Metrics))...)
	if err := o.Metrics.WatchHub("push", hub); err != nil {
		log.Fatal(err)
	}
	var brokers []ratchet.Broker // /readyz and the metrics follow it
	if cluster.Broker != nil {
		brokers = append(brokers, cluster.Broker)
		if err := o.Metrics.WatchBroker("push", cluster.Broker); err != nil {
			log.Fatal(err)
		}
	}
	authorize := push.WithAuthorize(func(c ratchet.Conn, topic string) error {
		if strings.HasPrefix(topic, "admin") {
			return errors.New("admin topics are not for browsers")
		}
		return nil
	})
	userFromQuery := func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil }

	app := ratchet.NewApp(*host, 0, o.Options...) // Serve takes the listener: no port
	app.Route("/push", push.NewEndpoint(hub, authorize), nil,
		ratchet.WithReadLimit(4<<10), ratchet.WithAuthenticate(userFromQuery))
	events := push.NewSSE(hub, authorize, push.WithAuthenticate(userFromQuery), push.WithObserver(o.Metrics, "/events"))
	app.Handle("/events", events)
	app.Handle("/publish", o.Metrics.InstrumentHandler("publish", push.NewPublishHandler(hub, push.WithSecret([]byte(secret)))))
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})

	metricsSrv, err := o.Mount(app, brokers...) // /metrics, /healthz, /readyz
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Publishing from any goroutine: no connection is touched here.
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				_, _ = hub.Publish(ctx, "time", ratchet.Text(now.Format(time.RFC3339)))
			}
		}
	}()

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	base := listen.URL("http", l, *host)
	fmt.Printf("push: broker %s; every topic keeps its last %d messages for %v\n",
		cluster.Name, ratchet.DefaultHistorySize, ratchet.DefaultHistoryTTL)
	fmt.Printf("push: open %s/ and publish with\n", base)
	fmt.Printf("  RATCHET_PUSH_URL=%s/publish php examples/push/publish.php news \"hello from PHP\"\n", base)
	errc := make(chan error, 1)
	go func() { errc <- app.Serve(l) }()
	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}

	// App.Shutdown ends the WebSockets and the SSE streams (it was given to
	// App.Handle), then the HTTP server.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app.Shutdown(sctx); err != nil {
		log.Print(err)
	}
	_ = hub.Close(sctx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(sctx)
	}
	if err := <-errc; !errors.Is(err, ratchet.ErrServerClosed) {
		log.Print(err)
	}
}
