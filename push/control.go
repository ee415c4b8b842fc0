package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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
}

var (
	errControlTooLarge = errors.New("control message too large")
	errMalformed       = errors.New("malformed control message")
)

// parseControl parses a control message: a JSON object with exactly one
// member, "subscribe" or "unsubscribe", whose value is a string. Messages
// over max bytes are refused before any decoding.
func parseControl(data []byte, max int) (control, error) {
	if len(data) > max {
		return control{}, errControlTooLarge
	}
	var m struct {
		Subscribe   *string `json:"subscribe"`
		Unsubscribe *string `json:"unsubscribe"`
	}
	if err := decodeStrict(data, &m); err != nil {
		return control{}, errMalformed
	}
	switch {
	case m.Subscribe != nil && m.Unsubscribe == nil:
		return control{subscribe: true, topic: *m.Subscribe}, nil
	case m.Unsubscribe != nil && m.Subscribe == nil:
		return control{topic: *m.Unsubscribe}, nil
	}
	return control{}, errMalformed
}

// decodeStrict decodes exactly one JSON object into v: no unknown fields, no
// trailing data.
func decodeStrict(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errMalformed
	}
	return nil
}

// reply is a control reply. Exactly one of its first three fields is set.
type reply struct {
	Subscribed   *string `json:"subscribed,omitempty"`
	Unsubscribed *string `json:"unsubscribed,omitempty"`
	Error        string  `json:"error,omitempty"`
	Topic        *string `json:"topic,omitempty"`
}

func (r reply) encode() []byte {
	b, _ := json.Marshal(r) // cannot fail: strings and pointers to strings
	return b
}
