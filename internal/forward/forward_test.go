package forward_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/nats"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
	"github.com/ratchetgo/ratchet/internal/forward"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// redisBroker returns a Broker of its own on the shared test Redis, under
// prefix, or skips the test (fails it under CI=true).
func redisBroker(t testing.TB, prefix string) ratchet.Broker {
	t.Helper()
	addr := brokertest.Addr("RATCHET_REDIS_ADDR", "127.0.0.1:6379")
	if !brokertest.Reachable(addr) {
		brokertest.SkipOrFail(t, "no redis-server at %s: start one or set RATCHET_REDIS_ADDR", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	b, err := redis.New(ctx, client, redis.WithPrefix(prefix), redis.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(); _ = client.Close() })
	return b
}

// natsBroker returns a Broker of its own on the shared test NATS, under
// prefix (a subject prefix, ending with a dot), or skips the test (fails
// it under CI=true).
func natsBroker(t testing.TB, prefix string) ratchet.Broker {
	t.Helper()
	u := brokertest.Addr("RATCHET_NATS_URL", "nats://127.0.0.1:4222")
	if pu, err := url.Parse(u); err != nil || !brokertest.Reachable(pu.Host) {
		brokertest.SkipOrFail(t, "no nats-server at %s: start one or set RATCHET_NATS_URL", u)
	}
	b, err := nats.Connect(u, nats.WithPrefix(prefix), nats.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// node starts a Node serving h on b, closed at the end of the test.
func node(t testing.TB, b ratchet.Broker, h http.Handler, keepalive time.Duration) *forward.Node {
	t.Helper()
	n, err := forward.New(context.Background(), b, forward.Config{Handler: h, Timeout: 10 * time.Second,
		MaxBody: 1 << 20, Keepalive: keepalive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

// front serves every request by forwarding it from n to owner.
func front(t *testing.T, n *forward.Node, owner func() string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Forward(w, r, owner())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func brokers(t *testing.T) map[string]func(t *testing.T) (ratchet.Broker, ratchet.Broker) {
	return map[string]func(t *testing.T) (ratchet.Broker, ratchet.Broker){
		"memory": func(t *testing.T) (ratchet.Broker, ratchet.Broker) {
			b := ratchet.NewMemoryBroker()
			t.Cleanup(func() { _ = b.Close() })
			return b, b
		},
		"redis": func(t *testing.T) (ratchet.Broker, ratchet.Broker) {
			prefix := brokertest.Topic(t) + ":"
			return redisBroker(t, prefix), redisBroker(t, prefix)
		},
		"nats": func(t *testing.T) (ratchet.Broker, ratchet.Broker) {
			prefix := brokertest.Topic(t) + "."
			return natsBroker(t, prefix), natsBroker(t, prefix)
		},
	}
}

// A request forwarded to its owner comes back answered by the owner's
// handler: method, URI, headers, client address and a body of several
// chunks reach it; its status, headers and a body of several windows of
// chunks, written in pieces, reach the client whole and in order.
func TestRoundTrip(t *testing.T) {
	for name, newBrokers := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			bA, bB := newBrokers(t)
			reqBody := bytes.Repeat([]byte("0123456789abcdef"), 3*forward.ChunkSize/16+5)
			respBody := make([]byte, 3*forward.Window*forward.ChunkSize+123)
			for i := range respBody {
				respBody[i] = byte(i * 7)
			}
			owner := node(t, bB, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.Method != http.MethodPost || r.RequestURI != "/p/x?sid=1&b=%20" || r.Header.Get("X-Test") != "yes" ||
					!bytes.Equal(body, reqBody) || !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") {
					http.Error(w, fmt.Sprintf("request %s %s %q %d bytes from %s", r.Method, r.RequestURI, r.Header.Get("X-Test"), len(body), r.RemoteAddr), 400)
					return
				}
				w.Header().Set("X-Answer", "42")
				w.WriteHeader(http.StatusCreated)
				for rest := respBody; len(rest) > 0; {
					n := min(len(rest), 100_000)
					if _, err := w.Write(rest[:n]); err != nil {
						t.Errorf("write: %v", err)
						return
					}
					rest = rest[n:]
				}
			}), 0)
			a := node(t, bA, http.NotFoundHandler(), 0)
			url := front(t, a, owner.ID)
			req, _ := http.NewRequest(http.MethodPost, url+"/p/x?sid=1&b=%20", bytes.NewReader(reqBody))
			req.Header.Set("X-Test", "yes")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Answer") != "42" || !bytes.Equal(got, respBody) {
				t.Fatalf("answer %d %q, %d bytes (want %d): %.100q", resp.StatusCode, resp.Header.Get("X-Answer"), len(got), len(respBody), got)
			}
		})
	}
}

