package ratchet

import (
	"net/http"
	"strings"
)

// Route serves component c over WebSocket at path, Ratchet's
// App::route($path, $component, $allowedOrigins).
//
// path is a net/http ServeMux pattern without method or host, so wildcards
// work: with "/rooms/{room}", conn.Request().PathValue("room") reads it. The
// route answers GET requests for the App's httpHost (or WithHost's host);
// other methods get 405, other hosts and paths 404.
//
// allowedOrigins is the origin policy for browsers: []string{"*"} allows any
// page, file:// pages (Origin: null) included; an empty list allows only
// pages served from httpHost (Ratchet's default; any same-host page when
// httpHost is "" or "*"); otherwise host patterns, see WithOrigins.
//
// Like ServeMux, Route panics if the pattern conflicts with one already
// registered.
func (a *App) Route(path string, c MessageComponent, allowedOrigins []string, opts ...RouteOption) *WsServer {
	rc := routeCfg{host: a.httpHost}
	for _, o := range opts {
		o.applyRoute(&rc)
	}
	origins := allowedOrigins
	if len(origins) == 0 && !anyHost(rc.host) {
		origins = []string{rc.host}
	}
	ws := make([]WsOption, 0, len(a.defaults)+len(rc.ws)+1)
	ws = append(append(append(ws, a.defaults...), WithOrigins(origins...), withRouteName(hostPattern(rc.host)+path)), rc.ws...)
	s := NewWsServer(c, ws...)

	a.mu.Lock()
	a.servers = append(a.servers, s)
	a.mu.Unlock()
	a.mux.Handle("GET "+hostPattern(rc.host)+path, s)
	a.nameHost(rc.host)
	return s
}

// Handle registers an ordinary HTTP handler beside the WebSocket routes,
// for pages and APIs. pattern is a ServeMux pattern; without a host it is
// limited to the App's httpHost, like the routes.
//
// A handler with a Shutdown(context.Context) error method (an SSE stream
// handler, a WsServer) is shut down by App.Shutdown too, before the HTTP
// server waits for its requests to end.
func (a *App) Handle(pattern string, h http.Handler) {
	if s, ok := h.(shutdowner); ok {
		a.mu.Lock()
		a.shutdowners = append(a.shutdowners, s)
		a.mu.Unlock()
	}
	method, rest, hasMethod := strings.Cut(pattern, " ")
	if !hasMethod {
		method, rest = "", pattern
	}
	host := a.httpHost
	if rest = strings.TrimSpace(rest); strings.HasPrefix(rest, "/") {
		rest = hostPattern(host) + rest
	} else {
		host, _, _ = strings.Cut(rest, "/")
	}
	if method != "" {
		rest = method + " " + rest
	}
	a.mux.Handle(rest, h)
	a.nameHost(host)
}

// HandleFunc is Handle for a function.
func (a *App) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	a.Handle(pattern, http.HandlerFunc(f))
}

func anyHost(h string) bool { return h == "" || h == "*" }

func hostPattern(h string) string {
	if anyHost(h) {
		return ""
	}
	return strings.ToLower(h)
}
