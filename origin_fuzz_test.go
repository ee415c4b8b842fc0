package ratchet

import (
	"net/http/httptest"
	"testing"
)

// FuzzCheckOrigin feeds arbitrary Origin and Host headers to the origin
// policy: it must answer, never panic.
func FuzzCheckOrigin(f *testing.F) {
	for _, seed := range []struct{ origin, host, pattern string }{
		{"http://localhost:8080", "localhost:8080", ""},
		{"https://chat.example.com", "example.com", "*.example.com"},
		{"http://trusted.test:8443", "x", "trusted.test:8443"},
		{"https://secure.test", "x", "https://secure.test"},
		{"::not a url", "x", "["},
		{"http://[::1]:80", "[::1]:80", "*"},
		{"null", "x", "null"},
	} {
		f.Add(seed.origin, seed.host, seed.pattern)
	}
	f.Fuzz(func(t *testing.T, origin, host, pattern string) {
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.Host = host
		r.Header.Set("Origin", origin)
		_ = checkOrigin(r, nil)
		_ = checkOrigin(r, []string{pattern})
		if origin == "" && checkOrigin(r, []string{pattern}) != nil {
			t.Fatal("a request without Origin must pass")
		}
	})
}
