package ratchet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// A closed Hub says so with ErrHubClosed, from every method that can fail;
// a connection that ended is still ErrClosed. The two must not be mistaken
// for each other.
func TestHubClosedError(t *testing.T) {
	ctx := context.Background()
	rec, conn := openConn(t)

	hub := ratchet.NewHub()
	require.NoError(t, hub.Close(ctx))
	_, err := hub.Publish(ctx, "news", ratchet.Text("x"))
	assert.ErrorIs(t, err, ratchet.ErrHubClosed, "Publish")
	_, err = hub.Broadcast(ctx, ratchet.Text("x"))
	assert.ErrorIs(t, err, ratchet.ErrHubClosed, "Broadcast")
	_, err = hub.PublishToUser(ctx, "ann", ratchet.Text("x"))
	assert.ErrorIs(t, err, ratchet.ErrHubClosed, "PublishToUser")
	assert.ErrorIs(t, hub.Add(ctx, conn), ratchet.ErrHubClosed, "Add")
	err = hub.Subscribe(ctx, conn, "news")
	assert.ErrorIs(t, err, ratchet.ErrHubClosed, "Subscribe")
	assert.NotErrorIs(t, err, ratchet.ErrClosed, "a closed Hub is not a closed connection")
	assert.Equal(t, "ratchet: hub closed", err.Error())

	// An open Hub and a connection that has ended: ErrClosed.
	open := ratchet.NewHub()
	defer open.Close(ctx)
	require.NoError(t, conn.Close(ratchet.StatusNormalClosure, ""))
	rec.expect(t, "close")
	err = open.Subscribe(ctx, conn, "news")
	assert.ErrorIs(t, err, ratchet.ErrClosed)
	assert.NotErrorIs(t, err, ratchet.ErrHubClosed)
}

// openConn serves a recorder and returns it with the server side of one
// client connection.
func openConn(t *testing.T) (*recorder, ratchet.Conn) {
	t.Helper()
	rec := newRecorder()
	_, url := serveComponent(t, rec)
	dial(t, url, nil)
	return rec, rec.expect(t, "open").conn
}

// A closed MemoryPresence says so with ErrPresenceClosed.
func TestMemoryPresenceClosedError(t *testing.T) {
	ctx := context.Background()
	p := ratchet.NewMemoryPresence()
	require.NoError(t, p.Join(ctx, "news", "ann"))
	require.NoError(t, p.Close(ctx))

	err := p.Join(ctx, "news", "bob")
	assert.ErrorIs(t, err, ratchet.ErrPresenceClosed, "Join")
	assert.NotErrorIs(t, err, ratchet.ErrClosed, "a closed Presence is not a closed connection")
	_, err = p.Watch(ctx, "news", func(ratchet.PresenceEvent) {})
	assert.ErrorIs(t, err, ratchet.ErrPresenceClosed, "Watch")
	assert.Equal(t, "ratchet: presence closed", err.Error())
}

// ErrInvalidTopic covers every name ValidTopic refuses, not only reserved
// ones; ErrReservedTopic stays an alias for code written against it.
func TestInvalidTopicError(t *testing.T) {
	ctx := context.Background()
	_, conn := openConn(t)
	hub := ratchet.NewHub()
	defer hub.Close(ctx)

	for name, topic := range map[string]string{
		"empty":     "",
		"reserved":  "@all",
		"too long":  strings.Repeat("a", 257),
		"not UTF-8": "news\xff",
	} {
		require.False(t, ratchet.ValidTopic(topic), name)
		err := hub.Subscribe(ctx, conn, topic)
		assert.ErrorIs(t, err, ratchet.ErrInvalidTopic, name)
		assert.ErrorIs(t, err, ratchet.ErrReservedTopic, "%s: the deprecated name still matches", name)
	}
	require.NoError(t, hub.Subscribe(ctx, conn, strings.Repeat("a", 256)), "256 bytes is the limit, not over it")
	_, err := hub.Publish(ctx, "", ratchet.Text("x"))
	assert.ErrorIs(t, err, ratchet.ErrInvalidTopic)
}

func TestCloseStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want ratchet.StatusCode
	}{
		{nil, -1},
		{errors.New("other"), -1},
		{ratchet.ErrClosed, -1},
		{ratchet.ErrKeepaliveTimeout, -1},
		{ratchet.ErrSlowConsumer, ratchet.StatusPolicyViolation},
		{fmt.Errorf("wrapped: %w", ratchet.ErrSlowConsumer), ratchet.StatusPolicyViolation},
		{ratchet.ErrInvalidUTF8, ratchet.StatusInvalidPayload},
		{&ratchet.PanicError{Value: "boom"}, ratchet.StatusInternalError},
		{&ratchet.PanicError{Value: ratchet.ErrSlowConsumer}, ratchet.StatusInternalError},
		{&ratchet.CloseError{Code: 4001, Reason: "bye"}, 4001},
		{fmt.Errorf("wrapped: %w", &ratchet.CloseError{Code: ratchet.StatusMessageTooBig}), ratchet.StatusMessageTooBig},
		{fmt.Errorf("from coder/websocket: %w", websocket.CloseError{Code: websocket.StatusTryAgainLater}), ratchet.StatusTryAgainLater},
	} {
		assert.Equal(t, tc.want, ratchet.CloseStatus(tc.err), "CloseStatus(%v)", tc.err)
	}
}

// What OnError receives gives, through CloseStatus, the close code that went
// over the wire, whichever side closed.
func TestCloseStatusOfOnError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []ratchet.WsOption
		onMessage func(ratchet.Conn, ratchet.Message)
		client    func(t *testing.T, c *websocket.Conn) websocket.StatusCode // the code on the wire
	}{
		{
			name: "client closes with 4001",
			client: func(t *testing.T, c *websocket.Conn) websocket.StatusCode {
				require.NoError(t, c.Close(4001, "leaving"))
				return 4001
			},
		},
		{
			name: "message over the read limit",
			opts: []ratchet.WsOption{ratchet.WithReadLimit(100)},
			client: func(t *testing.T, c *websocket.Conn) websocket.StatusCode {
				_ = c.Write(context.Background(), websocket.MessageBinary, make([]byte, 101))
				return readClose(t, c)
			},
		},
		{
			name: "invalid UTF-8 text",
			client: func(t *testing.T, c *websocket.Conn) websocket.StatusCode {
				require.NoError(t, c.Write(context.Background(), websocket.MessageText, []byte{0xff}))
				return readClose(t, c)
			},
		},
		{
			name:      "panic in OnMessage",
			onMessage: func(ratchet.Conn, ratchet.Message) { panic("boom") },
			client: func(t *testing.T, c *websocket.Conn) websocket.StatusCode {
				write(t, c, "x")
				return readClose(t, c)
			},
		},
		{
			name: "client drops the TCP connection",
			client: func(t *testing.T, c *websocket.Conn) websocket.StatusCode {
				c.CloseNow()
				return -1 // no close frame
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			rec.onMessage = tc.onMessage
			_, url := serveComponent(t, rec, tc.opts...)
			c := dial(t, url, nil)
			rec.expect(t, "open")
			wire := tc.client(t, c)
			e := rec.next(t)
			for e.kind == "message" {
				e = rec.next(t)
			}
			require.Equal(t, "error", e.kind, "want OnError, got %+v", e)
			assert.Equal(t, ratchet.StatusCode(wire), ratchet.CloseStatus(e.err), "OnError got %v", e.err)
			rec.expect(t, "close")
		})
	}
}
