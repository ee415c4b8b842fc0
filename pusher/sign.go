package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ratchetgo/ratchet/internal/replay"
)

// AuthVersion is the only auth_version of the HTTP API.
const AuthVersion = "1.0"

// apiError is an HTTP API error: a status and the text of the answer.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func unauthorized(msg string) *apiError { return &apiError{http.StatusUnauthorized, msg} }

// stringToSign is what an HTTP API request's auth_signature signs: the
// method, the path, and the query parameters but auth_signature sorted by
// key, keys lowercased, values unescaped (several values of one key joined
// by ","):
//
//	POST\n/apps/3/events\nauth_key=278d...&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec36...
func stringToSign(method, path string, query url.Values) string {
	keys := make([]string, 0, len(query))
	lower := make(map[string]string, len(query))
	for k := range query {
		if strings.EqualFold(k, "auth_signature") {
			continue
		}
		lk := strings.ToLower(k)
		if _, dup := lower[lk]; dup {
			lower[lk] += "," + strings.Join(query[k], ",")
			continue
		}
		lower[lk] = strings.Join(query[k], ",")
		keys = append(keys, lk)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(lower[k])
	}
	return b.String()
}

// authenticate checks the signature of an HTTP API request for app a, as
// Pusher's server libraries make it: auth_key is the app's key,
// auth_version 1.0, auth_timestamp within the skew of the server's clock,
// body_md5 the MD5 of the body (required with a body), and auth_signature
// the HMAC-SHA256 of stringToSign with the app's secret, compared in
// constant time. Each signature is accepted once: a replay within the skew
// window is refused, on every node of the cluster. Every refusal is 401 but a malformed query (400).
func (s *Server) authenticate(a *app, r *http.Request, body []byte) *apiError {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &apiError{http.StatusBadRequest, "Malformed query string"}
	}
	if subtle.ConstantTimeCompare([]byte(query.Get("auth_key")), []byte(a.Key)) != 1 {
		return unauthorized("Unknown auth_key")
	}
	if v := query.Get("auth_version"); v != AuthVersion {
		return unauthorized("auth_version must be " + AuthVersion)
	}
	now := s.cfg.now()
	ts, ok := parseTimestamp(query.Get("auth_timestamp"))
	if !ok {
		return unauthorized("auth_timestamp must be Unix time in seconds")
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > s.cfg.maxSkew || -skew > s.cfg.maxSkew {
		return unauthorized("Timestamp expired: auth_timestamp " + strconv.FormatInt(ts, 10) +
			" is not within " + strconv.Itoa(int(s.cfg.maxSkew/time.Second)) + "s of the server time " + strconv.FormatInt(now.Unix(), 10))
	}
	var got [sha256.Size]byte
	sig := query.Get("auth_signature")
	if len(sig) != 2*sha256.Size {
		return unauthorized("auth_signature must be 64 hex digits")
	}
	if _, err := hex.Decode(got[:], []byte(sig)); err != nil {
		return unauthorized("auth_signature must be 64 hex digits")
	}
	m := hmac.New(sha256.New, []byte(a.Secret))
	m.Write([]byte(stringToSign(r.Method, r.URL.Path, query)))
	var want [sha256.Size]byte
	m.Sum(want[:0])
	if !hmac.Equal(got[:], want[:]) {
		return unauthorized("Invalid signature: expected the HMAC-SHA256 hex digest of the method, path and sorted query")
	}
	if md, has := query["body_md5"]; has || len(body) > 0 {
		sum := md5.Sum(body)
		if !has || subtle.ConstantTimeCompare([]byte(strings.ToLower(md[0])), []byte(hex.EncodeToString(sum[:]))) != 1 {
			return unauthorized("body_md5 does not match the body")
		}
	}
	switch s.replay.Check(want, ts, now) {
	case replay.ErrReplay:
		return unauthorized("Request already seen (replay): sign each request anew")
	case replay.ErrStale:
		return unauthorized("Timestamp too old to be checked against replays: sign the request anew")
	}
	s.cluster.seen(r.Context(), a, want, ts)
	return nil
}

// parseTimestamp reads a decimal Unix time, without sign.
func parseTimestamp(s string) (int64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
