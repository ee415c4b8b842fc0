//go:build unix

// Package brokertest holds what the tests of the Broker implementations in
// broker/redis and broker/nats share: a conformance suite that any
// ratchet.Broker must pass (Run), helpers that find the real servers the
// integration tests need or skip them (SkipOrFail), and helpers that start a
// server process of their own for kill-and-restart tests (StartProcess).
package brokertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet/internal/testenv"
)

// CI and SkipOrFail are testenv's, for the broker tests that use them.
var (
	CI         = testenv.CI
	SkipOrFail = testenv.SkipOrFail
)

// Addr returns the value of the environment variable env, or def.
func Addr(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// Reachable reports whether a TCP connection to hostport opens within a
// second.
func Reachable(hostport string) bool {
	c, err := net.DialTimeout("tcp", hostport, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var topicSeq atomic.Uint64

// Topic returns a topic name unique to this test run, so that tests sharing
// a server do not see each other's messages.
func Topic(t testing.TB) string {
	return fmt.Sprintf("test-%s-%d-%d-%d", sanitize(t.Name()), os.Getpid(), time.Now().UnixNano(), topicSeq.Add(1))
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Process is a server process started by a test.
type Process struct {
	t    testing.TB
	bin  string
	args []string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess starts bin with args and waits until it accepts TCP
// connections on 127.0.0.1:port. When bin is missing the test is skipped,
// or failed under CI. The process is killed at the end of the test.
func StartProcess(t testing.TB, bin string, port int, args ...string) *Process {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		SkipOrFail(t, "%s not installed (apt-get install redis-server nats-server): %v", bin, err)
	}
	p := &Process{t: t, bin: bin, args: args, port: port}
	p.Start()
	t.Cleanup(p.Kill)
	return p
}

// Start starts the process (again) and waits until it listens.
func (p *Process) Start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Getenv("RATCHET_TEST_SERVER_LOG") != "" {
		p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.bin, err)
	}
	done := make(chan struct{})
	p.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(p.cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			p.t.Fatalf("%s exited before listening on %s", p.bin, addr)
		case <-ctx.Done():
			p.Kill()
			p.t.Fatalf("%s did not listen on %s within 10s", p.bin, addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill kills the process with SIGKILL, as a crash would, and waits for it
// to exit. It does nothing when the process is not running.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop freezes the process with SIGSTOP: its sockets stay open but it
// answers nothing, like a hung server or a partitioned network.
// It returns once every thread of the process is stopped.
func (p *Process) Stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	WaitFor(p.t, p.bin+" stopped", p.stopped)
}

// stopped reports whether every thread of the process is stopped (true
// without /proc: there is no telling).
func (p *Process) stopped() bool {
	dir := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		// The state follows the parenthesised command name.
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i >= 0 && i+2 < len(stat) && stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Continue resumes a process frozen by Stop.
func (p *Process) Continue() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// Port returns the port the process listens on.
func (p *Process) Port() int { return p.port }

// Slack is how late past its context a broker call may return on a loaded
// machine: far less than the client timeouts (seconds) it must not wait for.
const Slack = time.Second

// WaitFor polls cond for up to 15 s, failing the test if it never holds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
