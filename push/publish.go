package push

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/replay"
)

// Defaults of the publish handler. Each has an option to change it.
const (
	DefaultMaxBodySize     = 64 << 10         // bytes of a publish request body
	DefaultMaxSkew         = 5 * time.Minute  // how far a signed timestamp may be from the server's clock
	DefaultReplayCacheSize = 1 << 16          // signatures remembered against replays
	DefaultBodyTimeout     = 10 * time.Second // to receive a publish request body
)

// MaxIDLen bounds the optional "id" of a publish request body.
const MaxIDLen = 128

// Publication is one parsed publish request: a message for the subscribers
// of Topic, or for the connections of User. Exactly one of the two is set.
type Publication struct {
	Topic   string
	User    string
	ID      string // the optional client-chosen "id"; not delivered
	Message ratchet.Message
}

// PublishHandler is an http.Handler that lets other processes, in any
// language, publish to a Hub: POST a JSON body, authenticated with an
// HMAC-SHA256 signature (see Sign) or a bearer token. See the package
// documentation for the request and answer formats.
type PublishHandler struct {
	hub       *ratchet.Hub
	secret    []byte
	token     [sha256.Size]byte
	hasToken  bool
	maxBody   int64
	bodyTime  time.Duration
	skew      time.Duration
	cacheSize int
	now       func() time.Time
	authorize func(r *http.Request, p *Publication) error
	replay    *replay.Cache
	empty     []string // options given an empty credential, for NewPublishHandler's panic
}

// PublishOption configures a PublishHandler.
type PublishOption func(*PublishHandler)

// WithSecret enables signed requests, verified with this shared secret
// (HMAC-SHA256, see Sign). Use at least 32 random bytes.
func WithSecret(secret []byte) PublishOption {
	return func(h *PublishHandler) {
		h.secret = append([]byte(nil), secret...)
		if len(secret) == 0 {
			h.empty = append(h.empty, "WithSecret")
		}
	}
}

// WithBearerToken enables requests carrying "Authorization: Bearer <token>",
// the simpler alternative to signatures. The token is sent as is, so use it
// over TLS or loopback only; bearer requests have no replay protection.
func WithBearerToken(token string) PublishOption {
	return func(h *PublishHandler) {
		h.token, h.hasToken = sha256.Sum256([]byte(token)), token != ""
		if token == "" {
			h.empty = append(h.empty, "WithBearerToken")
		}
	}
}

// WithMaxBodySize bounds request bodies; larger ones get 413. Default
// DefaultMaxBodySize; n <= 0 keeps the default.
func WithMaxBodySize(n int64) PublishOption {
	return func(h *PublishHandler) {
		if n > 0 {
			h.maxBody = n
		}
	}
}

// WithBodyTimeout bounds how long a client may take to send a request
// body, counted from when the handler starts reading it; a body not
// received in time gets 408 and the connection is closed. It is a read
// deadline on the connection (http.ResponseController), so it holds on any
// server, and replaces the server's ReadTimeout for this request. Default
// DefaultBodyTimeout; d <= 0 keeps the default.
func WithBodyTimeout(d time.Duration) PublishOption {
	return func(h *PublishHandler) {
		if d > 0 {
			h.bodyTime = d
		}
	}
}

// WithMaxSkew sets how far, in either direction, a signed request's
// timestamp may be from the server's clock; older or newer ones get 401
// stale_timestamp. It is also how long signatures are remembered against
// replays. Default DefaultMaxSkew; values under a second keep the default.
func WithMaxSkew(d time.Duration) PublishOption {
	return func(h *PublishHandler) {
		if d >= time.Second {
			h.skew = d
		}
	}
}

// WithReplayCacheSize bounds how many signatures are remembered against
// replays (about 100 bytes each). When more requests than that arrive
// within the skew window, the oldest are forgotten and requests signed at
// or before their timestamp are refused as stale, so that no replay gets
// through. Default DefaultReplayCacheSize; n <= 0 keeps the default.
func WithReplayCacheSize(n int) PublishOption {
	return func(h *PublishHandler) {
		if n > 0 {
			h.cacheSize = n
		}
	}
}

// WithClock sets the clock the timestamps are checked against; for tests.
func WithClock(now func() time.Time) PublishOption { return func(h *PublishHandler) { h.now = now } }

// WithPublishAuthorize sets a hook that sees each authenticated, well-formed
// request before it is published: an error refuses it with 403 Forbidden,
// or the status of a *ratchet.RejectError. Use it to limit what a client
// may publish where. It must be safe for concurrent use.
func WithPublishAuthorize(f func(r *http.Request, p *Publication) error) PublishOption {
	return func(h *PublishHandler) { h.authorize = f }
}

