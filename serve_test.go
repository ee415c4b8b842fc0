package ratchet_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

// The tests of App.Serve's own accept loop: WebSocket upgrades to a route
// skip net/http's server connection, everything else is served by net/http
// as before.

// upgradeHead is a raw upgrade request for path and host, with extra header
// lines (each ending in "\r\n"), lines ending in eol.
func upgradeHead(path, host, extra, eol string) string {
	h := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + "\r\n"
	return strings.ReplaceAll(h, "\r\n", eol)
}

// rawAnswer sends raw on a new connection to addr, then half-closes it, and
// returns the answer:
// the response without Date and Connection (which say nothing about the
// request) and its body; a nil response when the server closed the
// connection without one.
func rawAnswer(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	nc := wstest.SendRaw(t, addr, raw)
	defer nc.Close()
	require.NoError(t, nc.(*net.TCPConn).CloseWrite())
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		requireNoTimeout(t, err)
		return nil, ""
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Header.Del("Date")
	resp.Header.Del("Connection")
	return resp, string(body)
}

// requireNoTimeout fails the test if err is a read deadline's: the server
// neither answered nor closed the connection.
func requireNoTimeout(t testing.TB, err error) {
	t.Helper()
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "neither answered nor closed: %v", err)
}

// Every request, well-formed or not, gets from App.Serve the answer that
// net/http gives when the same App is mounted on an http.Server: the fast
// path takes only what net/http would have passed to the App unchanged.
func TestServeAnswersAsNetHTTP(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	app.Route("/ws", echo, nil)
	app.Route("/any", echo, []string{"*"}, ratchet.WithHost("*"))
	app.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	fast := startApp(t, app)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ref := &http.Server{Handler: app, ReadHeaderTimeout: ratchet.DefaultHandshakeTimeout, MaxHeaderBytes: ratchet.DefaultMaxHeaderBytes}
	go func() { _ = ref.Serve(l) }()
	t.Cleanup(func() { _ = ref.Close() })

	big := "Cookie: " + strings.Repeat("c", 5000) + "\r\n"
	huge := "X-Pad: " + strings.Repeat("p", 2*ratchet.DefaultMaxHeaderBytes) + "\r\n"
	for name, raw := range map[string]string{
		"upgrade":                 upgradeHead("/ws", "localhost", "", "\r\n"),
		"bare LF":                 upgradeHead("/ws", "localhost", "", "\n"),
		"token lists":             strings.Replace(upgradeHead("/ws", "LocalHost:80", "", "\r\n"), "Connection: Upgrade", "Connection: keep-alive, upgrade", 1),
		"foreign origin":          upgradeHead("/ws", "localhost", "Origin: http://evil.test\r\n", "\r\n"),
		"wrong version":           strings.Replace(upgradeHead("/ws", "localhost", "", "\r\n"), "Version: 13", "Version: 8", 1),
		"no key":                  strings.Replace(upgradeHead("/ws", "localhost", "", "\r\n"), "Sec-WebSocket-Key", "X-Key", 1),
		"unknown path":            upgradeHead("/nowhere", "localhost", "", "\r\n"),
		"wrong host":              upgradeHead("/ws", "elsewhere.test", "", "\r\n"),
		"unclean path":            upgradeHead("//ws", "localhost", "", "\r\n"),
		"any host":                upgradeHead("/any", "x.test", "Origin: http://y.test\r\n", "\r\n"),
		"head over 4 KiB":         upgradeHead("/ws", "localhost", big, "\r\n"),
		"head over the limit":     upgradeHead("/ws", "localhost", huge, "\r\n"),
		"POST":                    strings.Replace(upgradeHead("/ws", "localhost", "Content-Length: 2\r\n", "\r\n"), "GET", "POST", 1) + "{}",
		"GET with a body":         upgradeHead("/ws", "localhost", "Content-Length: 2\r\n", "\r\n") + "{}",
		"chunked":                 upgradeHead("/ws", "localhost", "Transfer-Encoding: chunked\r\n", "\r\n") + "0\r\n\r\n",
		"HTTP/1.0":                strings.Replace(upgradeHead("/ws", "localhost", "", "\r\n"), "HTTP/1.1", "HTTP/1.0", 1),
		"HTTP/2.0":                strings.Replace(upgradeHead("/ws", "localhost", "", "\r\n"), "HTTP/1.1", "HTTP/2.0", 1),
		"absolute URI":            strings.Replace(upgradeHead("/ws", "localhost", "", "\r\n"), "/ws", "http://localhost/ws", 1),
		"no Host":                 strings.Replace(upgradeHead("/ws", "localhost", "", "\r\n"), "Host: localhost\r\n", "", 1),
		"two Hosts":               upgradeHead("/ws", "localhost", "Host: localhost\r\n", "\r\n"),
		"bad Host":                upgradeHead("/any", "a\"b", "", "\r\n"),
		"odd Host":                upgradeHead("/any", "a!b~c", "", "\r\n"),
		"space in a name":         upgradeHead("/ws", "localhost", "Bad Name: x\r\n", "\r\n"),
		"control byte in a value": upgradeHead("/ws", "localhost", "X: a\x01b\r\n", "\r\n"),
		"Expect: 100-continue":    upgradeHead("/ws", "localhost", "Expect: 100-continue\r\n", "\r\n"),
		"Expect: other":           upgradeHead("/ws", "localhost", "Expect: other\r\n", "\r\n"),
		"garbage":                 "HELLO\r\n\r\n",
		"empty first line":        "\r\n" + upgradeHead("/ws", "localhost", "", "\r\n"),
		"plain page":              "GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"half a head, then EOF":   "GET /ws HTTP/1.1\r\nHost: localhost\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			want, wantBody := rawAnswer(t, l.Addr().String(), raw)
			got, gotBody := rawAnswer(t, fast, raw)
			if want == nil {
				assert.Nil(t, got, "net/http closed without an answer")
				return
			}
			require.NotNil(t, got, "net/http answered %s", want.Status)
			assert.Equal(t, want.Status, got.Status)
			assert.Equal(t, want.Header, got.Header)
			assert.Equal(t, wantBody, gotBody)
		})
	}
}

