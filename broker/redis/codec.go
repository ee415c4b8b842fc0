package redis

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/topicsubs"
)

// envelope is the JSON form of a message that cannot travel as a raw
// payload: every binary message, and the rare text message that would
// otherwise be mistaken for an envelope. See the package documentation.
type envelope struct {
	Ratchet int    `json:"ratchet"`
	Type    string `json:"type"`
	Data    string `json:"data"`
}

// envelopeVersion is the value of the "ratchet" field of an envelope.
const envelopeVersion = 1

// Encode returns the Redis channel payload that carries m, in the format
// described in the package documentation: the raw bytes for a text message,
// a JSON envelope for a binary one. Non-Go publishers can produce the same
// payloads; Encode is exported so that tools and tests can too.
func Encode(m ratchet.Message) []byte {
	if m.Type != ratchet.MessageBinary {
		if _, ok := decodeEnvelope(m.Data); !ok {
			return m.Data
		}
		b, _ := json.Marshal(envelope{Ratchet: envelopeVersion, Type: "text", Data: string(m.Data)})
		return b
	}
	b, _ := json.Marshal(envelope{Ratchet: envelopeVersion, Type: "binary", Data: base64.StdEncoding.EncodeToString(m.Data)})
	return b
}

// Decode returns the message a Redis channel payload carries: the message in
// an envelope, else a text message holding the payload, else (when the
// payload is not valid UTF-8, which a text message must be) a binary one.
func Decode(payload []byte) ratchet.Message {
	m, _ := topicsubs.Checked(decode(string(payload)))
	return m
}

// decode is Decode, for the string payloads go-redis hands out, without the
// UTF-8 check: the delivery makes it, and reports a payload that fails it.
func decode(payload string) ratchet.Message {
	if len(payload) > 0 && payload[0] == '{' && strings.Contains(payload, `"ratchet"`) {
		if m, ok := decodeEnvelope([]byte(payload)); ok {
			return m
		}
	}
	return ratchet.Message{Type: ratchet.MessageText, Data: []byte(payload)}
}

// decodeEnvelope reports whether p is an envelope, and its message. Only an
// object with exactly the fields ratchet (= 1), type ("text" or "binary") and
// data (a string) is one, so application JSON passes through as text.
func decodeEnvelope(p []byte) (ratchet.Message, bool) {
	if len(p) < 2 || p[0] != '{' || !bytes.Contains(p, []byte(`"ratchet"`)) {
		return ratchet.Message{}, false
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(p, &raw); err != nil || len(raw) != 3 {
		return ratchet.Message{}, false
	}
	var e envelope
	if json.Unmarshal(raw["ratchet"], &e.Ratchet) != nil || e.Ratchet != envelopeVersion ||
		json.Unmarshal(raw["type"], &e.Type) != nil ||
		raw["data"] == nil || json.Unmarshal(raw["data"], &e.Data) != nil {
		return ratchet.Message{}, false
	}
	switch e.Type {
	case "text":
		return ratchet.Message{Type: ratchet.MessageText, Data: []byte(e.Data)}, true
	case "binary":
		b, err := base64.StdEncoding.DecodeString(e.Data)
		if err != nil {
			return ratchet.Message{}, false
		}
		return ratchet.Message{Type: ratchet.MessageBinary, Data: b}, true
	}
	return ratchet.Message{}, false
}
