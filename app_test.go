package ratchet_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

// startApp serves app on a loopback port and shuts it down at the end.
var startApp = wstest.ServeApp

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// An App built as in Ratchet (host, port, one route for any origin) serves
// its route.
func TestAppRouteLikeRatchet(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	app.Route("/websocket", echo, []string{"*"})
	addr := startApp(t, app)
	c := dial(t, "ws://localhost:"+port(addr)+"/websocket", &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"http://elsewhere.example"}},
	})
	write(t, c, "Hello, WebSocket!")
	_, m := read(t, c)
	assert.Equal(t, "Hello, WebSocket!", m)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

func TestAppHostAndPathRouting(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	app.Route("/websocket", echo, []string{"*"})
	app.Route("/api", echo, []string{"*"}, ratchet.WithHost("api.test"))
	app.Route("/any", echo, []string{"*"}, ratchet.WithHost("*"))
	app.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	addr := startApp(t, app)
	p := port(addr)

	ws := func(host, path string) int {
		return dialStatus(t, "ws://"+addr+path, &websocket.DialOptions{Host: host})
	}
	assert.Equal(t, 101, ws("localhost:"+p, "/websocket"))
	assert.Equal(t, 101, ws("LOCALHOST", "/websocket"))
	assert.Equal(t, 404, ws("127.0.0.1:"+p, "/websocket"), "other host")
	assert.Equal(t, 404, ws("localhost", "/nope"), "unknown path")
	assert.Equal(t, 101, ws("api.test", "/api"))
	assert.Equal(t, 404, ws("localhost", "/api"))
	assert.Equal(t, 101, ws("whatever.test", "/any"))

	get := func(host, path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("localhost", "/page")
	assert.Equal(t, 200, code)
	assert.Equal(t, "page", body)
	code, _ = get("127.0.0.1", "/page")
	assert.Equal(t, 404, code)
}

func TestAppAnyHost(t *testing.T) {
	app := ratchet.NewApp("", 0)
	app.Route("/ws", echo, nil)
	addr := startApp(t, app)
	assert.Equal(t, 101, dialStatus(t, "ws://"+addr+"/ws", &websocket.DialOptions{Host: "anything.test"}))
}

func TestOriginPolicy(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	app.Route("/any", echo, []string{"*"})
	app.Route("/own", echo, nil)
	app.Route("/list", echo, []string{"*.example.com", "trusted.test:8443", "https://secure.test"})
	app.Route("/files", echo, []string{"null", "*.example.com"})
	addr := startApp(t, app)
	try := func(path, origin string) int {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		return dialStatus(t, "ws://"+addr+path, &websocket.DialOptions{Host: "localhost", HTTPHeader: h})
	}
	assert.Equal(t, 101, try("/any", "http://evil.test"))
	assert.Equal(t, 101, try("/own", "http://localhost:8080"), "the app's own host, any port")
	assert.Equal(t, 403, try("/own", "http://evil.test"))
	assert.Equal(t, 101, try("/own", ""), "no Origin: not a browser")
	assert.Equal(t, 403, try("/own", "::not a url"))
	assert.Equal(t, 101, try("/list", "https://chat.example.com"))
	assert.Equal(t, 403, try("/list", "https://example.com.evil.test"))
	assert.Equal(t, 101, try("/list", "http://trusted.test:8443"))
	assert.Equal(t, 403, try("/list", "http://trusted.test:9999"))
	assert.Equal(t, 101, try("/list", "https://secure.test"))
	assert.Equal(t, 403, try("/list", "http://secure.test"))

	// "null": a page opened from a file, a sandboxed frame. "*" takes every
	// origin; a list takes "null" only when it names it.
	assert.Equal(t, 101, try("/any", "null"))
	assert.Equal(t, 101, try("/any", "::not a url"), `"*" takes every origin`)
	assert.Equal(t, 403, try("/own", "null"))
	assert.Equal(t, 403, try("/list", "null"))
	assert.Equal(t, 101, try("/files", "null"))
	assert.Equal(t, 101, try("/files", "https://chat.example.com"))
	assert.Equal(t, 403, try("/files", "http://null"))
}

func TestPathWildcards(t *testing.T) {
	app := ratchet.NewApp("localhost", 0)
	rooms := make(chan string, 1)
	app.Route("/rooms/{room}", ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		rooms <- c.Request().PathValue("room")
	}}, nil)
	addr := startApp(t, app)
	c := dial(t, "ws://localhost:"+port(addr)+"/rooms/lobby", nil)
	assert.Equal(t, "lobby", <-rooms)
	c.Close(websocket.StatusNormalClosure, "")
}

