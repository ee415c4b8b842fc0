package push

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/ratchetgo/ratchet"
)

// CodeInvalidSince is the error code for a since parameter that is not a
// position (or, for SSE, a cursor) of the topics asked for.
const CodeInvalidSince = "invalid_since"

// RecoveryHeader is the response header of an SSE stream that was asked to
// resume (Last-Event-ID or ?since=): RecoveryRecovered when every missed
// message follows, RecoveryReset when the missed messages of at least one
// topic could not be recovered (an event of type reset says which).
const (
	RecoveryHeader    = "Ratchet-Recovery"
	RecoveryRecovered = "recovered"
	RecoveryReset     = "reset"
)

// cursorSep separates the positions of a cursor; positions never hold it.
const cursorSep = ","

var errBadCursor = errors.New("malformed cursor")

// appendCursor appends the cursor of a stream: the position of each of its
// topics, in the order of its ?topic= parameters, separated by commas (empty
// for a topic without history). A stream of one topic has the topic's
// position as its cursor.
func appendCursor(b []byte, cursor []ratchet.Position) []byte {
	for i, p := range cursor {
		if i > 0 {
			b = append(b, cursorSep...)
		}
		b, _ = p.AppendText(b)
	}
	return b
}

// parseCursor reads a cursor of n topics.
func parseCursor(s string, n int) ([]ratchet.Position, error) {
	parts := strings.Split(s, cursorSep)
	if len(parts) != n {
		return nil, errBadCursor
	}
	out := make([]ratchet.Position, n)
	for i, part := range parts {
		p, err := ratchet.ParsePosition(part)
		if err != nil {
			return nil, errBadCursor
		}
		out[i] = p
	}
	return out, nil
}

func appendJSONString(b []byte, s string) []byte {
	enc, _ := json.Marshal(s) // a string always encodes
	return append(b, enc...)
}
