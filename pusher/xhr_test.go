package pusher_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/pusher"
)

// httpOpts are short timings, so that the scenarios see several heartbeats
// (polls) and the end of a session within a second or two.
var httpOpts = pusher.WithHTTPTransports(pusher.HTTPTransports{Heartbeat: 200 * time.Millisecond, SessionTimeout: 500 * time.Millisecond})

// pusher-js 8.6.0 with only its HTTP fallback enabled, each transport in
// turn: see testdata/js/xhr.mjs. Each session ends with exactly one
// OnClose: the app's connection count comes back to 0, not below.
func TestPusherJSOverHTTP(t *testing.T) {
	node := needNode(t)
	for _, transport := range []string{"xhr_streaming", "xhr_polling"} {
		t.Run(transport, func(t *testing.T) {
			n := single(t, nil, httpOpts)
			runNode(t, node, "xhr.mjs", []string{"TRANSPORT=" + transport, "QUIET_MS=1200"}, n)
			requireNoConns(t, n)
		})
	}
}

// requireNoConns waits until every connection of n has been through
// OnClose, once: the count of its app never goes below 0.
func requireNoConns(t *testing.T, n *node) {
	t.Helper()
	require.Eventually(t, func() bool {
		return n.srv.Len() == 0 && n.srv.Stats().Apps[0].Conns <= 0
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 0, n.srv.Stats().Apps[0].Conns, "one OnClose per connection")
}
