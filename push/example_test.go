package push_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/push"
)

// A push server: browsers subscribe over WebSocket (/push) or Server-Sent
// Events (/events), other programs publish over HTTP (/publish), and the Go
// program itself publishes with the Hub.
func Example() {
	hub := ratchet.NewHub()
	app := ratchet.NewApp("localhost", 8080)
	app.Route("/push", push.NewEndpoint(hub), nil, ratchet.WithReadLimit(4<<10))
	app.Handle("/events", push.NewSSE(hub))
	app.Handle("/publish", push.NewPublishHandler(hub, push.WithSecret([]byte("a long random secret"))))

	go func() {
		for now := range time.Tick(time.Minute) {
			_, _ = hub.Publish(context.Background(), "time", ratchet.Text(now.Format(time.Kitchen)))
		}
	}()
	log.Fatal(app.Run())
}

// An Authorizer shared by the WebSocket endpoint and the SSE handler: users
// may subscribe to their own "inbox/<user>" topic and to public ones.
func ExampleAuthorizer() {
	hub := ratchet.NewHub()
	authorize := push.WithAuthorize(func(c ratchet.Conn, topic string) error {
		if owner, ok := strings.CutPrefix(topic, "inbox/"); ok && owner != c.User() {
			return errors.New("not your inbox")
		}
		return nil
	})
	// The user comes from a session cookie, checked before the upgrade.
	session := func(r *http.Request) (string, error) {
		ck, err := r.Cookie("session")
		if err != nil {
			return "", &ratchet.RejectError{Status: http.StatusUnauthorized, Reason: "log in first"}
		}
		return lookupSession(ck.Value)
	}
	app := ratchet.NewApp("localhost", 8080)
	app.Route("/push", push.NewEndpoint(hub, authorize), nil, ratchet.WithAuthenticate(session))
	app.Handle("/events", push.NewSSE(hub, authorize, push.WithAuthenticate(session)))
}

func lookupSession(string) (string, error) { return "alice", nil }

// Signing a publish request in Go; other languages compute the same HMAC
// (see the package documentation for PHP and curl).
func ExampleSign() {
	secret := []byte("a long random secret")
	body := []byte(`{"topic":"news","data":"hello"}`)
	req, err := http.NewRequest(http.MethodPost, "http://localhost:8080/publish", bytes.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	ts, sig := push.Sign(secret, body, time.Now())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(push.HeaderTimestamp, ts)
	req.Header.Set(push.HeaderSignature, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status) // 200 OK, body {"topic":"news","delivered":N}
}

// Sign's output for a fixed time, as openssl computes it:
//
//	printf '%s' '1767225600.{"topic":"news","data":"hello"}' | openssl dgst -sha256 -hmac secret
func ExampleSign_vector() {
	ts, sig := push.Sign([]byte("secret"), []byte(`{"topic":"news","data":"hello"}`), time.Unix(1767225600, 0))
	fmt.Println(push.HeaderTimestamp+":", ts)
	fmt.Println(push.HeaderSignature+":", sig)
	// Output:
	// X-Ratchet-Timestamp: 1767225600
	// X-Ratchet-Signature: sha256=699ce848b761a8bf2b3142800add75a706ce6d2f4786f5608980c6451c55a81b
}

// Limiting what a publisher may do: user-targeted sends only with the
// bearer token of the back office.
func ExampleWithPublishAuthorize() {
	hub := ratchet.NewHub()
	h := push.NewPublishHandler(hub,
		push.WithSecret([]byte("secret shared with the PHP site")),
		push.WithBearerToken("back-office token"),
		push.WithPublishAuthorize(func(r *http.Request, p *push.Publication) error {
			if p.User != "" && r.Header.Get("Authorization") == "" {
				return errors.New("user sends need the back-office token")
			}
			return nil
		}))
	http.Handle("/publish", h)
}

// Streaming topics to EventSource with a faster heartbeat, for proxies that
// drop connections idle for 10 s.
func ExampleNewSSE() {
	hub := ratchet.NewHub()
	events := push.NewSSE(hub, push.WithHeartbeat(5*time.Second), push.WithRetry(time.Second))
	srv := &http.Server{Addr: "localhost:8080", Handler: events}
	go func() { _ = srv.ListenAndServe() }()

	// On the way out: end the streams first, then the server.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = events.Shutdown(ctx)
	_ = srv.Shutdown(ctx)
}

// The WebSocket endpoint, answering control messages without success
// replies and allowing more topics per connection.
func ExampleNewEndpoint() {
	hub := ratchet.NewHub()
	ep := push.NewEndpoint(hub, push.WithAcks(false), push.WithMaxTopics(256))
	http.Handle("/push", ratchet.NewWsServer(ep, ratchet.WithReadLimit(4<<10)))
}