// A client whose request goes away makes the owner's handler see its
// request's context done, and a Write of the owner return an error.
func TestClientGoesAway(t *testing.T) {
	for name, newBrokers := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			bA, bB := newBrokers(t)
			started, ended := make(chan struct{}), make(chan error, 1)
			owner := node(t, bB, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done()
				_, err := w.Write([]byte("too late"))
				ended <- err
			}), 0)
			a := node(t, bA, http.NotFoundHandler(), 0)
			url := front(t, a, owner.ID)
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			errc := make(chan error, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			<-started
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("client: %v", err)
			}
			select {
			case err := <-ended:
				// The cancel frame says so; were it lost, the owner ends the
				// request when the front has given up on it.
				if err == nil || !strings.Contains(err.Error(), "went away") && !strings.Contains(err.Error(), "gave up") {
					t.Fatalf("the owner's Write after the client left: %v", err)
				}
				t.Logf("the owner's Write after the client left: %v", err)
			case <-time.After(15 * time.Second):
				t.Fatal("the owner's handler still holds a request whose client left")
			}
		})
	}
}

// A request for a node nobody serves is answered 502 once AcceptTimeout
// has passed, naming the node.
func TestOwnerGone(t *testing.T) {
	a := node(t, ratchet.NewMemoryBroker(), http.NotFoundHandler(), 0)
	url := front(t, a, func() string { return "gone0000000" })
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "node gone0000000 did not accept the request") {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
}

// An owner that goes away while it holds a request (its broker
// connection lost, as in a crash) stops its keepalives: the front answers
// 502 saying so, long before the answer's timeout.
func TestOwnerGoesSilent(t *testing.T) {
	prefix := brokertest.Topic(t) + ":"
	bA, bB := redisBroker(t, prefix), redisBroker(t, prefix)
	started := make(chan struct{})
	owner := node(t, bB, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // held until the node closes
	}), 50*time.Millisecond)
	a := node(t, bA, http.NotFoundHandler(), 50*time.Millisecond)
	url := front(t, a, owner.ID)
	go func() {
		<-started
		_ = bB.Close()
	}()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "node "+owner.ID()+" went silent") {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
}

// A handler that panics costs its node nothing: the front answers 502
// saying so, without the panic's value.
func TestHandlerPanics(t *testing.T) {
	b := ratchet.NewMemoryBroker()
	owner := node(t, b, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret") }), 0)
	a := node(t, b, http.NotFoundHandler(), 0)
	resp, err := http.Get(front(t, a, owner.ID))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "panicked") || strings.Contains(string(body), "secret") {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
}

// A request for the node itself is served by its own handler, and a body
// over MaxBody reaches the handler cut at MaxBody+1 bytes: enough for its
// own limit to refuse it.
func TestLocalAndBodyLimit(t *testing.T) {
	b := ratchet.NewMemoryBroker()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	owner := node(t, b, handler, 0)
	a := node(t, b, handler, 0)
	for _, tc := range []struct {
		to   *forward.Node
		want string
	}{{a, "2000000"}, {owner, "1048577"}} {
		resp, err := http.Post(front(t, a, tc.to.ID), "text/plain", bytes.NewReader(make([]byte, 2_000_000)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want {
			t.Fatalf("handler read %s bytes, want %s", body, tc.want)
		}
	}
}
