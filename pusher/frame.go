package pusher

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet"
)

// Limits of presence members, as Pusher's: a member's identity travels to
// every subscriber of its channel, and into the cluster's Presence.
const (
	MaxUserIDLength = 128     // bytes of a user_id (presence channel_data, user sign-in)
	MaxUserInfoSize = 1 << 10 // bytes of a presence member's user_info
)

// Events of the protocol.
const (
	evConnectionEstablished = "pusher:connection_established"
	evError                 = "pusher:error"
	evPing                  = "pusher:ping"
	evPong                  = "pusher:pong"
	evSubscribe             = "pusher:subscribe"
	evUnsubscribe           = "pusher:unsubscribe"
	evSignin                = "pusher:signin"
	evSigninSuccess         = "pusher:signin_success"
	evSubscriptionError     = "pusher:subscription_error"
	evCacheMiss             = "pusher:cache_miss"
	evSubscriptionSucceeded = "pusher_internal:subscription_succeeded"
	evMemberAdded           = "pusher_internal:member_added"
	evMemberRemoved         = "pusher_internal:member_removed"
	clientEventPrefix       = "client-"
)

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, as with encoding/json; U+2028 and U+2029 are escaped so that the
// text is also valid JavaScript.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFrame appends one message to a client:
//
//	{"event":event,"channel":channel,"data":data,"user_id":userID}
//
// data is JSON as is (a string literal for most events); channel and
// user_id are left out when empty, data when nil.
func appendFrame(b []byte, event, channel string, data []byte, userID string) []byte {
	b = append(b, `{"event":`...)
	b = appendJSONString(b, event)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, channel)
	}
	if data != nil {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	if userID != "" {
		b = append(b, `,"user_id":`...)
		b = appendJSONString(b, userID)
	}
	return append(b, '}')
}

// stringFrame is a message whose data is the string data.
func stringFrame(event, channel, data string) []byte {
	return appendFrame(nil, event, channel, appendJSONString(make([]byte, 0, len(data)+2), data), "")
}

// errorFrame is a pusher:error; code 0 is left out.
func errorFrame(code ratchet.StatusCode, message string) []byte {
	d := []byte(`{`)
	if code != 0 {
		d = append(d, `"code":`...)
		d = strconv.AppendInt(d, int64(code), 10)
		d = append(d, ',')
	}
	d = append(d, `"message":`...)
	d = appendJSONString(d, message)
	return appendFrame(nil, evError, "", append(d, '}'), "")
}

// subscriptionErrorFrame refuses a subscription, in the form pusher-js
// hands to the channel's pusher:subscription_error listeners (and Laravel
// Echo to its error callback).
func subscriptionErrorFrame(channel, typ, message string, status int) []byte {
	d := []byte(`{"type":`)
	d = appendJSONString(d, typ)
	d = append(d, `,"error":`...)
	d = appendJSONString(d, message)
	d = append(d, `,"status":`...)
	d = strconv.AppendInt(d, int64(status), 10)
	return appendFrame(nil, evSubscriptionError, channel, append(d, '}'), "")
}

// What travels on a channel's Hub topic when this package publishes it: a
// header, then the frame every subscriber gets, encoded once.
//
//	\x00 'e' <socket_id to leave out, or nothing> \x00 <frame>
//	\x00 't' \x00                  close the receiving connections (4009)
//
// Anything else on the topic (Hub.Publish from Go, the push package, a
// broker) is wrapped into an event named App.HubEvent, once per node.
const (
	pubMarker    = 0x00
	pubEvent     = 'e'
	pubTerminate = 't'
)

// appendEventHeader appends the header of an event publication that every
// subscriber but exclude (a socket_id, or "") gets.
func appendEventHeader(b []byte, exclude string) []byte {
	b = append(b, pubMarker, pubEvent)
	b = append(b, exclude...)
	return append(b, pubMarker)
}

// splitPublication reads a publication of this package: its kind, its
// argument and the frame. ok is false for anything else.
func splitPublication(d []byte) (kind byte, arg, frame []byte, ok bool) {
	if len(d) < 3 || d[0] != pubMarker {
		return 0, nil, nil, false
	}
	i := bytes.IndexByte(d[2:], pubMarker)
	if i < 0 {
		return 0, nil, nil, false
	}
	return d[1], d[2 : 2+i], d[3+i:], true
}

// clientMessage is one message from a client.
type clientMessage struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

var errMalformed = errors.New("pusher: malformed message")

// parseMessage reads a client's message: a JSON object with a non-empty
// string "event", an optional string "channel" and any "data".
func parseMessage(b []byte) (clientMessage, error) {
	var m clientMessage
	if err := json.Unmarshal(b, &m); err != nil || m.Event == "" || !isObject(b) {
		return clientMessage{}, errMalformed
	}
	return m, nil
}

func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// decodeData reads the data of a message into v, an object either as is or
// inside a JSON string (clients send both).
func decodeData(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return errMalformed
		}
		raw = []byte(s)
	}
	if !isObject(raw) || json.Unmarshal(raw, v) != nil {
		return errMalformed
	}
	return nil
}

// subscribeData is the data of pusher:subscribe.
type subscribeData struct {
	Channel     string `json:"channel"`
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data"`
}

// signinData is the data of pusher:signin.
type signinData struct {
	Auth     string `json:"auth"`
	UserData string `json:"user_data"`
}

// member is a presence channel member: its user_id, and the JSON object
// {"user_id":...,"user_info":...} that identifies it in the Presence and is
// the data of its member_added event.
type member struct {
	id      string
	encoded string
}

var errBadMember = errors.New("pusher: channel_data needs a user_id (string or number) and a user_info of at most 1 KiB")

// parseMember reads presence channel data (or signed-in user data, with
// idKey "id"): a JSON object with a user id, a string or a number, and an
// optional user_info.
func parseMember(data, idKey string) (member, error) {
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(data), &fields) != nil || fields == nil {
		return member{}, errBadMember
	}
	id, ok := userID(fields[idKey])
	if !ok {
		return member{}, errBadMember
	}
	b := append([]byte(`{"user_id":`), appendJSONString(nil, id)...)
	if info := bytes.TrimSpace(fields["user_info"]); len(info) > 0 && string(info) != "null" {
		var compact bytes.Buffer
		if len(info) > 4*MaxUserInfoSize || json.Compact(&compact, info) != nil || compact.Len() > MaxUserInfoSize {
			return member{}, errBadMember
		}
		b = append(append(b, `,"user_info":`...), compact.Bytes()...)
	}
	return member{id: id, encoded: string(append(b, '}'))}, nil
}

// userID reads a user id: a non-empty string, or a number as written.
func userID(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	var id string
	switch {
	case len(raw) == 0:
		return "", false
	case raw[0] == '"':
		if json.Unmarshal(raw, &id) != nil {
			return "", false
		}
	default:
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return "", false
		}
		id = n.String()
	}
	return id, id != "" && len(id) <= MaxUserIDLength
}

// decodeMember reads a member's encoded form back: its id and user_info
// (nil without one). ok is false for entries this package did not write.
func decodeMember(encoded string) (id string, info json.RawMessage, ok bool) {
	var m struct {
		UserID   *string         `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	if json.Unmarshal([]byte(encoded), &m) != nil || m.UserID == nil || *m.UserID == "" {
		return "", nil, false
	}
	return *m.UserID, m.UserInfo, true
}
