package push

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/ratchetgo/ratchet"
)

// errorBody is the JSON body of every error answer of the SSE and publish
// handlers.
type errorBody struct {
	Error   string  `json:"error"`
	Message string  `json:"message"`
	Topic   *string `json:"topic,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message string, topic *string) {
	writeJSON(w, status, errorBody{Error: code, Message: message, Topic: topic})
}

// writeReject answers a refusal by a hook: a *ratchet.RejectError chooses the
// status and message; other errors get status with its status text. The
// text of other errors is not sent: it may hold internal details.
func writeReject(w http.ResponseWriter, err error, status int, topic ...string) {
	msg := http.StatusText(status)
	var re *ratchet.RejectError
	if errors.As(err, &re) && re.Status >= 400 && re.Status < 600 {
		status, msg = re.Status, re.Error()
	}
	var t *string
	if len(topic) > 0 {
		t = &topic[0]
	}
	writeError(w, status, codeFor(status), msg, t)
}

// codeFor returns the error code of a status: "forbidden" for 403,
// "too_many_requests" for 429, and so on.
func codeFor(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "error"
	}
	return strings.ToLower(strings.NewReplacer(" ", "_", "-", "_", "'", "").Replace(text))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
