package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/browsertest"
	"github.com/ratchetgo/ratchet/internal/jstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChatInBrowser runs the chat in a real browser: the chat page open in
// two tabs of headless Chromium, each with a nickname; the greeting of a tab
// that connects, and a message typed into the form of one tab, show up in
// the log of the other under its nickname. Then the server restarts: both
// pages show that they are offline, reconnect by themselves, and chat again.
// No page writes an error to its console (a missing favicon would).
//
// With CHAT_SCREENSHOT=file.png the test saves screenshots of the first tab,
// chatting (file.png) and offline (file-offline.png).
func TestChatInBrowser(t *testing.T) {
	srv, pageURL, tab1, console1 := startChat(t)
	nick, err := chromedp.Run(tab1, chromedp.Value(chromedp.ID("nick")))
	if err != nil || nick != "ann" {
		t.Errorf("tab 1: #nick holds %q (%v), want the nickname of the URL, ann", nick, err)
	}

	tab2, cancelTab2 := chromedp.NewContext(tab1)
	defer cancelTab2()
	console2 := watchConsole(t, tab2)
	if err := chromedp.Do(tab2, chromedp.Navigate(pageURL+"?nick=bob")); err != nil {
		t.Fatalf("tab 2: open %s: %v", pageURL, err)
	}
	waitForState(t, tab2, "tab 2", "connected", "connected as bob")
	// Tab 2's page greets as soon as it is connected, shown to tab 1 as a
	// greeting; when tab 1 has it, the server has been through tab 2's
	// OnOpen and will relay to it.
	waitForLine(t, tab1, "tab 1", ".greeting", "bob joined: Hello, WebSocket!")

	// Tab 2 changes its nickname in the form: select it, type a new one.
	if _, err := chromedp.Run(tab2, chromedp.Evaluate[bool](`document.getElementById('nick').select(), true`)); err != nil {
		t.Fatalf("tab 2: select the nickname: %v", err)
	}
	if err := chromedp.Do(tab2, chromedp.SendKeys(chromedp.ID("nick"), "bobby")); err != nil {
		t.Fatalf("tab 2: change the nickname: %v", err)
	}

	const msg = "hi from tab 1 — ünïcode ✓ <b>not bold</b>"
	sendMessage(t, tab1, "tab 1", msg)
	waitForLine(t, tab1, "tab 1", ".msg.me", "ann: "+msg)
	waitForLine(t, tab2, "tab 2", ".msg:not(.me)", "ann: "+msg)
	input, err := chromedp.Run(tab1, chromedp.Value(chromedp.ID("text")))
	if err != nil {
		t.Fatal(err)
	}
	if input != "" {
		t.Errorf("tab 1: #text holds %q after sending, want it cleared", input)
	}
	sendMessage(t, tab2, "tab 2", "hello ann")
	waitForLine(t, tab1, "tab 1", ".msg:not(.me)", "bobby: hello ann")
	for name, c := range map[string]*consoleWatch{"tab 1": console1, "tab 2": console2} {
		if errs := c.errors(nil); len(errs) > 0 {
			t.Errorf("%s: console errors: %q", name, errs)
		}
	}
	screenshot(t, tab1, "")

	// The server goes away: both pages say so and try again, with backoff,
	// until it is back on the same address.
	srv.stop(t)
	waitForState(t, tab1, "tab 1", "offline", "offline, reconnecting in")
	waitForState(t, tab2, "tab 2", "offline", "offline, reconnecting in")
	screenshot(t, tab1, "-offline")
	srv.start(t)
	waitForState(t, tab1, "tab 1", "connected", "connected as ann")
	waitForState(t, tab2, "tab 2", "connected", "connected as bobby")
	// The tab that reconnected last greets the other one; after that the
	// server relays between both.
	waitForAnyLine(t, map[string]context.Context{"tab 1": tab1, "tab 2": tab2}, map[string]string{
		"tab 1": "bobby joined: Hello, WebSocket!",
		"tab 2": "ann joined: Hello, WebSocket!",
	}, 1)
	sendMessage(t, tab1, "tab 1", "back again")
	waitForLine(t, tab2, "tab 2", ".msg:not(.me)", "ann: back again")

	// A failed reconnection attempt is a network error the browser logs by
	// itself; nothing else may show up.
	wsFailed := regexp.MustCompile(`^WebSocket connection to 'ws://localhost:\d+/websocket' failed: .*ERR_CONNECTION_REFUSED`)
	for name, c := range map[string]*consoleWatch{"tab 1": console1, "tab 2": console2} {
		if errs := c.errors(wsFailed); len(errs) > 0 {
			t.Errorf("%s: console errors: %q", name, errs)
		}
	}
}

