package ratchet_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

type userKey struct{}

// assertSameRequest checks that got, from Conn.Request, is a faithful copy
// of want, the request the WsServer was handed.
func assertSameRequest(t *testing.T, want, got *http.Request) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, want.Method, got.Method)
	assert.Equal(t, want.URL, got.URL)
	assert.Equal(t, want.Proto, got.Proto)
	assert.Equal(t, want.ProtoMajor, got.ProtoMajor)
	assert.Equal(t, want.ProtoMinor, got.ProtoMinor)
	assert.Equal(t, want.Header, got.Header)
	assert.Equal(t, want.ContentLength, got.ContentLength)
	assert.Equal(t, want.TransferEncoding, got.TransferEncoding)
	assert.Equal(t, want.Close, got.Close)
	assert.Equal(t, want.Host, got.Host)
	assert.Equal(t, want.RemoteAddr, got.RemoteAddr)
	assert.Equal(t, want.RequestURI, got.RequestURI)
	assert.Equal(t, want.Pattern, got.Pattern)
	assert.Same(t, want.TLS, got.TLS)
	assert.Equal(t, want.Cookies(), got.Cookies())
	assert.Equal(t, want.URL.Query(), got.URL.Query())
	assert.Equal(t, want.Context().Value(userKey{}), got.Context().Value(userKey{}))
	assert.Equal(t, http.NoBody, got.Body)
}

// TestRequestContract: under middleware that sets a context value and a
// header, http.StripPrefix and a mux pattern with wildcards, Conn.Request
// returns what the WsServer got: stripped path, headers, cookies, query,
// path values, RemoteAddr, the middleware's context value. Each call is a
// new copy that the caller may change.
func TestRequestContract(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[secure], func(t *testing.T) {
			seen := make(chan *http.Request, 1)
			conns := make(chan ratchet.Conn, 1)
			ws := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { conns <- c }}, ratchet.WithOrigins("*"))
			shutdownAtEnd(t, ws)
			mux := http.NewServeMux()
			mux.Handle("GET /rooms/{room}/{rest...}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r
				ws.ServeHTTP(w, r)
			}))
			h := http.StripPrefix("/api", mux)
			auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Header.Set("X-User", "alice")
				h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, "alice")))
			})
			srv := httptest.NewUnstartedServer(auth)
			opts := &websocket.DialOptions{HTTPHeader: http.Header{
				"Cookie":   {"session=abc; theme=dark"},
				"X-Multi":  {"one", "two"},
				"X-Empty":  {""},
				"Origin":   {"http://example.com"},
				"X-Spaces": {"a  b"},
			}}
			if secure {
				srv.StartTLS()
				opts.HTTPClient = srv.Client()
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/rooms/lobby%2Fa/x/y%20z?token=abc&token=def&v=2"
			c, _, err := websocket.Dial(context.Background(), u, opts)
			require.NoError(t, err)
			defer c.CloseNow()
			want, conn := <-seen, <-conns

			got := conn.Request()
			assertSameRequest(t, want, got)
			assert.Equal(t, "/rooms/lobby/a/x/y z", got.URL.Path, "stripped")
			assert.Equal(t, "lobby/a", got.PathValue("room"))
			assert.Equal(t, "x/y z", got.PathValue("rest"))
			assert.Equal(t, []string{"abc", "def"}, got.URL.Query()["token"])
			assert.Equal(t, []string{"one", "two"}, got.Header.Values("X-Multi"))
			assert.Equal(t, "alice", got.Header.Get("X-User"))
			assert.Equal(t, "alice", got.Context().Value(userKey{}))
			c1, err := got.Cookie("theme")
			require.NoError(t, err)
			assert.Equal(t, "dark", c1.Value)
			assert.Equal(t, want.RemoteAddr, conn.RemoteAddr())
			assert.Contains(t, conn.(interface{ String() string }).String(), want.RemoteAddr)
			assert.Equal(t, secure, got.TLS != nil)

			got.Header.Add("X-Multi", "three")
			got.Header.Set("X-User", "mallory")
			got.URL.Path = "/changed"
			got.SetPathValue("room", "changed")
			again := conn.Request()
			assertSameRequest(t, want, again)
			assert.Equal(t, "lobby/a", again.PathValue("room"))
		})
	}
}

