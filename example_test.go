package ratchet_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

// The examples with an Output comment run as tests: each serves its handler
// with httptest on a free loopback port and talks to it with a
// github.com/coder/websocket client, where a real program would call
// App.Run or http.ListenAndServe and be reached by browsers.

// A chat server: one component that relays every message to every other
// client, routed at /chat for pages from any origin.
func ExampleNewApp() {
	var clients ratchet.ConnSet
	chat := ratchet.ComponentFuncs{
		Open: func(conn ratchet.Conn) {
			clients.Add(conn)
			_ = conn.Send(ratchet.Text("welcome"))
		},
		Message: func(from ratchet.Conn, msg ratchet.Message) {
			clients.Broadcast(msg, from) // everyone but the sender
		},
		Close: func(conn ratchet.Conn) {
			clients.Remove(conn)
		},
		Error: func(conn ratchet.Conn, err error) {
			log.Printf("connection #%d: %v", conn.ID(), err)
		},
	}

	app := ratchet.NewApp("localhost", 8080)
	app.Route("/chat", chat, []string{"*"})

	// A program would now call log.Fatal(app.Run()) to listen on
	// 127.0.0.1:8080. Here a test server on a free port stands in for it.
	srv := httptest.NewServer(app)
	defer srv.Close()
	defer app.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/chat"
	opts := &websocket.DialOptions{Host: "localhost"} // the App answers for host localhost only

	alice, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.CloseNow()
	bob, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.CloseNow()
	for _, c := range []*websocket.Conn{alice, bob} {
		_, welcome, err := c.Read(ctx) // once it arrives, the client is in the set
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(welcome))
	}

	if err := alice.Write(ctx, websocket.MessageText, []byte("Hello, WebSocket!")); err != nil {
		log.Fatal(err)
	}
	_, got, err := bob.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bob got %q\n", got)

	alice.Close(websocket.StatusNormalClosure, "")
	bob.Close(websocket.StatusNormalClosure, "")
	// Output:
	// welcome
	// welcome
	// bob got "Hello, WebSocket!"
}

// A route with a path wildcard, an origin allow-list and per-route options.
func ExampleApp_Route() {
	app := ratchet.NewApp("localhost", 8080)
	app.Route("/rooms/{room}", ratchet.ComponentFuncs{
		Message: func(from ratchet.Conn, msg ratchet.Message) {
			room := from.Request().PathValue("room")
			_ = from.Send(ratchet.Text(room + ": " + msg.String()))
		},
	},
		// Browsers may connect from pages of example.com and its subdomains.
		[]string{"example.com", "*.example.com"},
		// Messages over 4 KiB close the connection with 1009.
		ratchet.WithReadLimit(4<<10),
		ratchet.WithKeepalive(time.Minute, 10*time.Second),
	)

	srv := httptest.NewServer(app)
	defer srv.Close()
	defer app.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/rooms/golang"
	dialFrom := func(origin string) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, url, &websocket.DialOptions{
			Host:       "localhost",
			HTTPHeader: http.Header{"Origin": {origin}},
		})
	}

	c, _, err := dialFrom("https://www.example.com")
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		log.Fatal(err)
	}
	_, reply, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))

	// Too big: the server closes the connection.
	if err := c.Write(ctx, websocket.MessageText, make([]byte, 5<<10)); err != nil {
		log.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	fmt.Println("5 KiB message:", websocket.CloseStatus(err))

	// A page from another site is refused before the upgrade.
	_, resp, err := dialFrom("https://evil.example")
	if err == nil {
		log.Fatal("foreign origin accepted")
	}
	fmt.Println("evil.example:", resp.Status)
	// Output:
	// golang: hello
	// 5 KiB message: StatusMessageTooBig
	// evil.example: 403 Forbidden
}

// A single component mounted on an existing http.ServeMux, beside ordinary
// handlers, without an App.
func ExampleNewWsServer() {
	echo := ratchet.NewWsServer(ratchet.ComponentFuncs{
		Message: func(from ratchet.Conn, msg ratchet.Message) { _ = from.Send(msg) },
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.Handle("GET /echo", echo)

	// In a program: http.ListenAndServe(addr, mux), or an http.Server with a
	// ReadHeaderTimeout; on shutdown call both its Shutdown and echo's, since
	// http.Server does not track upgraded connections.
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer echo.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/echo", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		log.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(got))
	c.Close(websocket.StatusNormalClosure, "")
	// Output:
	// ping
}

// An App mounted under a path prefix of an existing server: the App is an
// http.Handler, and http.StripPrefix hands it paths relative to its root.
func ExampleApp_ServeHTTP() {
	app := ratchet.NewApp("", 0) // any host; the port is unused without Run
	app.Route("/echo", ratchet.ComponentFuncs{
		Message: func(from ratchet.Conn, msg ratchet.Message) { _ = from.Send(msg) },
	}, nil)
	app.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "up")
	})

	mux := http.NewServeMux()
	mux.Handle("/realtime/", http.StripPrefix("/realtime", app))

	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer app.Shutdown(context.Background()) // closes the App's WebSockets

	resp, err := http.Get(srv.URL + "/realtime/status")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("status:", string(body))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/realtime/echo", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		log.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("echo:", string(got))
	c.Close(websocket.StatusNormalClosure, "")
	// Output:
	// status: up
	// echo: hi
}

