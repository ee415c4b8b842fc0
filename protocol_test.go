package ratchet_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wstest"
)

const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"

// emptyDeflateBlocks is n empty, non-final stored deflate blocks: valid
// compressed data that inflates to nothing.
func emptyDeflateBlocks(n int) []byte {
	return bytes.Repeat([]byte{0x00, 0x00, 0x00, 0xff, 0xff}, n)
}

// A peer that breaks the protocol gets a close frame that says how, before
// the TCP connection ends, and OnError a *CloseError with that code; no
// message reaches OnMessage.
func TestProtocolViolationsGetACloseFrame(t *testing.T) {
	cases := []struct {
		name     string
		opts     []ratchet.WsOption
		header   string
		input    func() []byte // written on another goroutine; may be far more than is read
		wantCode int
	}{{
		name: "close reason not UTF-8",
		input: func() []byte {
			return wstest.AppendFrame(nil, true, false, wstest.OpClose, wstest.ClosePayload(1000, "\xff\xfe"))
		},
		wantCode: 1007,
	}, {
		name:   "corrupt compressed data",
		opts:   []ratchet.WsOption{ratchet.WithCompression(true)},
		header: deflateOffer,
		// Block type 3 is reserved (RFC 1951 §3.2.3).
		input: func() []byte {
			return wstest.AppendFrame(nil, true, true, wstest.OpText, []byte{0xff, 0xff, 0xff, 0xff})
		},
		wantCode: 1007,
	}, {
		name: "frame length with the most significant bit set",
		input: func() []byte {
			return []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
		},
		wantCode: 1002,
	}, {
		name:     "unmasked frame",
		input:    func() []byte { return []byte{0x81, 2, 'h', 'i'} },
		wantCode: 1002,
	}, {
		name: "a million empty fragments",
		input: func() []byte {
			b := wstest.AppendFrame(nil, false, false, wstest.OpText, nil)
			for range 1_000_000 {
				b = wstest.AppendFrame(b, false, false, wstest.OpContinuation, nil)
			}
			return wstest.AppendFrame(b, true, false, wstest.OpContinuation, nil)
		},
		wantCode: 1009,
	}, {
		name:   "5 MB of empty deflate blocks",
		opts:   []ratchet.WsOption{ratchet.WithCompression(true)},
		header: deflateOffer,
		input: func() []byte {
			return wstest.AppendFrame(nil, true, true, wstest.OpText, emptyDeflateBlocks(1_000_000))
		},
		wantCode: 1009,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			_, url := serveComponent(t, rec, tc.opts...)
			c := wstest.DialRaw(t, url, wstest.RawOptions{Header: tc.header})
			if tc.header != "" {
				require.NotEmpty(t, c.Header.Get("Sec-WebSocket-Extensions"), "compression negotiated")
			}
			open := rec.expect(t, "open")
			input := tc.input()
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				_, _ = c.Write(input) // fails once the server has closed
			}()
			assert.Equal(t, tc.wantCode, c.ExpectClose(t))
			e := rec.next(t)
			require.Equal(t, "error", e.kind, "want OnError, got %+v", e)
			assert.Same(t, open.conn, e.conn)
			var ce *ratchet.CloseError
			require.True(t, errors.As(e.err, &ce), "OnError got %v", e.err)
			assert.Equal(t, ratchet.StatusCode(tc.wantCode), ce.Code)
			rec.expect(t, "close")
			c.Close()
			<-wrote
		})
	}
}

// The bound on the wire is far from what a message within the read limit
// needs: the largest one, split into one-byte fragments of a few hundred
// bytes each or compressed, passes.
func TestWireBudgetLetsSaneMessagesThrough(t *testing.T) {
	const limit = 1 << 10
	rec := newRecorder()
	rec.onMessage = func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) }
	_, url := serveComponent(t, rec, ratchet.WithReadLimit(limit), ratchet.WithCompression(true))
	c := wstest.DialRaw(t, url, wstest.RawOptions{Header: deflateOffer})
	rec.expect(t, "open")
	payload := bytes.Repeat([]byte("x"), limit)

	var b []byte
	for i := 0; i < limit; i += 100 {
		op := byte(wstest.OpContinuation)
		if i == 0 {
			op = wstest.OpText
		}
		b = wstest.AppendFrame(b, i+100 >= limit, false, op, payload[i:min(i+100, limit)])
		b = wstest.AppendFrame(b, true, false, wstest.OpPing, nil) // control frames between fragments
	}
	// Stored (uncompressed) deflate blocks of the whole payload, after a few
	// empty ones.
	stored := append(emptyDeflateBlocks(10), 0x00, limit&0xff, limit>>8, ^limit&0xff, ^limit>>8&0xff)
	b = wstest.AppendFrame(b, true, true, wstest.OpText, append(stored, payload...))
	_, err := c.Write(b)
	require.NoError(t, err)
	for range 2 {
		e := rec.expect(t, "message")
		assert.Equal(t, string(payload), e.msg.String())
	}
}

// A connection failed while the peer keeps sending (invalid UTF-8 here) still
// ends with the close handshake: the peer gets the close frame, not a reset
// that would discard it.
func TestFailedConnectionAnswersTheHandshake(t *testing.T) {
	rec := newRecorder()
	_, url := serveComponent(t, rec)
	c := wstest.DialRaw(t, url, wstest.RawOptions{})
	rec.expect(t, "open")
	b := wstest.AppendFrame(nil, true, false, wstest.OpText, []byte{0xff})
	for range 2000 {
		b = wstest.AppendFrame(b, true, false, wstest.OpText, bytes.Repeat([]byte("x"), 1000))
	}
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(b); wrote <- err }()
	assert.Equal(t, 1007, c.ExpectClose(t))
	require.NoError(t, <-wrote)
	assert.ErrorIs(t, rec.expect(t, "error").err, ratchet.ErrInvalidUTF8)
	rec.expect(t, "close")
}
