package ratchet_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// A connection whose callback panics right after an inline write to it (a
// Hub publish from another connection) still sends its 1011 close frame: the
// inline write held the write side when the connection failed, and finish
// used to send coder/websocket's 1000 before anyone wrote ours (about one
// run in ten).
func TestPanicCloseCodeAfterInlineWrite(t *testing.T) {
	hub := ratchet.NewHub()
	defer hub.Close(context.Background())
	comp := ratchet.ComponentFuncs{
		Open: func(c ratchet.Conn) { _ = hub.Subscribe(context.Background(), c, "t") },
		Message: func(c ratchet.Conn, m ratchet.Message) {
			if m.String() == "panic" {
				panic("boom")
			}
			_, _ = hub.Publish(context.Background(), "t", m)
		},
	}
	_, url := serveComponent(t, comp)
	a := dial(t, url, nil)
	b := dial(t, url, nil)
	require.Eventually(t, func() bool { return hub.Subscribers("t") == 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, a.Write(context.Background(), websocket.MessageText, []byte("hello")))
	_, m := read(t, a)
	require.Equal(t, "hello", m)
	_, m = read(t, b)
	require.Equal(t, "hello", m)
	require.NoError(t, b.Write(context.Background(), websocket.MessageText, []byte("panic")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	for err == nil {
		_, _, err = b.Read(ctx)
	}
	require.Equal(t, websocket.StatusInternalError, websocket.CloseStatus(err), "%v", err)
}
