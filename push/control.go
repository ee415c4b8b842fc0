package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"

	"github.com/ratchetgo/ratchet"
)

// Error codes of control replies and of the JSON error bodies of the SSE and
// publish handlers.
const (
	CodeMalformed     = "malformed"       // not a valid control message or request body
	CodeTooLarge      = "too_large"       // over the size limit
	CodeInvalidTopic  = "invalid_topic"   // empty, reserved (@...), not UTF-8 or over 256 bytes
	CodeForbidden     = "forbidden"       // refused by the Authorizer
	CodeTooManyTopics = "too_many_topics" // over WithMaxTopics
	CodeUnavailable   = "unavailable"     // the Hub or its Broker failed
)

// control is one parsed control message.
type control struct {
	subscribe bool // false: unsubscribe
	topic     string
	since     ratchet.Position // subscribe only: resume after it
}

var (
	errControlTooLarge = errors.New("control message too large")
	errMalformed       = errors.New("malformed control message")
)

// parseControl parses a control message: a JSON object with one member,
// "subscribe" or "unsubscribe", whose value is a string, and with
// "subscribe" an optional "since" position. Messages over max bytes are
// refused before any decoding.
func parseControl(data []byte, max int) (control, error) {
	if len(data) > max {
		return control{}, errControlTooLarge
	}
	fields, err := decodeObject(data, "subscribe", "unsubscribe", "since")
	if err != nil {
		return control{}, errMalformed
	}
	var c control
	sub, isSub := fields["subscribe"]
	unsub, isUnsub := fields["unsubscribe"]
	rawSince, hasSince := fields["since"]
	var ok bool
	switch {
	case isSub && !isUnsub:
		c.subscribe = true
		c.topic, ok = jsonString(sub)
	case isUnsub && !isSub && !hasSince:
		c.topic, ok = jsonString(unsub)
	}
	if !ok {
		return control{}, errMalformed
	}
	if hasSince {
		s, ok := jsonString(rawSince)
		if !ok {
			return control{}, errMalformed
		}
		if c.since, err = ratchet.ParsePosition(s); err != nil {
			return control{}, errMalformed
		}
	}
	return c, nil
}

// fieldError is a problem with one member of a JSON object.
type fieldError struct {
	field, problem string
}

func (e *fieldError) Error() string { return e.problem + " " + strconv.Quote(e.field) }

// decodeObject decodes exactly one JSON object whose member names are among
// allowed, matched exactly (encoding/json alone would match them without
// regard to case) and each present at most once, followed by nothing but
// white space. It returns the raw values by name.
func decodeObject(data []byte, allowed ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errMalformed
	}
	fields := make(map[string]json.RawMessage, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errMalformed
		}
		key, _ := tok.(string)
		if !slices.Contains(allowed, key) {
			return nil, &fieldError{key, "unknown field"}
		}
		if _, dup := fields[key]; dup {
			return nil, &fieldError{key, "duplicate field"}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errMalformed
		}
		fields[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, errMalformed
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errMalformed
	}
	return fields, nil
}

// jsonString decodes raw if it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

// reply is a control reply. Exactly one of its first three fields is set.
type reply struct {
	Subscribed   *string `json:"subscribed,omitempty"`
	Unsubscribed *string `json:"unsubscribed,omitempty"`
	Error        string  `json:"error,omitempty"`
	Topic        *string `json:"topic,omitempty"`
	// With "subscribed", for a topic with history: the position the
	// subscription continues from, and whether what the client missed
	// since the position it gave was recovered (only when it gave one).
	Position  string `json:"position,omitempty"`
	Recovered *bool  `json:"recovered,omitempty"`
}

func (r reply) encode() []byte {
	b, _ := json.Marshal(r) // cannot fail: strings and pointers to strings
	return b
}