type protoComponent struct{ ratchet.ComponentFuncs }

func (protoComponent) SubProtocols() []string { return []string{"v2.chat", "v1.chat"} }

func TestSubprotocolPreference(t *testing.T) {
	got := make(chan string, 3)
	comp := protoComponent{ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { got <- c.Subprotocol() }}}
	_, url := serveComponent(t, comp)
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"v1.chat", "v2.chat"}, "v2.chat"}, // the component's order wins
		{[]string{"v1.chat"}, "v1.chat"},
		{[]string{"mqtt"}, ""}, // none match: accepted without a subprotocol
	} {
		c := dial(t, url, &websocket.DialOptions{Subprotocols: tc.offer})
		assert.Equal(t, tc.want, c.Subprotocol())
		assert.Equal(t, tc.want, <-got)
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// Malformed handshakes get a 4xx answer and nothing breaks.
func TestBadHandshakes(t *testing.T) {
	_, url := serveComponent(t, echo)
	base := "http" + strings.TrimPrefix(url, "ws")
	good := func() http.Header {
		return http.Header{
			"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		}
	}
	for name, mutate := range map[string]func(h http.Header) string{
		"plain GET":     func(h http.Header) string { h.Del("Upgrade"); h.Del("Connection"); return "GET" },
		"no Upgrade":    func(h http.Header) string { h.Del("Upgrade"); return "GET" },
		"wrong version": func(h http.Header) string { h.Set("Sec-Websocket-Version", "8"); return "GET" },
		"missing key":   func(h http.Header) string { h.Del("Sec-Websocket-Key"); return "GET" },
		"bad key":       func(h http.Header) string { h.Set("Sec-Websocket-Key", "short"); return "GET" },
		"POST":          func(h http.Header) string { return "POST" },
		"two keys":      func(h http.Header) string { h.Add("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="); return "GET" },
	} {
		t.Run(name, func(t *testing.T) {
			h := good()
			req, _ := http.NewRequest(mutate(h), base, nil)
			req.Header = h
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.GreaterOrEqual(t, resp.StatusCode, 400)
			assert.Less(t, resp.StatusCode, 500)
		})
	}
	c := dial(t, url, nil) // still serving
	c.Close(websocket.StatusNormalClosure, "")
}

// A client that sends half a request is cut off by the handshake timeout.
func TestSlowlorisHandshakeTimeout(t *testing.T) {
	app := ratchet.NewApp("localhost", 0, ratchet.WithHandshakeTimeout(200*time.Millisecond))
	app.Route("/ws", echo, nil)
	addr := startApp(t, app)
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	_, err = io.WriteString(nc, "GET /ws HTTP/1.1\r\nHost: localhost\r\n") // never finished
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadAll(nc) // the server closes the connection
	require.NoError(t, err, "the server should close the socket, not leave it to our deadline")
}

func TestAuthenticate(t *testing.T) {
	users := make(chan string, 1)
	comp := ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { users <- c.User() }}
	auth := func(r *http.Request) (string, error) {
		switch r.URL.Query().Get("token") {
		case "alice-token":
			return "alice", nil
		case "banned":
			return "", &ratchet.RejectError{Status: http.StatusForbidden, Reason: "banned"}
		}
		return "", errors.New("no valid token")
	}
	_, url := serveComponent(t, comp, ratchet.WithAuthenticate(auth))
	assert.Equal(t, 401, dialStatus(t, url, nil))
	assert.Equal(t, 403, dialStatus(t, url+"?token=banned", nil))
	c := dial(t, url+"?token=alice-token", nil)
	assert.Equal(t, "alice", <-users)
	c.Close(websocket.StatusNormalClosure, "")
}

func TestCompressionNegotiated(t *testing.T) {
	_, url := serveComponent(t, echo, ratchet.WithCompression(true))
	c := dial(t, url, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	big := strings.Repeat("compress me ", 1000)
	write(t, c, big)
	_, m := read(t, c)
	assert.Equal(t, big, m)
	c.Close(websocket.StatusNormalClosure, "")
}

// Shutdown sends 1001 to every client, waits for every OnClose, and makes
// Serve return ErrServerClosed.
func TestShutdown(t *testing.T) {
	rec := newRecorder()
	app := ratchet.NewApp("localhost", 0)
	app.Route("/ws", rec, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()

	url := "ws://localhost:" + port(l.Addr().String()) + "/ws"
	clients := make([]*websocket.Conn, 3)
	codes := make(chan websocket.StatusCode, len(clients))
	for i := range clients {
		clients[i] = dial(t, url, nil)
		rec.expect(t, "open")
		go func() {
			_, _, err := clients[i].Read(context.Background())
			codes <- websocket.CloseStatus(err)
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, app.Shutdown(ctx))
	// Every OnClose has run by the time Shutdown returns.
	for range clients {
		rec.expect(t, "close")
	}
	for range clients {
		assert.Equal(t, websocket.StatusGoingAway, <-codes)
	}
	assert.ErrorIs(t, <-served, ratchet.ErrServerClosed)
	assert.ErrorIs(t, app.Serve(l), ratchet.ErrServerClosed)
}

func TestRunListensOnLoopbackByDefault(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := port(l.Addr().String())
	l.Close()
	var portNum int
	fmt.Sscan(p, &portNum)
	app := ratchet.NewApp("localhost", portNum)
	app.Route("/ws", echo, nil)
	done := make(chan error, 1)
	go func() { done <- app.Run() }()
	var c *websocket.Conn
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, _, err = websocket.Dial(ctx, "ws://localhost:"+p+"/ws", nil)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, app.Shutdown(ctx))
	assert.ErrorIs(t, <-done, ratchet.ErrServerClosed)
}

// wss:// without a proxy, with a self-signed certificate.
func TestTLS(t *testing.T) {
	cert := httptest.NewUnstartedServer(nil) // borrow its self-signed certificate
	cert.StartTLS()
	tlsCert := cert.TLS.Certificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(cert.Certificate())
	cert.Close()

	app := ratchet.NewApp("example.com", 0, ratchet.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{tlsCert}}))
	app.Route("/ws", echo, nil)
	addr := startApp(t, app)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	c := dial(t, "wss://example.com:"+port(addr)+"/ws", &websocket.DialOptions{HTTPClient: client})
	write(t, c, "secret")
	_, m := read(t, c)
	assert.Equal(t, "secret", m)
	c.Close(websocket.StatusNormalClosure, "")
}

// WsServer and App both mount on an existing mux beside other handlers.
func TestMountOnServeMux(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ws := ratchet.NewWsServer(echo)
	mux.Handle("/ws", ws)
	app := ratchet.NewApp("", 0)
	app.Route("/app/ws", echo, nil)
	mux.Handle("/app/", app)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer ws.Shutdown(context.Background())
	defer app.Shutdown(context.Background())

	resp, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(b))
	for _, path := range []string{"/ws", "/app/ws"} {
		c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+path, nil)
		write(t, c, path)
		_, m := read(t, c)
		assert.Equal(t, path, m)
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// Bytes a client sends right behind its handshake, in the same packet, are
// not lost in the hijack.
// On App.Serve the fast path hands them on from its own buffer.
func TestFrameRightAfterHandshake(t *testing.T) {
	_, url := serveComponent(t, echo)
	_, br := rawUpgrade(t, strings.TrimPrefix(url, "ws://"), "x", maskedText("hi"))
	assertEcho(t, br, "hi")

	app := ratchet.NewApp("", 0)
	app.Route("/ws", echo, nil)
	_, br = rawUpgrade(t, startApp(t, app), "x", maskedText("hi there"))
	assertEcho(t, br, "hi there")
}

// rawUpgrade opens a WebSocket by hand, with the bytes of glued sent in the
// same write as the request, and returns once the 101 has been read.
func rawUpgrade(t *testing.T, addr, host string, glued []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	_, err = nc.Write(append([]byte(req), glued...))
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return nc, br
}

// maskedText is a client's text frame (mask 0) of a short payload.
func maskedText(s string) []byte {
	return append([]byte{0x81, 0x80 | byte(len(s)), 0, 0, 0, 0}, s...)
}

// assertEcho reads one unmasked server text frame and checks its payload.
func assertEcho(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got := make([]byte, 2+len(want))
	_, err := io.ReadFull(br, got)
	require.NoError(t, err)
	assert.Equal(t, append([]byte{0x81, byte(len(want))}, want...), got)
}

// A peer that never answers the close frame cannot hold Shutdown past its
// context; its connection is dropped and still gets OnClose.
func TestShutdownDeadline(t *testing.T) {
	rec := newRecorder()
	s := ratchet.NewWsServer(rec)
	srv := httptest.NewServer(s)
	defer srv.Close()
	nc, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	require.NoError(t, err)
	rec.expect(t, "open")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	assert.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
	rec.expect(t, "close")
	// The connection leaves the server's set right after OnClose returns.
	require.Eventually(t, func() bool { return s.Len() == 0 }, 5*time.Second, time.Millisecond)
}

// With permessage-deflate a broadcast is compressed (RSV1, smaller frame)
// for the clients that negotiated it and plain for the others, and both
// decode to the same text.
func TestCompressedBroadcast(t *testing.T) {
	var set ratchet.ConnSet
	joined := make(chan struct{}, 3)
	_, url := serveComponent(t, ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		set.Add(c)
		joined <- struct{}{}
	}}, ratchet.WithCompression(true))

	deflating := dial(t, url, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	<-joined
	plain := dial(t, url, nil)
	<-joined
	// A raw client, to see the frame itself.
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "ws://"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
		"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	<-joined

	text := strings.Repeat("the same news for everyone; ", 200) // 5,600 bytes
	assert.Equal(t, 3, set.Broadcast(ratchet.Text(text)))
	for _, c := range []*websocket.Conn{deflating, plain} {
		typ, got := read(t, c)
		assert.Equal(t, websocket.MessageText, typ)
		assert.Equal(t, text, got)
	}
	hdr := make([]byte, 2)
	_, err = io.ReadFull(br, hdr)
	require.NoError(t, err)
	assert.Equal(t, byte(0xc1), hdr[0], "FIN, RSV1 (compressed), text")
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		ext := make([]byte, 2)
		_, err = io.ReadFull(br, ext)
		require.NoError(t, err)
		n = int(ext[0])<<8 | int(ext[1])
	}
	require.Less(t, n, len(text)/4, "compressed")
	payload := make([]byte, n)
	_, err = io.ReadFull(br, payload)
	require.NoError(t, err)
	inflated, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(payload),
		bytes.NewReader([]byte{0, 0, 0xff, 0xff}), bytes.NewReader([]byte{1, 0, 0, 0xff, 0xff}))))
	require.NoError(t, err)
	assert.Equal(t, text, string(inflated))

	// Short payloads are not worth compressing: plain frame, RSV1 clear.
	set.Broadcast(ratchet.Text("short"))
	frame := make([]byte, 7)
	_, err = io.ReadFull(br, frame)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x81, 5, 's', 'h', 'o', 'r', 't'}, frame)
}

