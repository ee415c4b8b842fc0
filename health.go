package ratchet

import (
	"net/http"
)

// HealthHandler answers a liveness probe (/healthz): 200 "ok" for as long as
// the process serves HTTP at all, shutting down included, so that an
// orchestrator restarts only a process that has stopped answering. Mount it
// with App.Handle:
//
//	app.Handle("/healthz", app.HealthHandler())
func (a *App) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probeAnswer(w, http.StatusOK, "ok")
	})
}

// ReadyHandler answers a readiness probe (/readyz): 200 "ready" while the
// App takes new connections and every broker given that reports its health
// (a Connected() bool method, see Broker) is connected; 503 otherwise, with
// the reason in the body ("shutting down", "broker unavailable").
//
// App.Shutdown turns readiness off first, before it closes any connection
// with 1001, so that a load balancer polling /readyz stops sending clients
// here while the ones connected are told to go away. Mount it with
// App.Handle:
//
//	app.Handle("/readyz", app.ReadyHandler(broker))
func (a *App) ReadyHandler(brokers ...Broker) http.Handler {
	var checks []brokerHealth
	for _, b := range brokers {
		if bh, ok := b.(brokerHealth); ok {
			checks = append(checks, bh)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.draining.Load() {
			probeAnswer(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		for _, bh := range checks {
			if !bh.Connected() {
				probeAnswer(w, http.StatusServiceUnavailable, "broker unavailable")
				return
			}
		}
		probeAnswer(w, http.StatusOK, "ready")
	})
}

// Ready reports whether the App takes new connections: false from the start
// of Shutdown on.
func (a *App) Ready() bool { return !a.draining.Load() }

// probeAnswer writes a short plain-text answer that no cache keeps.
func probeAnswer(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}
