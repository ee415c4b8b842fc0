package redis

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet"
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
	p, _ := encode(m)
	return p
}

// encode is Encode, and reports whether the payload is an envelope.
func encode(m ratchet.Message) (payload []byte, enveloped bool) {
	if m.Type != ratchet.MessageBinary {
		if _, _, ok := decodeEnvelope(m.Data); !ok {
			return m.Data, false
		}
		b, _ := json.Marshal(envelope{Ratchet: envelopeVersion, Type: "text", Data: string(m.Data)})
		return b, true
	}
	b, _ := json.Marshal(envelope{Ratchet: envelopeVersion, Type: "binary", Data: base64.StdEncoding.EncodeToString(m.Data)})
	return b, true
}

// encodeHistory returns the payload a message published with history is
// kept as in its stream, and whether it is raw text, which the publish
// script puts in an envelope with the position. A text that is not valid
// UTF-8 goes as binary, as Decode would deliver its raw payload.
func encodeHistory(m ratchet.Message) (payload []byte, raw bool) {
	if m.Type != ratchet.MessageBinary && !utf8.Valid(m.Data) {
		m.Type = ratchet.MessageBinary
	}
	payload, enveloped := encode(m)
	return payload, !enveloped
}

// Decode returns the message a Redis channel payload carries: the message in
// an envelope, else a text message holding the payload, else (when the
// payload is not valid UTF-8, which a text message must be) a binary one.
func Decode(payload []byte) ratchet.Message {
	m, _ := decode(payload)
	return m
}

// decode is Decode, with the position of a message published with history
// (zero for any other payload).
func decode(payload []byte) (ratchet.Message, ratchet.Position) {
	if m, pos, ok := decodeEnvelope(payload); ok {
		return m, pos
	}
	if utf8.Valid(payload) {
		return ratchet.Message{Type: ratchet.MessageText, Data: payload}, ratchet.Position{}
	}
	return ratchet.Message{Type: ratchet.MessageBinary, Data: payload}, ratchet.Position{}
}

// decodeString is decode for the string payloads go-redis hands out.
func decodeString(payload string) (ratchet.Message, ratchet.Position) {
	if len(payload) > 0 && payload[0] == '{' && strings.Contains(payload, `"ratchet"`) {
		return decode([]byte(payload))
	}
	if utf8.ValidString(payload) {
		return ratchet.Message{Type: ratchet.MessageText, Data: []byte(payload)}, ratchet.Position{}
	}
	return ratchet.Message{Type: ratchet.MessageBinary, Data: []byte(payload)}, ratchet.Position{}
}

// decodeEnvelope reports whether p is an envelope, and its message and
// position. Only an object with exactly the fields ratchet (= 1), type
// ("text" or "binary") and data (a string), and optionally position (a
// ratchet.Position), is one, so application JSON passes through as text.
func decodeEnvelope(p []byte) (ratchet.Message, ratchet.Position, bool) {
	var none ratchet.Position
	if len(p) < 2 || p[0] != '{' || !bytes.Contains(p, []byte(`"ratchet"`)) {
		return ratchet.Message{}, none, false
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(p, &raw); err != nil || len(raw) < 3 || len(raw) > 4 {
		return ratchet.Message{}, none, false
	}
	var pos ratchet.Position
	if len(raw) == 4 {
		var s string
		var err error
		if raw["position"] == nil || json.Unmarshal(raw["position"], &s) != nil || s == "" {
			return ratchet.Message{}, none, false
		}
		if pos, err = ratchet.ParsePosition(s); err != nil {
			return ratchet.Message{}, none, false
		}
	}
	var e envelope
	if json.Unmarshal(raw["ratchet"], &e.Ratchet) != nil || e.Ratchet != envelopeVersion ||
		json.Unmarshal(raw["type"], &e.Type) != nil ||
		raw["data"] == nil || json.Unmarshal(raw["data"], &e.Data) != nil {
		return ratchet.Message{}, none, false
	}
	switch e.Type {
	case "text":
		return ratchet.Message{Type: ratchet.MessageText, Data: []byte(e.Data)}, pos, true
	case "binary":
		b, err := base64.StdEncoding.DecodeString(e.Data)
		if err != nil {
			return ratchet.Message{}, none, false
		}
		return ratchet.Message{Type: ratchet.MessageBinary, Data: b}, pos, true
	}
	return ratchet.Message{}, none, false
}