// Request headers are bounded on App.Serve, since a connection keeps its
// upgrade request for life: larger ones are refused with 431 before any
// handler runs.
func TestAppMaxHeaderBytes(t *testing.T) {
	status := func(addr string, headerBytes int) int {
		h := http.Header{"X-Padding": {strings.Repeat("p", headerBytes)}}
		return dialStatus(t, "ws://"+addr+"/ws", &websocket.DialOptions{Host: "localhost", HTTPHeader: h})
	}

	app := ratchet.NewApp("localhost", 0)
	app.Route("/ws", echo, nil)
	addr := startApp(t, app)
	assert.Equal(t, http.StatusSwitchingProtocols, status(addr, ratchet.DefaultMaxHeaderBytes/2))
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status(addr, 2*ratchet.DefaultMaxHeaderBytes))

	roomy := ratchet.NewApp("localhost", 0, ratchet.WithMaxHeaderBytes(4*ratchet.DefaultMaxHeaderBytes))
	roomy.Route("/ws", echo, nil)
	roomyAddr := startApp(t, roomy)
	assert.Equal(t, http.StatusSwitchingProtocols, status(roomyAddr, 2*ratchet.DefaultMaxHeaderBytes))
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status(roomyAddr, 8*ratchet.DefaultMaxHeaderBytes))
}