// startChat starts the chat server, as main builds it, on a free loopback
// port, and opens its page in a first tab of a new browser as ann, on the
// plain WebSocket. The server's httpHost is "localhost", so the browser
// must ask for that host. Tabs made from the first one are tabs of the same
// browser; each tab's console is watched from the start.
func startChat(t *testing.T) (srv *chatServer, pageURL string, tab1 context.Context, console1 *consoleWatch) {
	t.Helper()
	srv = &chatServer{addr: "127.0.0.1:0"}
	srv.start(t)
	t.Cleanup(func() { srv.stop(t) })
	pageURL = "http://localhost:" + port(srv.addr) + "/"

	tab1 = browsertest.Start(t)
	console1 = watchConsole(t, tab1)
	if err := chromedp.Do(tab1, chromedp.Navigate(pageURL+"?nick=ann")); err != nil {
		t.Fatalf("tab 1: open %s: %v", pageURL, err)
	}
	waitForState(t, tab1, "tab 1", "connected", "connected as ann")
	return srv, pageURL, tab1, console1
}

// TestChatWithoutWebSocket runs the chat in a browser whose page has no
// WebSocket (deleted before any script of the page runs): the page falls
// back to engine.io-client, served by the example from the npm package, and
// chats over long polling with a tab on the plain WebSocket route, both
// ways, through the same component. No console errors.
func TestChatWithoutWebSocket(t *testing.T) {
	jstest.Require(t, "engine.io-client") // the browser build comes from node_modules
	_, pageURL, tab1, console1 := startChat(t)

	tab2, cancelTab2 := chromedp.NewContext(tab1)
	defer cancelTab2()
	console2 := watchConsole(t, tab2)
	noWebSocket := chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument,
			cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: "delete window.WebSocket;"})
		return chromedp.Void{}, err
	})
	if err := chromedp.Do(tab2, noWebSocket, chromedp.Navigate(pageURL+"?nick=bob")); err != nil {
		t.Fatalf("tab 2: open %s without WebSocket: %v", pageURL, err)
	}
	waitForState(t, tab2, "tab 2", "connected", "connected as bob (Engine.IO)")
	if ws, err := chromedp.Run(tab2, chromedp.Evaluate[bool](`typeof WebSocket !== 'undefined'`)); err != nil || ws {
		t.Fatalf("tab 2 has a WebSocket (%v): the test proves nothing", err)
	}
	waitForLine(t, tab1, "tab 1", ".greeting", "bob joined: Hello, WebSocket!")

	sendMessage(t, tab1, "tab 1", "hi bob, over WebSocket")
	waitForLine(t, tab2, "tab 2", ".msg:not(.me)", "ann: hi bob, over WebSocket")
	sendMessage(t, tab2, "tab 2", "hi ann, over long polling ✓")
	waitForLine(t, tab1, "tab 1", ".msg:not(.me)", "bob: hi ann, over long polling ✓")
	for name, c := range map[string]*consoleWatch{"tab 1": console1, "tab 2": console2} {
		if errs := c.errors(nil); len(errs) > 0 {
			t.Errorf("%s: console errors: %q", name, errs)
		}
	}
}

// screenshot saves what tab shows when CHAT_SCREENSHOT names a file; suffix
// goes before its extension.
func screenshot(t *testing.T, tab context.Context, suffix string) {
	t.Helper()
	path := os.Getenv("CHAT_SCREENSHOT")
	if path == "" {
		return
	}
	ext := filepath.Ext(path)
	png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(strings.TrimSuffix(path, ext)+suffix+ext, png, 0o644)
	}
	if err != nil {
		t.Errorf("screenshot: %v", err)
	}
}

// chatServer is the chat server as main builds it, stopped and started again
// on the same address.
type chatServer struct {
	addr   string // host:port, the port fixed by the first start
	app    *ratchet.App
	served chan error
}

