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

// The server sends a numbered stream without pause while the client
// upgrades, with the protocol's steps held apart: what the session queued
// before the upgrade and what its Conn writes after must reach the client
// in order, none lost or twice (the upgraded session writes on the Conn's
// own goroutine only when nothing older waits).
func TestUpgradeOrderUnderLoad(t *testing.T) {
	const n = 20000
	opened := make(chan ratchet.Conn, 1)
	h := engineio.NewHandler(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { opened <- c }},
		engineio.WithSendQueue(1<<15))
	base := serve(t, h)
	session, hs := open(t, base)
	conn := waitConn(t, opened, "OnOpen")
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := conn.Send(ratchet.Text(strconv.Itoa(i))); err != nil {
				sendErr <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			if i%20 == 19 {
				time.Sleep(100 * time.Microsecond)
			}
		}
		sendErr <- nil
	}()

	var mu sync.Mutex
	var got []string
	add := func(packets string) error {
		mu.Lock()
		defer mu.Unlock()
		for p := range strings.SplitSeq(packets, "\x1e") {
			switch {
			case strings.HasPrefix(p, "4"):
				got = append(got, p[1:])
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
	for count() < 500 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/?EIO=4&transport=websocket&sid="+hs.Sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
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
	time.Sleep(20 * time.Millisecond) // more piles up in the session before the switch
	if err := ws.Write(ctx, websocket.MessageText, []byte("5")); err != nil {
		t.Fatal(err)
	}
	for count() < n {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", count(), err)
		}
		if err := add(string(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		if m != strconv.Itoa(i) {
			t.Fatalf("message %d is %q (%q...)", i, m, got[i:min(i+5, len(got))])
		}
	}
	_ = ws.Write(ctx, websocket.MessageText, []byte("1"))
}
