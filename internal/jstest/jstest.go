//go:build unix

// Package jstest runs real JavaScript clients (npm packages pinned in the
// repository's package.json) from Go tests: a Node.js script as a child
// process of the test, its standard output read line by line.
//
// The packages are installed by `npm ci` at the repository root (.ci/run
// does it). Without node or without the packages a test is skipped, saying
// how to install them, or failed under CI=true.
package jstest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet/internal/testenv"
)

// LineTimeout bounds how long Process.Next waits for a line: far longer than
// a client on a loaded machine takes, short enough to end a stuck test.
const LineTimeout = 15 * time.Second

// Root returns the repository root: the nearest directory above the test's
// working directory (its package directory) that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("jstest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Require checks that node is installed and that each npm package in pkgs
// is in node_modules at the repository root. Otherwise it skips the test
// with a message saying how to install them, or fails it under CI=true.
// It returns the path of node.
func Require(t testing.TB, pkgs ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.SkipOrFail(t, "node is not installed: apt-get install -y nodejs npm, then npm ci at the repository root")
	}
	root := Root(t)
	for _, pkg := range pkgs {
		if _, err := os.Stat(filepath.Join(root, "node_modules", pkg, "package.json")); err != nil {
			testenv.SkipOrFail(t, "npm package %s is not installed: run npm ci at the repository root (%s)", pkg, root)
		}
	}
	return node
}

// Process is a Node.js script running for one test.
type Process struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	quit   chan struct{} // closed by Stop: the reader drops what is left
	exited chan struct{} // closed once the process was waited for
	err    error         // of cmd.Wait, after exited
	stderr lockedBuffer
	once   sync.Once
}

// Start runs `node script args...` after Require(t, pkgs...). script is
// relative to the test's package directory (say "testdata/client.mjs"); its
// imports of npm packages resolve to node_modules at the repository root.
// The process is killed when the test ends, and its standard error is
// logged if the test failed.
func Start(t testing.TB, pkgs []string, script string, args ...string) *Process {
	t.Helper()
	node := Require(t, pkgs...)
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Stop kills the whole group
	p := &Process{
		t:      t,
		cmd:    cmd,
		lines:  make(chan []byte, 1024),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("jstest: start node %s: %v", script, err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("node %s ended (%v); its standard error:\n%s", script, p.err, p.Stderr())
		}
	})
	return p
}

// read hands each line of out to Next until the process closes it, then
// waits for the process.
func (p *Process) read(out io.Reader) {
	defer close(p.exited)
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && err == nil {
			select {
			case p.lines <- bytes.TrimRight(line, "\r\n"):
			case <-p.quit:
			}
		}
		if err != nil {
			break
		}
	}
	close(p.lines)
	p.err = p.cmd.Wait()
}

// Lines returns the lines the script writes to its standard output, without
// their line ends. It is closed when the script has exited.
func (p *Process) Lines() <-chan []byte { return p.lines }

// Next returns the next line of the script's standard output. It fails the
// test when the script has exited or writes nothing for LineTimeout.
func (p *Process) Next() []byte {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.exited
			p.t.Fatalf("jstest: the script exited: %v", p.err) // Start's cleanup logs its standard error
		}
		return line
	case <-time.After(LineTimeout):
		p.t.Fatalf("jstest: no line from the script within %v", LineTimeout)
	}
	return nil
}

// NextJSON decodes the next line of the script's standard output into v.
func (p *Process) NextJSON(v any) {
	p.t.Helper()
	line := p.Next()
	if err := json.Unmarshal(line, v); err != nil {
		p.t.Fatalf("jstest: line %q is not JSON: %v", line, err)
	}
}

// WriteJSON writes v as one JSON line to the script's standard input, for
// scripts that take commands while they run.
func (p *Process) WriteJSON(v any) {
	p.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("jstest: write to the script: %v", err)
	}
}

// Stop kills the script (and anything it started) and waits until it has
// exited and its output was read. It returns the error of its exit; calling
// it again changes nothing.
func (p *Process) Stop() error {
	p.once.Do(func() {
		close(p.quit)
		// The process group may be gone already; the reader ends either way.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	})
	<-p.exited
	var exit *exec.ExitError
	if errors.As(p.err, &exit) && !exit.Exited() {
		return nil // killed by Stop, as asked
	}
	return p.err
}

// Stderr returns what the script wrote to its standard error so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// lockedBuffer is a bytes.Buffer that exec's copying goroutine writes while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