// NewPublishHandler returns a handler publishing to hub. It panics unless
// WithSecret or WithBearerToken gives it a non-empty credential: a publish
// API open to anyone is never what is meant. The panic names the option
// that got an empty credential, most often read from an environment
// variable that is not set: check it before, and fail with its name.
func NewPublishHandler(hub *ratchet.Hub, opts ...PublishOption) *PublishHandler {
	h := &PublishHandler{
		hub:       hub,
		maxBody:   DefaultMaxBodySize,
		bodyTime:  DefaultBodyTimeout,
		skew:      DefaultMaxSkew,
		cacheSize: DefaultReplayCacheSize,
		now:       time.Now,
	}
	for _, o := range opts {
		o(h)
	}
	if len(h.secret) == 0 && !h.hasToken {
		if len(h.empty) > 0 {
			panic("push: NewPublishHandler: empty credential from " + strings.Join(h.empty, " and ") +
				" (is the variable it is read from set?); a publish API needs a non-empty secret or bearer token")
		}
		panic("push: NewPublishHandler needs WithSecret or WithBearerToken with a non-empty credential")
	}
	h.replay = replay.New(h.cacheSize, h.skew)
	return h
}

// publishResult is the JSON answer to a successful publish.
type publishResult struct {
	Topic     string `json:"topic,omitempty"`
	User      string `json:"user,omitempty"`
	Delivered int    `json:"delivered"`
	// Position is where the message stands in the topic's history (see
	// ratchet.WithHistory); absent for topics without history and users.
	Position string `json:"position,omitempty"`
}

// ServeHTTP handles one publish request. The checks run in this order:
// method (405); the credentials as far as they can be checked without the
// body (401: none, unsupported, malformed, a stale timestamp, a wrong bearer
// token); body size (413) and time (408); the signature against the body
// (401); Content-Type (415); body (400); WithPublishAuthorize (403). Then
// the message is published and the answer is 200 with the number of local
// connections it was queued for, or 503 when the Hub is closed or its
// Broker fails. A refusal before the body has been read closes the
// connection instead of reading the body.
func (h *PublishHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Until the whole body is in, an answer ends the connection: net/http
	// would otherwise read the rest of the body, from a client that may
	// never send it, to reuse the connection, before the answer and after.
	rc := http.NewResponseController(w)
	w.Header().Set("Connection", "close")
	bodyRead := false
	defer func() {
		if !bodyRead {
			_ = rc.SetReadDeadline(time.Unix(1, 0)) // read no more
		}
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST", nil)
		return
	}
	if code, err := h.authenticateHeaders(r); err != nil {
		h.unauthorized(w, code, err)
		return
	}
	body, status, code, err := h.readBody(w, rc, r)
	if err != nil {
		writeError(w, status, code, err.Error(), nil)
		return
	}
	bodyRead = true
	w.Header().Del("Connection")
	if code, err := h.authenticateBody(r, body); err != nil {
		h.unauthorized(w, code, err)
		return
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json", nil)
		return
	}
	p, err := parsePublication(body)
	if err != nil {
		var be *bodyError
		errors.As(err, &be)
		writeError(w, http.StatusBadRequest, be.code, be.msg, be.topic)
		return
	}
	if h.authorize != nil {
		if err := h.authorize(r, &p); err != nil {
			writeReject(w, err, http.StatusForbidden)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), hubTimeout)
	defer cancel()
	var n int
	var pos ratchet.Position
	if p.User != "" {
		n, err = h.hub.PublishToUser(ctx, p.User, p.Message)
	} else {
		pos, n, err = h.hub.PublishPosition(ctx, p.Topic, p.Message)
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "cannot publish", nil)
		return
	}
	writeJSON(w, http.StatusOK, publishResult{Topic: p.Topic, User: p.User, Delivered: n, Position: pos.String()})
}

// readBody reads the body within the size and time limits. It returns the
// status and error code of a refusal with its error.
func (h *PublishHandler) readBody(w http.ResponseWriter, rc *http.ResponseController, r *http.Request) ([]byte, int, string, error) {
	tooLarge := errors.New("request body over the size limit")
	if r.ContentLength > h.maxBody {
		return nil, http.StatusRequestEntityTooLarge, CodeTooLarge, tooLarge
	}
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyTime)) // unsupported: no deadline
	// At the body's end net/http clears the deadline, for its background read.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return body, 0, "", nil
	case errors.As(err, &mbe):
		return nil, http.StatusRequestEntityTooLarge, CodeTooLarge, tooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, http.StatusRequestTimeout, "request_timeout", errors.New("request body not received in time")
	}
	return nil, http.StatusBadRequest, CodeMalformed, errors.New("cannot read the request body")
}

func (h *PublishHandler) unauthorized(w http.ResponseWriter, code string, err error) {
	if h.hasToken {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ratchet push"`)
	}
	writeError(w, http.StatusUnauthorized, code, err.Error(), nil)
}

// signedRequest returns the signature headers of r, and whether it is a
// signed request at all.
func signedRequest(r *http.Request) (ts, sig string, ok bool) {
	ts, sig = r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)
	return ts, sig, ts != "" || sig != ""
}

