package engineio_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
)

// Messages wait in the session while the client upgrades (sent between
// its probe and its upgrade packet, more than one 64 KiB write holds), and
// more follow once it upgraded: what the session queued before the upgrade
// and what its Conn writes after must reach the client in order, none lost
// or twice. (The upgraded session writes on the Conn's own goroutine only
// when nothing older waits or is being written.)
func TestUpgradeOrderUnderLoad(t *testing.T) {
	const before, during, after = 200, 1000, 200
	opened := make(chan ratchet.Conn, 1)
	h := engineio.NewHandler(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { opened <- c }},
		engineio.WithSendQueue(1<<12))
	base := serve(t, h)
	session, hs := open(t, base)
	conn := waitConn(t, opened, "OnOpen")
	pad := strings.Repeat("x", 1000)
	sent := 0
	send := func(k int) {
		for range k {
			if err := conn.Send(ratchet.Text(strconv.Itoa(sent) + pad)); err != nil {
				t.Fatalf("send %d: %v", sent, err)
			}
			sent++
		}
	}

	var mu sync.Mutex
	var got []string
	add := func(packets string) error {
		mu.Lock()
		defer mu.Unlock()
		for p := range strings.SplitSeq(packets, "\x1e") {
			switch {
			case strings.HasPrefix(p, "4"):
				got = append(got, strings.TrimSuffix(p[1:], pad))
			case p == "6", p == "2":
			default:
				return fmt.Errorf("packet %q", p)
			}
		}
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	var pause atomic.Bool
	polled := make(chan error, 1)
	go func() { // polls until paused, as engine.io-client does during the probe
		for !pause.Load() {
			status, body, _ := do(t, "GET", session, "")
			if status != 200 {
				polled <- fmt.Errorf("poll: %d %q", status, body)
				return
			}
			if err := add(body); err != nil {
				polled <- err
				return
			}
		}
		polled <- nil
	}()
	send(before)
	for count() < before {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/?EIO=4&transport=websocket&sid="+hs.Sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	if err := ws.Write(ctx, websocket.MessageText, []byte("2probe")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "3probe" {
		t.Fatalf("probe: %q %v", b, err)
	}
	pause.Store(true)
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	send(during) // they wait in the session: no poll, no WebSocket yet
	time.Sleep(20 * time.Millisecond)
	if err := ws.Write(ctx, websocket.MessageText, []byte("5")); err != nil {
		t.Fatal(err)
	}
	send(after)
	for count() < before+during+after {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", count(), err)
		}
		if err := add(string(b)); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range got {
		if m != strconv.Itoa(i) {
			t.Fatalf("message %d is %q (%q...)", i, m, got[i:min(i+5, len(got))])
		}
	}
	_ = ws.Write(ctx, websocket.MessageText, []byte("1"))
}
