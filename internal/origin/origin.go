// Package origin holds the browser origin policy shared by the WebSocket
// server and the other transports (ratchet.WithOrigins).
package origin

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
)

// Check applies the origin policy of ratchet.WithOrigins to r: nil when
// r may connect, an error saying why not otherwise.
func Check(r *http.Request, patterns []string) error {
	o := r.Header.Get("Origin")
	if o == "" || slices.Contains(patterns, "*") {
		return nil
	}
	if o == opaqueOrigin {
		if slices.ContainsFunc(patterns, func(p string) bool { return strings.EqualFold(p, opaqueOrigin) }) {
			return nil
		}
		return ErrNotAllowed
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return errors.New("ratchet: malformed Origin header")
	}
	if len(patterns) == 0 {
		if strings.EqualFold(u.Host, r.Host) {
			return nil
		}
		return ErrNotAllowed
	}
	for _, p := range patterns {
		if strings.EqualFold(p, opaqueOrigin) {
			continue // not a host name
		}
		target := u.Hostname()
		switch {
		case strings.Contains(p, "://"):
			target = u.Scheme + "://" + u.Host
		case strings.Contains(p, ":"):
			target = u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return ErrNotAllowed
}

// opaqueOrigin is the Origin a browser sends for a page without an origin
// of its own: a file:// page, a sandboxed frame, a data: URL (RFC 6454 §7.3).
const opaqueOrigin = "null"

// ErrNotAllowed is the error of a browser origin the policy does not list.
var ErrNotAllowed = errors.New("ratchet: origin not allowed")
