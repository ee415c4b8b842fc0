// Package testenv tells tests whether they run under CI, where an outside
// program or server they need (Chromium, Node.js, PHP, Redis, NATS) must be
// there, and skips or fails them accordingly. It imports nothing of the
// module, so that any test helper package can use it.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// CI reports whether the tests run under CI (CI=true), where missing servers
// are a failure instead of a reason to skip.
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with a message saying how to run it, or fails it
// under CI=true, where every integration test must run.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true: integration tests must run)", msg)
	}
	t.Skipf("%s", msg)
}
