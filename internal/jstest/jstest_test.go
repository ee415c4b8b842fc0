package jstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoot(t *testing.T) {
	root := Root(t)
	if _, err := os.Stat(filepath.Join(root, "package.json")); err != nil {
		t.Fatalf("root %s has no package.json: %v", root, err)
	}
}

// A script's lines reach the test in order; Stop kills a script that would
// run on, and a second Stop changes nothing.
func TestStartNextStop(t *testing.T) {
	p := Start(t, nil, "testdata/lines.mjs", "one", "two ✓")
	var got struct{ Arg string }
	p.NextJSON(&got)
	if got.Arg != "one" {
		t.Fatalf("first line: %q", got.Arg)
	}
	p.NextJSON(&got)
	if got.Arg != "two ✓" {
		t.Fatalf("second line: %q", got.Arg)
	}
	deadline := time.Now().Add(LineTimeout)
	for !strings.Contains(p.Stderr(), "waiting") {
		if time.Now().After(deadline) {
			t.Fatal("no standard error from the script")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, ok := <-p.Lines(); ok {
		t.Fatal("lines after the script was stopped")
	}
}

// A package that is not installed is a reason to skip (a failure under CI):
// Require does not return.
func TestRequireMissingPackage(t *testing.T) {
	if os.Getenv("CI") == "true" {
		t.Skip("under CI=true a missing package fails the test, as it should")
	}
	Require(t, "no-such-package-of-ratchet-go")
	t.Fatal("Require returned for a missing package")
}