// A plain HTTP handler shares the listener with the routes: keep-alive,
// bodies and pipelined requests work, and an upgrade asked on a connection
// that has already carried a request works too (net/http's path).
func TestServePlainHTTPBesideRoutes(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	app.Route("/ws", echo, nil)
	app.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.URL.Query().Get("n")) })
	app.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
	addr := startApp(t, app)

	nc := wstest.SendRaw(t, addr, "GET /page?n=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, body := wstest.ReadResponse(t, nc, br)
	assert.Equal(t, "page 1", string(body))
	assert.False(t, resp.Close)

	// The same connection: a body, then two pipelined requests in one write,
	// then an upgrade.
	_, err := io.WriteString(nc, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
	require.NoError(t, err)
	_, body = wstest.ReadResponse(t, nc, br)
	assert.Equal(t, "hello", string(body))
	_, err = io.WriteString(nc, "GET /page?n=2 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /page?n=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
	require.NoError(t, err)
	_, body = wstest.ReadResponse(t, nc, br)
	assert.Equal(t, "page 2", string(body))
	_, body = wstest.ReadResponse(t, nc, br)
	assert.Equal(t, "page 3", string(body))
	_, err = io.WriteString(nc, upgradeHead("/ws", "localhost", "", "\r\n"))
	require.NoError(t, err)
	resp, _ = wstest.ReadResponse(t, nc, br)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, err = nc.Write(maskedText("upgraded late"))
	require.NoError(t, err)
	assertEcho(t, br, "upgraded late")

	// A connection whose first write holds a whole request and the start of
	// the next.
	nc = wstest.SendRaw(t, addr, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabcGET /page?n=4 HTTP/1.1\r\nHost: loc")
	br = bufio.NewReader(nc)
	_, body = wstest.ReadResponse(t, nc, br)
	assert.Equal(t, "abc", string(body))
	_, err = io.WriteString(nc, "alhost\r\n\r\n")
	require.NoError(t, err)
	_, body = wstest.ReadResponse(t, nc, br)
	assert.Equal(t, "page 4", string(body))
}

// Upgrades served by App.Serve, on the fast path or on net/http's (a head
// over 4 KiB), keep the first frame sent with the handshake, see the request
// as net/http would give it, and the request's context ends with the
// handshake.
func TestServeUpgradeRequest(t *testing.T) {
	type seen struct {
		remote, local, cookie string
		server                bool
		ctx                   context.Context
	}
	got := make(chan seen, 1)
	app := ratchet.NewApp("localhost", 0)
	app.Route("/ws", ratchet.ComponentFuncs{
		Open: func(c ratchet.Conn) {
			r := c.Request()
			local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
			srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
			s := seen{remote: c.RemoteAddr(), cookie: r.Header.Get("Cookie"), server: srv != nil, ctx: r.Context()}
			if local != nil {
				s.local = local.String()
			}
			got <- s
		},
		Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) },
	}, nil)
	addr := startApp(t, app)
	for name, cookie := range map[string]string{"fast path": "a=1", "head over 4 KiB": strings.Repeat("b", 5000)} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer nc.Close()
			_, err = nc.Write(append([]byte(upgradeHead("/ws", "localhost", "Cookie: "+cookie+"\r\n", "\r\n")), maskedText("glued")...))
			require.NoError(t, err)
			br := bufio.NewReader(nc)
			resp, _ := wstest.ReadResponse(t, nc, br)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			assertEcho(t, br, "glued")
			s := <-got
			assert.Equal(t, nc.LocalAddr().String(), s.remote)
			assert.Equal(t, addr, s.local)
			assert.Equal(t, cookie, s.cookie)
			assert.True(t, s.server, "http.ServerContextKey")
			assert.Error(t, s.ctx.Err(), "canceled once the handshake is over")
		})
	}
}

