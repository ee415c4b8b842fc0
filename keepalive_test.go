package ratchet_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

// One keepalive sweep serves every connection of a WsServer: among many
// peers that answer pings, the one that does not is closed with
// ErrKeepaliveTimeout and the others stay; once the server has had no
// connection, the sweep starts again for the next one.
func TestKeepaliveSweep(t *testing.T) {
	rec := newRecorder()
	_, url := serveComponent(t, rec, ratchet.WithKeepalive(20*time.Millisecond, 40*time.Millisecond))

	const live = 20
	var peers []*websocket.Conn
	for range live {
		c := dial(t, url, nil)
		c.CloseRead(context.Background()) // reads, so pings are answered
		peers = append(peers, c)
		rec.expect(t, "open")
	}
	wstest.DialRaw(t, url, wstest.RawOptions{}) // never reads: never answers
	silent := rec.expect(t, "open").conn

	e := rec.expect(t, "error")
	assert.Same(t, silent, e.conn)
	assert.ErrorIs(t, e.err, ratchet.ErrKeepaliveTimeout)
	assert.Same(t, silent, rec.expect(t, "close").conn)

	// Ten intervals more: every answering peer is still there.
	select {
	case e := <-rec.events:
		t.Fatalf("unexpected %+v while the peers answer pings", e)
	case <-time.After(200 * time.Millisecond):
	}
	for _, c := range peers {
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
		rec.expect(t, "close")
	}

	// No connection left; a new silent one is still timed out.
	time.Sleep(50 * time.Millisecond)
	wstest.DialRaw(t, url, wstest.RawOptions{})
	again := rec.expect(t, "open").conn
	e = rec.expect(t, "error")
	assert.Same(t, again, e.conn)
	assert.ErrorIs(t, e.err, ratchet.ErrKeepaliveTimeout)
	rec.expect(t, "close")
}
