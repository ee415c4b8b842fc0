package main

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/browsertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChatInBrowser runs the seed's scenario in a real browser: the chat page
// open in two tabs of headless Chromium, a message typed into the form of one
// tab shows up in the log of the other.
func TestChatInBrowser(t *testing.T) {
	tab1 := browsertest.Start(t, 90*time.Second)

	// The chat server, as main builds it, on a free loopback port. Its
	// httpHost is "localhost", so the browser must ask for that host.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	app := newApp("localhost", port)
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := app.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ratchet.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	pageURL := "http://localhost:" + strconv.Itoa(port) + "/"

	// The first action starts the browser; tab2, made after it, is a second
	// tab of the same browser.
	if err := chromedp.Do(tab1, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("tab 1: open %s: %v", pageURL, err)
	}
	waitForLine(t, tab1, "tab 1", "connected")

	tab2, cancelTab2 := chromedp.NewContext(tab1)
	defer cancelTab2()
	if err := chromedp.Do(tab2, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("tab 2: open %s: %v", pageURL, err)
	}
	waitForLine(t, tab2, "tab 2", "connected")
	// Tab 2's page says hello as soon as it is connected; when tab 1 has
	// that, the server has been through tab 2's OnOpen and will relay to it.
	waitForLine(t, tab1, "tab 1", "Hello, WebSocket!")

	const msg = "hi from tab 1 — ünïcode ✓"
	if err := chromedp.Do(tab1,
		chromedp.SendKeys(chromedp.ID("text"), msg),
		chromedp.Click(chromedp.CSS("#form button")), // submits #form
	); err != nil {
		t.Fatalf("tab 1: send a message: %v", err)
	}
	waitForLine(t, tab1, "tab 1", "me: "+msg)
	waitForLine(t, tab2, "tab 2", msg)

	input, err := chromedp.Run(tab1, chromedp.Value(chromedp.ID("text")))
	if err != nil {
		t.Fatal(err)
	}
	if input != "" {
		t.Errorf("tab 1: #text holds %q after sending, want it cleared", input)
	}
}

// waitForLine waits until the chat log of a tab has a line that is exactly
// want, and fails the test with the log's lines if it never comes.
func waitForLine(t *testing.T, tab context.Context, name, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[bool](
		`(want) => [...document.querySelectorAll('#log p')].some(p => p.textContent === want)`,
		chromedp.WithPollingArgs(want),
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(10*time.Second),
	))
	if err != nil {
		lines, _ := chromedp.Run(tab, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('#log p')].map(p => p.textContent)`))
		t.Fatalf("%s: no line %q in #log (%v); the log has %q", name, want, err, lines)
	}
}
