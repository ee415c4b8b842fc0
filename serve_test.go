package ratchet_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
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

	good := upgradeHead("/ws", "localhost", "", "\r\n")
	edited := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	with := func(line string) string { return upgradeHead("/ws", "localhost", line, "\r\n") }
	big := "Cookie: " + strings.Repeat("c", 5000) + "\r\n"
	huge := "X-Pad: " + strings.Repeat("p", 2*ratchet.DefaultMaxHeaderBytes) + "\r\n"
	for name, raw := range map[string]string{
		"upgrade":                 good,
		"bare LF":                 upgradeHead("/ws", "localhost", "", "\n"),
		"token lists":             strings.Replace(upgradeHead("/ws", "LocalHost:80", "", "\r\n"), "Connection: Upgrade", "Connection: keep-alive, upgrade", 1),
		"foreign origin":          with("Origin: http://evil.test\r\n"),
		"wrong version":           edited("Version: 13", "Version: 8"),
		"no key":                  edited("Sec-WebSocket-Key", "X-Key"),
		"unknown path":            upgradeHead("/nowhere", "localhost", "", "\r\n"),
		"wrong host":              upgradeHead("/ws", "elsewhere.test", "", "\r\n"),
		"unclean path":            upgradeHead("//ws", "localhost", "", "\r\n"),
		"any host":                upgradeHead("/any", "x.test", "Origin: http://y.test\r\n", "\r\n"),
		"head over 4 KiB":         with(big),
		"head over the limit":     with(huge),
		"POST":                    strings.Replace(with("Content-Length: 2\r\n"), "GET", "POST", 1) + "{}",
		"GET with a body":         with("Content-Length: 2\r\n") + "{}",
		"chunked":                 with("Transfer-Encoding: chunked\r\n") + "0\r\n\r\n",
		"HTTP/1.0":                edited("HTTP/1.1", "HTTP/1.0"),
		"HTTP/2.0":                edited("HTTP/1.1", "HTTP/2.0"),
		"absolute URI":            edited("/ws", "http://localhost/ws"),
		"no Host":                 edited("Host: localhost\r\n", ""),
		"two Hosts":               with("Host: localhost\r\n"),
		"bad Host":                upgradeHead("/any", "a\"b", "", "\r\n"),
		"odd Host":                upgradeHead("/any", "a!b~c", "", "\r\n"),
		"space in a name":         with("Bad Name: x\r\n"),
		"control byte in a value": with("X: a\x01b\r\n"),
		"Expect: 100-continue":    with("Expect: 100-continue\r\n"),
		"Expect: other":           with("Expect: other\r\n"),
		"garbage":                 "HELLO\r\n\r\n",
		"empty first line":        "\r\n" + good,
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

	// send writes on nc and reads one answer per body wanted.
	send := func(nc net.Conn, br *bufio.Reader, data string, bodies ...string) {
		t.Helper()
		_, err := io.WriteString(nc, data)
		require.NoError(t, err)
		for _, want := range bodies {
			resp, body := wstest.ReadResponse(t, nc, br)
			assert.Equal(t, want, string(body))
			assert.False(t, resp.Close, "a keep-alive answer")
		}
	}
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	br := bufio.NewReader(nc)
	send(nc, br, "GET /page?n=1 HTTP/1.1\r\nHost: localhost\r\n\r\n", "page 1")
	// The same connection: a body, then two pipelined requests in one write,
	// then an upgrade.
	send(nc, br, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello", "hello")
	send(nc, br, "GET /page?n=2 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /page?n=3 HTTP/1.1\r\nHost: localhost\r\n\r\n", "page 2", "page 3")
	send(nc, br, upgradeHead("/ws", "localhost", "", "\r\n"))
	resp, _ := wstest.ReadResponse(t, nc, br)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	send(nc, br, string(maskedText("upgraded late")))
	assertEcho(t, br, "upgraded late")

	// A connection whose first write holds a whole request and the start of
	// the next.
	nc2, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc2.Close()
	br = bufio.NewReader(nc2)
	send(nc2, br, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabcGET /page?n=4 HTTP/1.1\r\nHost: loc", "abc")
	send(nc2, br, "alhost\r\n\r\n", "page 4")
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
			// The handler runs OnOpen and the first reads, then returns.
			assert.Eventually(t, func() bool { return s.ctx.Err() != nil }, 5*time.Second, time.Millisecond,
				"canceled once the handler has returned")
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
	trickled := trickle(nc, "p")
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(nc)
	requireNoTimeout(t, err)
	assert.Less(t, time.Since(start), timeout*8/5, "net/http restarted the timeout (it would close at 1.8 timeouts)")
	nc.Close()
	<-trickled
}

// A head that trickles in, small enough for the fast path, is closed once
// the handshake timeout has passed since the connection was accepted, not
// before, whatever it sends meanwhile.
func TestServeHeadTimeoutTrickle(t *testing.T) {
	const timeout = time.Second
	app := ratchet.NewApp("localhost", 0, ratchet.WithHandshakeTimeout(timeout))
	app.Route("/ws", echo, nil)
	addr := startApp(t, app)
	start := time.Now()
	nc := wstest.SendRaw(t, addr, "GET /ws HTTP/1.1\r\nHost: localhost\r\n")
	trickled := trickle(nc, "X-A: b\r\n")
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.ReadAll(nc)
	requireNoTimeout(t, err)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, timeout, "closed before the timeout")
	assert.Less(t, took, timeout*8/5, "not closed near the timeout (timeout + timeout/8 at worst, plus load)")
	nc.Close()
	<-trickled
}

// trickle writes s to nc every 100ms, 40 times or until a write fails, as
// a slowloris would; the channel is closed when it stops.
func trickle(nc net.Conn, s string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 40 {
			if _, err := io.WriteString(nc, s); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return done
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

// flakyListener returns the errors queued on errs before accepting.
type flakyListener struct {
	net.Listener
	errs chan error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
		return l.Listener.Accept()
	}
}

type temporaryError struct{}

func (temporaryError) Error() string   { return "too many open files" }
func (temporaryError) Timeout() bool   { return false }
func (temporaryError) Temporary() bool { return true }

// A temporary accept error (EMFILE) is logged and retried, as net/http
// does; any other ends Serve with that error.
func TestServeAcceptErrors(t *testing.T) {
	var logged syncList
	app := ratchet.NewApp("", 0, ratchet.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	app.Route("/ws", echo, nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &flakyListener{Listener: inner, errs: make(chan error, 2)}
	l.errs <- temporaryError{}
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, app.Shutdown(ctx))
	})

	url := "ws://" + inner.Addr().String() + "/ws"
	c := wstest.Dial(t, url, nil)
	wstest.Write(t, c, "after a temporary error")
	_, m := wstest.Read(t, c)
	assert.Equal(t, "after a temporary error", m)
	require.NotEmpty(t, logged.lines())
	assert.Contains(t, logged.lines()[0], "too many open files")

	broken := errors.New("listener broken")
	l.errs <- broken
	// Wakes an Accept already waiting, that comes before the error; the loop
	// may also meet the error first, and the listener then drops this one.
	if nc, err := net.Dial("tcp", inner.Addr().String()); err == nil {
		nc.Close()
	}
	select {
	case err := <-served:
		require.ErrorIs(t, err, broken)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return the listener's error")
	}
}
