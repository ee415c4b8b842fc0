//go:build unix

// Package browsertest runs pages of the tests in headless Chromium (Debian's
// chromium package) through chromedp: a fresh browser per test, with a
// profile and HOME of its own, closed at the end of the test with no process
// left behind. Without chromium a test is skipped, saying how to install
// it, or failed under CI=true.
package browsertest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ratchetgo/ratchet/internal/testenv"
)

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Timeout bounds everything one browser does in a test.
const Timeout = 90 * time.Second

// Require skips the test, or fails it under CI=true, when Chromium is not
// installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		testenv.SkipOrFail(t, "%s not found (%v); install it with: apt-get install -y chromium", ChromiumPath, err)
	}
}

// Start starts a headless Chromium after Require and returns the context of
// its first tab (chromedp.NewContext on it opens more tabs of the same
// browser). The browser starts with the first action on the tab. At the end
// of the test it is closed and every process of it is gone.
func Start(t testing.TB) context.Context {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)

	// A fresh profile, and a HOME of its own so that nothing is written to
	// the real one (Chromium's crash handler keeps its database under
	// $HOME/.config). Every process of this browser names a path under root.
	root := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(ChromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // needed as root; harmless otherwise
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(filepath.Join(root, "profile")),
		chromedp.Env("HOME="+filepath.Join(root, "home")),
	)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close the browser gracefully through its first tab, within a
		// bound, and wait for its process; then free the allocator.
		// chromedp.Cancel waits for the process, which only the allocator
		// kills: past the grace period, kill it so that Cancel returns.
		closeCtx, closeCancel := context.WithTimeout(tab, 5*time.Second)
		closed := make(chan error, 1)
		go func() { closed <- chromedp.Cancel(closeCtx) }()
		var err error
		select {
		case err = <-closed:
		case <-closeCtx.Done():
			cancelAlloc()
			err = <-closed
		}
		if err != nil {
			t.Logf("closing the browser: %v", err)
		}
		closeCancel()
		cancelTab()
		cancelAlloc()
		cancel()
		// No process of this browser (renderer, zygote, utility, crash
		// handler) may outlive the test.
		if left := processes(root, 5*time.Second); len(left) > 0 {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("browser processes %v still running after the test (killed now)", left)
		}
	})
	return tab
}

// processes returns the processes still running with a path under root on
// their command line, waiting up to grace for them to go away. Chromium
// passes --user-data-dir to its child processes, and its crash handler gets
// a --database under $HOME.
func processes(root string, grace time.Duration) []int {
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