// Broadcasting to a set of connections; the sender learns how many peers the
// message was queued for.
func ExampleConnSet() {
	var everyone ratchet.ConnSet
	s := ratchet.NewWsServer(ratchet.ComponentFuncs{
		Open: func(c ratchet.Conn) {
			everyone.Add(c)
			_ = c.Send(ratchet.Text("joined"))
		},
		Message: func(from ratchet.Conn, msg ratchet.Message) {
			n := everyone.Broadcast(msg, from)
			_ = from.Send(ratchet.Text(fmt.Sprintf("sent to %d", n)))
		},
		Close: func(c ratchet.Conn) { everyone.Remove(c) },
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clients := make([]*websocket.Conn, 3)
	for i := range clients {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			log.Fatal(err)
		}
		defer c.CloseNow()
		if _, _, err := c.Read(ctx); err != nil { // "joined": now in the set
			log.Fatal(err)
		}
		clients[i] = c
	}

	if err := clients[0].Write(ctx, websocket.MessageText, []byte("hello, all")); err != nil {
		log.Fatal(err)
	}
	for i, c := range clients {
		_, got, err := c.Read(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("client %d: %s\n", i, got)
	}
	for _, c := range clients {
		c.Close(websocket.StatusNormalClosure, "")
	}
	// Output:
	// client 0: sent to 2
	// client 1: hello, all
	// client 2: hello, all
}

// Plain functions as a component. Unset fields do nothing; for one
// connection the callbacks run in order: Open, each Message, Error (only
// after an abnormal end), Close.
func ExampleComponentFuncs() {
	closed := make(chan struct{})
	s := ratchet.NewWsServer(ratchet.ComponentFuncs{
		Open: func(c ratchet.Conn) {
			fmt.Println("open")
		},
		Message: func(from ratchet.Conn, msg ratchet.Message) {
			_ = from.Send(ratchet.Text(strings.ToUpper(msg.String())))
		},
		Close: func(c ratchet.Conn) {
			fmt.Println("close")
			close(closed)
		},
		// Error is nil: a clean close does not call it anyway.
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("shout")); err != nil {
		log.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(got))
	c.Close(websocket.StatusNormalClosure, "bye")
	<-closed
	// Output:
	// open
	// SHOUT
	// close
}

// Topics and push from anywhere in the program: connections subscribe to the
// topics named in their URL, and a goroutine that knows nothing about
// connections publishes.
func ExampleHub() {
	hub := ratchet.NewHub()
	subscribed := make(chan struct{}, 2)
	s := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		for _, topic := range c.Request().URL.Query()["topic"] {
			if err := hub.Subscribe(c.Context(), c, topic); err != nil {
				log.Print(err)
			}
		}
		subscribed <- struct{}{}
	}})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	news, _, err := websocket.Dial(ctx, url+"?topic=news", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer news.CloseNow()
	sport, _, err := websocket.Dial(ctx, url+"?topic=sport&topic=news", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sport.CloseNow()
	<-subscribed
	<-subscribed

	// Anywhere: an HTTP handler, a job, another goroutine.
	n, _ := hub.Publish(ctx, "news", ratchet.Text("headline"))
	fmt.Println("news reached", n)
	n, _ = hub.Publish(ctx, "sport", ratchet.Text("goal"))
	fmt.Println("sport reached", n)
	fmt.Println("topics:", hub.Topics())

	for _, c := range []*websocket.Conn{news, sport, sport} {
		_, got, err := c.Read(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s\n", got)
	}
	// Output:
	// news reached 2
	// sport reached 1
	// topics: [news sport]
	// headline
	// headline
	// goal
}

// A client that reconnects with the position of the last message it got
// receives what it missed, then the live messages.
func ExampleHub_SubscribeWith() {
	hub := ratchet.NewHub(ratchet.WithHistory("*", ratchet.HistoryPolicy{Size: 100}))
	s := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		since, _ := ratchet.ParsePosition(c.Request().URL.Query().Get("since"))
		_, err := hub.SubscribeWith(c.Context(), c, "news", ratchet.SubscribeOptions{
			Since: since,
			Ready: func(r ratchet.Recovery) {
				c.Send(ratchet.Text(fmt.Sprintf("recovered %v: %d missed", r.Recovered, r.Sent)))
			},
		})
		if err != nil {
			log.Print(err)
		}
	}})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Published while the client was away.
	var seen ratchet.Position
	for i, text := range []string{"seen", "missed 1", "missed 2"} {
		pos, _, _ := hub.PublishPosition(ctx, "news", ratchet.Text(text))
		if i == 0 {
			seen = pos
		}
	}
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "?since=" + seen.String()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
	for range 3 {
		_, got, err := c.Read(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s\n", got)
	}
	// Output:
	// missed 1
	// missed 2
	// recovered true: 2 missed
}
