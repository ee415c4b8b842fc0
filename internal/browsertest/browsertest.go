// Package browsertest starts headless Chromium for tests that need a real
// browser: Debian's chromium package, a fresh profile and HOME of its own,
// and no process of it left behind when the test ends.
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
)

// Path is where Debian's chromium package puts the browser.
const Path = "/usr/bin/chromium"

// Start starts a headless Chromium that lives at most limit and returns the
// context of its first tab: chromedp.NewContext(tab) opens more tabs of
// the same browser. Without Chromium the test is skipped, saying how to
// install it, or fails under CI=true. The browser is closed, and every
// process of it checked gone, when the test ends.
func Start(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		msg := Path + " not found (" + err.Error() + "); install it with: apt-get install -y chromium"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// A fresh profile, and a HOME of its own so that nothing is written to
	// the real one (Chromium's crash handler keeps its database under
	// $HOME/.config). Every process of this browser names a path under root.
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(Path),
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
		closeCtx, closeCancel := context.WithTimeout(tab, 15*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil {
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
