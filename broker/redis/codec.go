package redis

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

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
	m, _ = topicsubs.Checked(m)
	payload, enveloped := encode(m)
	return payload, !enveloped
}

// Decode returns the message a Redis channel payload carries: the message in
// an envelope, else a text message holding the payload, else (when the
// payload is not valid UTF-8, which a text message must be) a binary one.
func Decode(payload []byte) ratchet.Message {
	m, _ := decodeChecked(string(payload))
	return m
}

// decodeChecked is decode with the UTF-8 check, unreported: for entries
// read from a stream, whose live delivery reported them already.
func decodeChecked(payload string) (ratchet.Message, ratchet.Position) {
	m, pos := decode(payload)
	m, _ = topicsubs.Checked(m)
	return m, pos
}

// decode is Decode, for the string payloads go-redis hands out, with the
// position of a message published with history (zero for any other
// payload), and without the UTF-8 check: the delivery makes it, and reports
// a payload that fails it.
func decode(payload string) (ratchet.Message, ratchet.Position) {
	if m, pos, ok := decodeScriptEnvelope(payload); ok {
		return m, pos
	}
	if len(payload) > 0 && payload[0] == '{' && strings.Contains(payload, `"ratchet"`) {
		if m, pos, ok := decodeEnvelope([]byte(payload)); ok {
			return m, pos
		}
	}
	return ratchet.Message{Type: ratchet.MessageText, Data: []byte(payload)}, ratchet.Position{}
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

// Field sequences of the position envelopes the publish script writes.
const (
	scriptPositionField = `{"position":"`
	scriptTextFields    = `","ratchet":1,"type":"text","data":`
	scriptBinaryFields  = `","ratchet":1,"type":"binary","data":`
)

// decodeScriptEnvelope decodes, without a JSON parser, the position
// envelope as the publish script writes it (fields in its order), which
// every node decodes for every message published with history. It reports
// false for anything else, which decodeEnvelope then reads.
func decodeScriptEnvelope(p string) (ratchet.Message, ratchet.Position, bool) {
	rest, ok := strings.CutPrefix(p, scriptPositionField)
	end := strings.IndexByte(rest, '"')
	if !ok || end < 0 {
		return ratchet.Message{}, ratchet.Position{}, false
	}
	pos, err := ratchet.ParsePosition(rest[:end])
	rest = rest[end:]
	typ := ratchet.MessageText
	if text, ok := strings.CutPrefix(rest, scriptTextFields); ok {
		rest = text
	} else if bin, ok := strings.CutPrefix(rest, scriptBinaryFields); ok {
		rest, typ = bin, ratchet.MessageBinary
	} else {
		return ratchet.Message{}, ratchet.Position{}, false
	}
	if err != nil || pos.IsZero() || len(rest) < 3 || rest[0] != '"' || rest[len(rest)-2:] != `"}` {
		return ratchet.Message{}, ratchet.Position{}, false
	}
	data, ok := unquoteJSON(rest[1 : len(rest)-2])
	if !ok {
		return ratchet.Message{}, ratchet.Position{}, false
	}
	if typ == ratchet.MessageBinary {
		b, err := base64.StdEncoding.DecodeString(string(data))
		if err != nil {
			return ratchet.Message{}, ratchet.Position{}, false
		}
		data = b
	}
	return ratchet.Message{Type: typ, Data: data}, pos, true
}

// unquoteJSON returns the bytes of the JSON string whose content (between
// the quotes) is s. It reports false for content that is not valid JSON
// or not valid UTF-8, which a JSON parser would take with replacements.
func unquoteJSON(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c < 0x20:
			return nil, false
		case c != '\\':
			out = append(out, c)
			continue
		}
		if i++; i == len(s) {
			return nil, false
		}
		switch s[i] {
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return nil, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := hex4(s, i+3)
				if !ok || i+2 >= len(s) || s[i+1:i+3] != `\u` {
					return nil, false
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return nil, false
				}
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, false
		}
	}
	return out, utf8.Valid(out)
}

// hex4 reads the 4 hex digits at s[i:].
func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s[i:i+4], 16, 16)
	return rune(n), err == nil
}