// App.Serve cuts a request whose body trickles in (WithReadTimeout), while
// WebSocket connections, whose upgrade requests were read under the same
// timeout, live on (net/http clears a connection's deadlines when it is
// hijacked), also one whose first frame came glued to its request.
func TestAppReadTimeoutSparesWebSockets(t *testing.T) {
	bodyErr := make(chan error, 1)
	app := ratchet.NewApp("localhost", 0, ratchet.WithReadTimeout(100*time.Millisecond))
	app.Route("/ws", echo, nil)
	app.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	})
	addr := startApp(t, app)

	dialed := dial(t, "ws://localhost:"+port(addr)+"/ws", nil)
	gluedConn, glued := rawUpgrade(t, addr, "localhost", maskedText("early"))
	assertEcho(t, glued, "early")

	// Started after the upgrades, so cut after their deadlines have passed.
	slow := wstest.SendRaw(t, addr, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly part")
	select {
	case err := <-bodyErr:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the handler's read of the body")
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still reading the body")
	}
	wstest.RequireClosed(t, slow, bufio.NewReader(slow))

	write(t, dialed, "still here")
	_, m := read(t, dialed)
	assert.Equal(t, "still here", m)
	_, err := gluedConn.Write(maskedText("me too"))
	require.NoError(t, err)
	assertEcho(t, glued, "me too")
}

