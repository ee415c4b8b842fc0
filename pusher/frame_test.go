package pusher

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// recordConn is a ratchet.Conn without a socket that keeps what it is sent.
type recordConn struct {
	id   uint64
	ctx  context.Context
	mu   sync.Mutex
	sent [][]byte
}

func (c *recordConn) Send(m ratchet.Message) error {
	c.mu.Lock()
	c.sent = append(c.sent, m.Data)
	c.mu.Unlock()
	return nil
}

func (c *recordConn) ID() uint64                             { return c.id }
func (c *recordConn) Close(ratchet.StatusCode, string) error { return nil }
func (c *recordConn) Request() *http.Request                 { return nil }
func (c *recordConn) RemoteAddr() string                     { return "" }
func (c *recordConn) Subprotocol() string                    { return "" }
func (c *recordConn) User() string                           { return "" }
func (c *recordConn) Context() context.Context               { return c.ctx }
func (c *recordConn) Set(string, any)                        {}
func (c *recordConn) Get(string) (any, bool)                 { return nil, false }

// Every recipient of a publication gets the same bytes, not a copy encoded
// for it: an event from Trigger (its frame is part of the publication), and
// a message published on the topic by other means (wrapped once per node,
// by whichever recipient comes first).
func TestOneFramePerPublication(t *testing.T) {
	hub := ratchet.NewHub()
	s, err := NewServer(hub, []App{{ID: "1", Key: "k", Secret: "s"}})
	require.NoError(t, err)
	defer s.Shutdown(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rcs := make([]*recordConn, 300) // enough to be split across cores
	for i := range rcs {
		rcs[i] = &recordConn{id: uint64(i + 1), ctx: ctx}
		c := &conn{Conn: rcs[i], s: s, a: s.apps[0], socketID: "1." + string(rune('0'+i%10))}
		require.NoError(t, hub.Subscribe(ctx, c, "news"))
	}
	require.NoError(t, s.Trigger(ctx, []string{"news"}, "e", "1"))
	_, err = hub.Publish(ctx, "news", ratchet.Text("raw"))
	require.NoError(t, err)
	_, err = hub.Publish(ctx, "news", ratchet.Text("raw")) // equal, but another publication
	require.NoError(t, err)

	first := rcs[0].sent
	require.Len(t, first, 3)
	assert.JSONEq(t, `{"event":"e","channel":"news","data":"1"}`, string(first[0]))
	assert.JSONEq(t, `{"event":"message","channel":"news","data":"raw"}`, string(first[1]))
	assert.False(t, sameBytes(first[1], first[2]), "each publication is wrapped anew")
	for _, rc := range rcs[1:] {
		require.Len(t, rc.sent, 3)
		for i := range rc.sent {
			assert.True(t, sameBytes(first[i], rc.sent[i]), "message %d is a copy", i)
		}
	}
}