// Half a head is cut off by the handshake timeout on both paths: a head
// that outgrows the fast path's buffer late does not get a new timeout
// from net/http.
func TestServeHeadTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	app := ratchet.NewApp("localhost", 0, ratchet.WithHandshakeTimeout(timeout))
	app.Route("/ws", echo, nil)
	addr := startApp(t, app)
	start := time.Now()
	nc := wstest.SendRaw(t, addr, "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Pad: "+strings.Repeat("p", 4000))
	time.Sleep(timeout * 8 / 10)
	_, err := io.WriteString(nc, strings.Repeat("p", 200)) // over 4 KiB now: net/http reads on
	require.NoError(t, err)
	trickled := make(chan struct{})
	go func() { // as a slowloris would
		defer close(trickled)
		for range 40 {
			if _, err := io.WriteString(nc, "p"); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(nc)
	requireNoTimeout(t, err)
	assert.Less(t, time.Since(start), timeout*3/2, "net/http restarted the timeout")
	nc.Close()
	<-trickled
}

// Shutdown closes the connections still sending their first request head,
// on either path, and Serve returns ErrServerClosed without waiting for
// their timeout.
func TestServeShutdownDuringHeads(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	app.Route("/ws", echo, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	half := wstest.SendRaw(t, l.Addr().String(), "GET /ws HTTP/1.1\r\nHost: localhost\r\n")
	long := wstest.SendRaw(t, l.Addr().String(), "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Pad: "+strings.Repeat("p", 5000))
	// Both have been accepted once a later connection is answered.
	resp, _ := rawAnswer(t, l.Addr().String(), "GET /none HTTP/1.1\r\nHost: localhost\r\n\r\n")
	require.NotNil(t, resp)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	require.NoError(t, app.Shutdown(ctx))
	select {
	case err := <-served:
		require.ErrorIs(t, err, ratchet.ErrServerClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	for _, nc := range []net.Conn{half, long} {
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err := io.ReadAll(nc)
		requireNoTimeout(t, err) // closed by Shutdown (EOF, or a reset when unread bytes were left)
	}
}

// Whatever bytes a client sends as its first request, App.Serve answers or
// closes the connection within its timeouts, and never crashes.
func FuzzServeHead(f *testing.F) {
	for _, seed := range []string{
		upgradeHead("/ws", "localhost", "", "\r\n"),
		upgradeHead("/ws", "localhost", "", "\n") + string(maskedText("hi")),
		upgradeHead("/ws", "localhost", "Origin: http://evil.test\r\n", "\r\n"),
		upgradeHead("/ws", "localhost", "Cookie: "+strings.Repeat("c", 5000)+"\r\n", "\r\n"),
		"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\nGET /page HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"POST /page HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc",
		"GET /ws HTTP/1.1\r\nHost: localhost\r\n",
		"\r\n\r\n", "\n\n", "\x00\xff", "",
	} {
		f.Add(seed)
	}
	const timeout = 300 * time.Millisecond
	app := ratchet.NewApp("localhost", 0, ratchet.WithHandshakeTimeout(timeout),
		ratchet.WithReadTimeout(timeout), ratchet.WithIdleTimeout(timeout))
	app.Route("/ws", echo, nil)
	app.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	addr := startApp(f, app)
	f.Fuzz(func(t *testing.T, head string) {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer nc.Close()
		_, _ = io.WriteString(nc, head) // the server may close before taking it all
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
		br := bufio.NewReader(nc)
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "HTTP/1.") {
			return // answered (a WebSocket or a keep-alive connection stays open)
		}
		requireNoTimeout(t, err)
	})
}