// App.Serve closes keep-alive connections that stay idle (WithIdleTimeout).
func TestAppIdleTimeout(t *testing.T) {
	app := ratchet.NewApp("localhost", 0, ratchet.WithIdleTimeout(50*time.Millisecond))
	app.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	addr := startApp(t, app)
	nc := wstest.SendRaw(t, addr, "GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, body := wstest.ReadResponse(t, nc, br)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "page", string(body))
	require.False(t, resp.Close, "a keep-alive answer")
	wstest.RequireClosed(t, nc, br)
}

// A request refused for its host says which host the App serves, in JSON
// when it speaks JSON, and is logged at debug level.
func TestAppWrongHostAnswer(t *testing.T) {
	var logged syncList
	logger := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app := ratchet.NewApp("localhost", 0, ratchet.WithLogger(logger))
	app.Route("/ws", echo, nil)
	app.Route("/api", echo, nil, ratchet.WithHost("api.test"))
	app.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "published") })
	app.HandleFunc("GET other.test/page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	addr := startApp(t, app)

	do := func(method, host, path string, header http.Header) (*http.Response, string) {
		req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader("{}"))
		require.NoError(t, err)
		req.Host = host
		for k, v := range header {
			req.Header[k] = v
		}
		resp, b := wstest.Do(t, req)
		return resp, string(b)
	}
	wrong := "127.0.0.1:" + port(addr)

	resp, body := do("POST", wrong, "/publish", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, `404 page not found: this server answers /publish for host "localhost", not for "`+wrong+`"`+"\n", body)

	json := http.Header{"Content-Type": {"application/json"}}
	resp, body = do("POST", wrong, "/publish", json)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"error":"wrong_host","message":"this server answers /publish for host \"localhost\", not for \"`+wrong+`\""}`, body)
	resp, body = do("GET", "Elsewhere.Test", "/page", http.Header{"Accept": {"application/json, */*"}})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.JSONEq(t, `{"error":"wrong_host","message":"this server answers /page for host \"other.test\", not for \"elsewhere.test\""}`, body)

	// The routes, WithHost's host included; a path no host serves stays a
	// plain 404, and so does a request for a host the App serves.
	_, body = do("GET", "elsewhere.test", "/api", nil)
	assert.Contains(t, body, `for host "api.test", not for "elsewhere.test"`)
	assert.Equal(t, http.StatusNotFound, dialStatus(t, "ws://"+addr+"/ws", nil))
	resp, body = do("GET", wrong, "/nowhere", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "404 page not found\n", body)
	_, body = do("GET", "localhost", "/api", nil)
	assert.Equal(t, "404 page not found\n", body)
	resp, body = do("POST", "localhost", "/publish", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "published", body)

	lines := logged.lines()
	require.NotEmpty(t, lines)
	assert.Contains(t, lines[0], `level=DEBUG msg="ratchet: request for a host the app does not serve" host=`+wrong+` serves=[localhost] method=POST path=/publish`)
}

// A connection that has sent no request yet (browsers open spare ones) does
// not hold Shutdown: net/http would count it busy for five seconds, longer
// than this Shutdown's context.
func TestShutdownClosesSpareConnections(t *testing.T) {
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{}, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	spare, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer spare.Close()
	// The server has accepted it once a request on another connection is
	// answered (connections are accepted in order).
	resp, err := http.Get("http://" + l.Addr().String() + "/none")
	require.NoError(t, err)
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	require.NoError(t, app.Shutdown(ctx), "Shutdown waited for a connection that asked nothing")
	require.ErrorIs(t, <-served, ratchet.ErrServerClosed)
	require.NoError(t, spare.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = spare.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the spare connection is closed")
}
