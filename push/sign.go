package push

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// The headers of a signed publish request, and the prefix of the signature.
const (
	HeaderTimestamp = "X-Ratchet-Timestamp" // Unix time in seconds, decimal
	HeaderSignature = "X-Ratchet-Signature" // "sha256=" + lowercase hex HMAC
	SignaturePrefix = "sha256="
)

// Sign returns the values of the X-Ratchet-Timestamp and X-Ratchet-Signature
// headers for a publish request with the given body, sent at t:
//
//	timestamp = decimal Unix seconds of t
//	signature = "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
//
// The body must be sent byte for byte as signed.
func Sign(secret, body []byte, t time.Time) (timestamp, signature string) {
	timestamp = strconv.FormatInt(t.Unix(), 10)
	mac := computeMAC(secret, timestamp, body)
	return timestamp, SignaturePrefix + hex.EncodeToString(mac[:])
}

func computeMAC(secret []byte, timestamp string, body []byte) (sum [sha256.Size]byte) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	m.Sum(sum[:0])
	return sum
}

// Signature verification errors; their text is sent in the JSON error body.
var (
	errNoSecret        = errors.New("signed requests are not enabled on this server")
	errBadTimestamp    = errors.New("X-Ratchet-Timestamp must be Unix time in seconds")
	errBadSignatureFmt = errors.New(`X-Ratchet-Signature must be "sha256=" and 64 hex digits`)
	errBadSignature    = errors.New("signature does not match")
	errStale           = errors.New("timestamp outside the allowed window; check the clock")
	errReplay          = errors.New("request already seen (replay); sign each request anew")
)

// verify checks a signed request: its headers first (checkSignedHeaders),
// then the MAC, compared in constant time. It returns the timestamp and the
// MAC, the key of the replay check.
func verify(secret []byte, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) (int64, [sha256.Size]byte, error) {
	var mac [sha256.Size]byte
	ts, got, err := checkSignedHeaders(tsHeader, sigHeader, now, window)
	if err != nil {
		return 0, mac, err
	}
	mac = computeMAC(secret, tsHeader, body)
	if !hmac.Equal(got[:], mac[:]) {
		return 0, mac, errBadSignature
	}
	return ts, mac, nil
}

// checkSignedHeaders checks what needs no body: the timestamp's format and
// age, and the signature's format. It returns the timestamp and the
// signature's bytes.
func checkSignedHeaders(tsHeader, sigHeader string, now time.Time, window time.Duration) (int64, [sha256.Size]byte, error) {
	var sig [sha256.Size]byte
	ts, ok := parseTimestamp(tsHeader)
	if !ok {
		return 0, sig, errBadTimestamp
	}
	if age := now.Unix() - ts; age > int64(window/time.Second) || -age > int64(window/time.Second) {
		return 0, sig, errStale
	}
	hexSig, ok := cutPrefixFold(sigHeader, SignaturePrefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return 0, sig, errBadSignatureFmt
	}
	if _, err := hex.Decode(sig[:], []byte(hexSig)); err != nil {
		return 0, sig, errBadSignatureFmt
	}
	return ts, sig, nil
}

// parseTimestamp accepts 1 to 18 decimal digits, no sign, no spaces.
func parseTimestamp(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !equalFoldASCII(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
