package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/internal/brokertest"
	"github.com/ratchetgo/ratchet/internal/jstest"
)

// clusterNode starts the chat as main builds it with RATCHET_BROKER set:
// its own Redis broker under prefix, its Chat on it, and its App.
func clusterNode(t *testing.T, addr, prefix string) (*Chat, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	b, err := redis.New(ctx, client, redis.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	chat, err := NewChat(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	app := newApp("", filepath.Join(jstest.Root(t), defaultEngineIOClient), chat, b, nil)
	srv := httptest.NewServer(app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := app.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
		_ = chat.Close(ctx)
		_ = b.Close()
		_ = client.Close()
	})
	return chat, srv.URL
}

// The chat as a two-node cluster on Redis: a WebSocket client on each
// node, and an engine.io-client (long polling) behind a round-robin proxy
// over both nodes, with no stickiness, all chat together, each message
// reaching every other client once.
func TestChatCluster(t *testing.T) {
	addr := brokertest.Addr("RATCHET_REDIS_ADDR", "127.0.0.1:6379")
	if !brokertest.Reachable(addr) {
		brokertest.SkipOrFail(t, "no redis-server at %s: start one or set RATCHET_REDIS_ADDR", addr)
	}
	prefix := brokertest.Topic(t) + ":"
	chat1, url1 := clusterNode(t, addr, prefix)
	chat2, url2 := clusterNode(t, addr, prefix)

	var turn atomic.Uint64
	nodes := []string{url1, url2}
	transport := &http.Transport{}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Transport: transport, ErrorLog: log.New(io.Discard, "", 0),
		Rewrite: func(pr *httputil.ProxyRequest) {
			u, _ := url.Parse(nodes[(turn.Add(1)-1)%2])
			pr.SetURL(u)
		}})
	t.Cleanup(func() { proxy.Close(); transport.CloseIdleConnections() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(base string) *websocket.Conn {
		c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.CloseNow() })
		return c
	}
	wsA, wsB := dial(url1), dial(url2)
	eio := jstest.Start(t, []string{"engine.io-client"}, "../../engineio/testdata/client.mjs", proxy.URL, "polling")
	var e struct{ Event, Transport, Data string }
	if eio.NextJSON(&e); e.Event != "open" {
		t.Fatalf("engine.io-client: %+v", e)
	}
	brokertest.WaitFor(t, "three clients", func() bool { return chat1.clients.Len()+chat2.clients.Len() == 3 })

	readWS := func(name string, c *websocket.Conn, want string) {
		t.Helper()
		_, m, err := c.Read(ctx)
		if err != nil || string(m) != want {
			t.Fatalf("%s received %q (%v), want %q", name, m, err, want)
		}
	}
	readEIO := func(want string) {
		t.Helper()
		if eio.NextJSON(&e); e.Event != "message" || e.Data != want {
			t.Fatalf("engine.io-client: %+v, want message %q", e, want)
		}
	}
	const n = 20
	for i := range n {
		msg := fmt.Sprintf("from A %d", i)
		if err := wsA.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		readWS("B", wsB, msg)
		readEIO(msg)
		eio.WriteJSON(map[string]any{"send": fmt.Sprintf("from Engine.IO %d ✓", i)})
		readWS("A", wsA, fmt.Sprintf("from Engine.IO %d ✓", i))
		readWS("B", wsB, fmt.Sprintf("from Engine.IO %d ✓", i))
		msg = fmt.Sprintf("from B %d", i)
		if err := wsB.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		readWS("A", wsA, msg)
		readEIO(msg)
	}
	eio.WriteJSON(map[string]any{"close": true})
	if eio.NextJSON(&e); e.Event != "close" {
		t.Fatalf("engine.io-client: %+v, want close", e)
	}
	_ = wsA.Close(websocket.StatusNormalClosure, "")
	_ = wsB.Close(websocket.StatusNormalClosure, "")
	brokertest.WaitFor(t, "no clients", func() bool { return chat1.clients.Len()+chat2.clients.Len() == 0 })
}

var _ ratchet.MessageComponent = (*Chat)(nil)
