package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChatInBrowser runs the chat in a real browser: the chat page
// open in two tabs of headless Chromium, a message typed into the form of one
// tab shows up in the log of the other.
func TestChatInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := chromiumPath + " not found (" + err.Error() + "); install it with: apt-get install -y chromium"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	// The chat server, as main builds it, on a free loopback port. Its
	// httpHost is "localhost", so the browser must ask for that host.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	app := newApp("localhost")
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

	// Everything the browser does is bounded by this context.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A fresh profile, and a HOME of its own so that nothing is written to
	// the real one (Chromium's crash handler keeps its database under
	// $HOME/.config). Every process of this browser names a path under root.
	root := t.TempDir()
	userDataDir := filepath.Join(root, "profile")
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // needed as root; harmless otherwise
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(userDataDir),
		chromedp.Env("HOME="+filepath.Join(root, "home")),
	)
	tab1, cancelTab1 := chromedp.NewContext(allocCtx)
	defer cancelTab1()
	defer func() { // runs before the deferred cancelTab1
		// Close the browser gracefully through its first tab, within a
		// bound, and wait for its process; then free the allocator.
		closeCtx, closeCancel := context.WithTimeout(tab1, 15*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil {
			t.Logf("closing the browser: %v", err)
		}
		closeCancel()
		cancelTab1()
		cancelAlloc()
		// No process of this browser (renderer, zygote, utility, crash
		// handler) may outlive the test.
		if left := browserProcesses(root, 5*time.Second); len(left) > 0 {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("browser processes %v still running after the test (killed now)", left)
		}
	}()

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

// browserProcesses returns the processes still running with a path under
// root on their command line, waiting up to grace for them to go away.
// Chromium passes --user-data-dir to its child processes, and its crash
// handler gets a --database under $HOME.
func browserProcesses(root string, grace time.Duration) []int {
	want := []byte(root + string(filepath.Separator))
	deadline := time.Now().Add(grace)
	for {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && bytes.Contains(cmdline, want) && !isZombie(pid) {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isZombie reports whether pid has exited and only waits to be reaped.
func isZombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // gone
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