func (s *chatServer) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	chat, err := NewChat(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.app = newApp("localhost", filepath.Join(jstest.Root(t), defaultEngineIOClient), chat, nil, nil)
	s.served = make(chan error, 1)
	go func() { s.served <- s.app.Serve(l) }()
}

// stop shuts the server down, once per start.
func (s *chatServer) stop(t *testing.T) {
	t.Helper()
	if s.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.app.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-s.served; !errors.Is(err, ratchet.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	s.app = nil
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// consoleWatch keeps what a tab writes to its console.
type consoleWatch struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
	done chan struct{} // closed when the tab has gone
}

// watchConsole records the console of tab from now until the tab ends; the
// test waits for the end.
func watchConsole(t *testing.T, tab context.Context) *consoleWatch {
	c := &consoleWatch{done: make(chan struct{})}
	listen, stop := context.WithCancel(tab)
	msgs := chromedp.Console(listen) // subscribes now
	go func() {
		defer close(c.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { stop(); <-c.done }) // the tab may outlive the test body
	return c
}

// errors returns the errors and exceptions logged so far, but those whose
// text matches allowed.
func (c *consoleWatch) errors(allowed *regexp.Regexp) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []string
	for _, m := range c.msgs {
		switch m.Type {
		case chromedp.ConsoleError, chromedp.ConsoleException, "assert":
			if allowed == nil || !allowed.MatchString(m.Text) {
				errs = append(errs, m.String()+" ("+m.Source+" "+m.URL+")")
			}
		}
	}
	return errs
}

// sendMessage types text into a tab's form and submits it.
func sendMessage(t *testing.T, tab context.Context, name, text string) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send")), // submits #form
	); err != nil {
		t.Fatalf("%s: send a message: %v", name, err)
	}
}

// waitForState waits until the connection state of a tab has class want and
// a text starting with text.
func waitForState(t *testing.T, tab context.Context, name, want, text string) {
	t.Helper()
	const js = `(want, text) => { const s = document.getElementById('state'); return s.className === want && s.textContent.startsWith(text); }`
	if err := poll(tab, js, want, text); err != nil {
		got, _ := chromedp.Run(tab, chromedp.Evaluate[[]string](
			`[document.getElementById('state').className, document.getElementById('state').textContent]`))
		t.Fatalf("%s: state never became %s %q (%v); it is %q", name, want, text, err, got)
	}
}

// waitForLine waits until the chat log of a tab has a line matching the CSS
// selector sel whose text is exactly want, and fails the test with the log's
// lines if it never comes.
func waitForLine(t *testing.T, tab context.Context, name, sel, want string) {
	t.Helper()
	const js = `(sel, want) => [...document.querySelectorAll('#log p')].some(p => p.matches(sel) && p.textContent === want)`
	if err := poll(tab, js, sel, want); err != nil {
		t.Fatalf("%s: no line %s %q in #log (%v); the log has %q", name, sel, want, err, logLines(tab))
	}
}

// waitForAnyLine waits until one of the tabs has its line n times.
func waitForAnyLine(t *testing.T, tabs map[string]context.Context, want map[string]string, n int) {
	t.Helper()
	const js = `(want, n) => [...document.querySelectorAll('#log p')].filter(p => p.textContent === want).length >= n`
	found := make(chan string, len(tabs))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for name, tab := range tabs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tctx, tcancel := context.WithCancel(tab)
			stop := context.AfterFunc(ctx, tcancel)
			defer stop()
			defer tcancel()
			if poll(tctx, js, want[name], n) == nil {
				found <- name
			}
		}()
	}
	var err error
	select {
	case <-found:
	case <-time.After(20 * time.Second):
		err = errors.New("timed out")
	}
	cancel()
	wg.Wait()
	if err != nil {
		lines := map[string][]string{}
		for name, tab := range tabs {
			lines[name] = logLines(tab)
		}
		t.Fatalf("no tab got its line %d times (%q): %v; the logs have %q", n, want, err, lines)
	}
}

// poll waits, up to 15 s, until the page function returns true.
func poll(tab context.Context, pageFunction string, args ...any) error {
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[bool](pageFunction,
		chromedp.WithPollingArgs(args...),
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(15*time.Second),
	))
	return err
}

func logLines(tab context.Context) []string {
	lines, _ := chromedp.Run(tab, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#log p')].map(p => p.className + ' | ' + p.textContent)`))
	return lines
}
