package redis_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ratchetgo/ratchet/broker/redis"
)

// The parser-free decoder of the publish script's envelopes takes the
// common forms, escapes included.
func TestDecodeScriptEnvelope(t *testing.T) {
	for payload, want := range map[string]string{
		`{"position":"k3x9:17","ratchet":1,"type":"text","data":"hello"}`:                         "hello",
		`{"position":"k3x9:17","ratchet":1,"type":"text","data":"{\"a\":\"b\\\/c\",\"n\":1}"}`:    `{"a":"b\/c","n":1}`,
		`{"position":"k3x9:17","ratchet":1,"type":"text","data":"\u00e9\ud83d\ude00 \n\t\u0001"}`: "é😀 \n\t\x01",
		`{"position":"k3x9:17","ratchet":1,"type":"binary","data":"AAEC"}`:                        "\x00\x01\x02",
	} {
		m, pos, ok := redis.DecodeScriptEnvelope(payload)
		if !ok || string(m.Data) != want || pos.String() != "k3x9:17" {
			t.Errorf("%s: %q at %v (%v), want %q", payload, m.Data, pos, ok, want)
		}
	}
}

// Whatever the parser-free decoder accepts, the JSON decoder reads the same
// way.
func FuzzDecodeScriptEnvelope(f *testing.F) {
	for _, data := range []string{"hello", `{"a":"b/c"}`, "é😀\n\x01", "\\", `"`, "\xff"} {
		enc, _ := json.Marshal(data)
		f.Add(`{"position":"k3x9:17","ratchet":1,"type":"text","data":` + string(enc) + `}`)
	}
	f.Add(`{"position":"k3x9:17","ratchet":1,"type":"text","data":"\ud83d\ude00\ud800"}`)
	f.Add(`{"position":"k3x9:17","ratchet":1,"type":"binary","data":"AAE="}`)
	f.Add(`{"position":"k3x9:17","ratchet":1,"type":"text","data":"a\"}`)
	f.Fuzz(func(t *testing.T, payload string) {
		m, pos, ok := redis.DecodeScriptEnvelope(payload)
		if !ok {
			return
		}
		jm, jpos, jok := redis.DecodeEnvelope([]byte(payload))
		if !jok || jpos != pos || jm.Type != m.Type || !bytes.Equal(jm.Data, m.Data) {
			t.Fatalf("%q: fast %v %q at %v; JSON %v %v %q at %v", payload, ok, m.Data, pos, jok, jm.Type, jm.Data, jpos)
		}
	})
}