// authenticateHeaders checks the credentials as far as it can without the
// body, and returns an error code with the error: a bearer token entirely,
// a signed request's timestamp and formats.
func (h *PublishHandler) authenticateHeaders(r *http.Request) (string, error) {
	if ts, sig, ok := signedRequest(r); ok {
		if len(h.secret) == 0 {
			return "unauthorized", errNoSecret
		}
		_, _, err := checkSignedHeaders(ts, sig, h.now(), h.skew)
		return signedCode(err), err
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		tok, ok := cutPrefixFold(auth, "Bearer ")
		if !h.hasToken || !ok {
			return "unauthorized", errors.New("unsupported Authorization scheme")
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !hmac.Equal(sum[:], h.token[:]) {
			return "bad_token", errors.New("bearer token does not match")
		}
		return "", nil
	}
	return "unauthorized", errors.New("missing authentication: sign the request (X-Ratchet-Timestamp, X-Ratchet-Signature) or send a bearer token")
}

// authenticateBody checks a signed request's signature against its body,
// and against replays; authenticateHeaders has checked everything else.
func (h *PublishHandler) authenticateBody(r *http.Request, body []byte) (string, error) {
	if ts, sig, ok := signedRequest(r); ok {
		return h.verifySigned(ts, sig, body)
	}
	return "", nil
}

// verifySigned checks a signed request in full, at one instant: the replay
// check needs the window the timestamp was checked against.
func (h *PublishHandler) verifySigned(tsHeader, sigHeader string, body []byte) (string, error) {
	now := h.now()
	ts, mac, err := verify(h.secret, tsHeader, sigHeader, body, now, h.skew)
	if err == nil {
		switch h.replay.Check(mac, ts, now) {
		case replay.ErrStale:
			err = errStale
		case replay.ErrReplay:
			err = errReplay
		}
	}
	return signedCode(err), err
}

// signedCode returns the error code of a signature verification error.
func signedCode(err error) string {
	switch err {
	case nil:
		return ""
	case errStale:
		return "stale_timestamp"
	case errReplay:
		return "replayed"
	case errBadSignature:
		return "bad_signature"
	}
	return "unauthorized"
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// bodyError is a 400 answer to a malformed body.
type bodyError struct {
	code, msg string
	topic     *string
}

func (e *bodyError) Error() string { return e.msg }

func malformed(msg string) error { return &bodyError{code: CodeMalformed, msg: msg} }

// parsePublication parses a publish request body (see the package
// documentation).
func parsePublication(body []byte) (Publication, error) {
	var p Publication
	fields, err := decodeObject(body, "topic", "user", "data", "binary", "id")
	if err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return p, malformed(shortField(fe))
		}
		return p, malformed("body must be one JSON object")
	}
	str := func(name string) (*string, error) {
		raw, ok := fields[name]
		if !ok {
			return nil, nil
		}
		s, ok := jsonString(raw)
		if !ok {
			return nil, malformed(strconv.Quote(name) + " must be a string")
		}
		return &s, nil
	}
	topic, err := str("topic")
	if err != nil {
		return p, err
	}
	user, err := str("user")
	if err != nil {
		return p, err
	}
	id, err := str("id")
	if err != nil {
		return p, err
	}
	binary := false
	if raw, ok := fields["binary"]; ok {
		switch string(raw) {
		case "true":
			binary = true
		case "false":
		default:
			return p, malformed(`"binary" must be true or false`)
		}
	}
	switch {
	case topic != nil && user != nil:
		return p, malformed(`give "topic" or "user", not both`)
	case topic != nil:
		if !ratchet.ValidTopic(*topic) {
			t := echoTopic(*topic)
			return p, &bodyError{code: CodeInvalidTopic, msg: "invalid topic name", topic: &t}
		}
		p.Topic = *topic
	case user != nil:
		if *user == "" || len(*user) > ratchet.MaxTopicLen {
			return p, malformed(`"user" must be 1 to ` + strconv.Itoa(ratchet.MaxTopicLen) + ` bytes`)
		}
		p.User = *user
	default:
		return p, malformed(`"topic" or "user" is required`)
	}
	if id != nil {
		if len(*id) > MaxIDLen {
			return p, malformed(`"id" is too long`)
		}
		p.ID = *id
	}
	data, ok := fields["data"]
	if !ok || string(data) == "null" {
		return p, malformed(`"data" is required`)
	}
	if s, ok := jsonString(data); ok {
		if binary {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return p, malformed(`"data" must be standard base64 when "binary" is true`)
			}
			p.Message = ratchet.Binary(b)
		} else {
			p.Message = ratchet.Text(s)
		}
		return p, nil
	}
	if binary {
		return p, malformed(`"data" must be a base64 string when "binary" is true`)
	}
	// Any other JSON value is delivered as its compact JSON text.
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil || !utf8.Valid(buf.Bytes()) {
		return p, malformed(`"data" is not valid JSON`)
	}
	p.Message = ratchet.Message{Type: ratchet.MessageText, Data: buf.Bytes()}
	return p, nil
}

// shortField describes a field error for the client, with the client's
// field name shortened.
func shortField(fe *fieldError) string {
	name := strings.ToValidUTF8(fe.field, "\ufffd")
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "") + "…"
	}
	return fe.problem + " " + strconv.Quote(name)
}