// TestRequestStripPrefixApp: an App under http.StripPrefix sees the
// stripped path in Conn.Request, as app.go documents.
func TestRequestStripPrefixApp(t *testing.T) {
	app := ratchet.NewApp("", 0)
	got := make(chan *http.Request, 1)
	app.Route("/rooms/{room}", ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { got <- c.Request() }}, []string{"*"})
	t.Cleanup(func() { _ = app.Shutdown(context.Background()) })
	url := serve(t, http.StripPrefix("/chat", app))
	c := dial(t, url+"/chat/rooms/lobby?x=1", nil)
	defer c.CloseNow()
	r := <-got
	assert.Equal(t, "/rooms/lobby", r.URL.Path)
	assert.Equal(t, "/chat/rooms/lobby?x=1", r.RequestURI)
	assert.Equal(t, "lobby", r.PathValue("room"))
	assert.Equal(t, "GET /rooms/{room}", r.Pattern)
}

// TestTransportConnRequest: a TransportConn's Request is a copy of the one
// it was made with, down to a bare request without URL or header.
func TestTransportConnRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "https://user:pw@example.com/sio/?EIO=4&transport=polling#frag", nil)
	r.Header.Set("Cookie", "a=1")
	r.Header["X-Raw"] = []string{"x", "y"}
	r.Close = true
	r.URL.Fragment, r.URL.RawFragment = "frag/x", "frag%2Fx"
	r.TLS = &tls.ConnectionState{ServerName: "example.com"}
	r.SetPathValue("ignored", "not in the pattern") // only the pattern's wildcards are kept
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, newPubTransport(), r, "", 4)
	got := c.Request()
	assertSameRequest(t, r, got)
	assert.Equal(t, url.UserPassword("user", "pw"), got.URL.User)
	assert.Equal(t, "frag%2Fx", got.URL.EscapedFragment())
	assert.Equal(t, "", got.PathValue("ignored"))
	assert.Equal(t, r.RemoteAddr, c.RemoteAddr())

	bare := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, newPubTransport(), &http.Request{}, "", 4)
	got = bare.Request()
	assert.Nil(t, got.URL)
	assert.Nil(t, got.Header)
	assert.Equal(t, "", got.Method)
	assert.Equal(t, "", bare.RemoteAddr())
}

// BenchmarkConnRequest is the cost of one Conn.Request call, which
// rebuilds the request: a browser's handshake headers and a wildcard.
func BenchmarkConnRequest(b *testing.B) {
	conns := make(chan ratchet.Conn, 1)
	mux := http.NewServeMux()
	ws := ratchet.NewWsServer(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { conns <- c }})
	mux.Handle("GET /rooms/{room}", ws)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer func() { _ = ws.Shutdown(context.Background()) }()
	h := http.Header{}
	for _, kv := range [][2]string{
		{"Pragma", "no-cache"}, {"Cache-Control", "no-cache"},
		{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
		{"Origin", srv.URL}, {"Accept-Encoding", "gzip, deflate, br, zstd"},
		{"Accept-Language", "en-GB,en-US;q=0.9,en;q=0.8"}, {"Cookie", "session=3q2+7wAAAAAAAAAAAAAAAAAAAAAA; theme=dark"},
	} {
		h.Set(kv[0], kv[1])
	}
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/rooms/lobby?token=abc", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	conn := <-conns
	b.ReportAllocs()
	for b.Loop() {
		if conn.Request().PathValue("room") != "lobby" {
			b.Fatal("no path value")
		}
	}
}
