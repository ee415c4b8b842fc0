package ops_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/examples/internal/ops"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func flags(metricsAddr, proxies string) *ops.Flags {
	zero, rate := 0, 0.0
	return &ops.Flags{MetricsAddr: &metricsAddr, MaxConns: &zero, MaxConnsPerIP: &zero,
		HandshakeRate: &rate, MessageRate: &rate, TrustedProxies: &proxies}
}

// The probes and /metrics answer on the App, or on -metrics-addr.
func TestMount(t *testing.T) {
	for _, metricsAddr := range []string{"", "127.0.0.1:0"} {
		o, err := flags(metricsAddr, "10.0.0.0/8").Setup()
		if err != nil {
			t.Fatal(err)
		}
		app := ratchet.NewApp("", 0, o.Options...)
		srv, err := o.Mount(app)
		if err != nil {
			t.Fatal(err)
		}
		base := ""
		if srv == nil {
			hs := httptest.NewServer(app)
			defer hs.Close()
			base = hs.URL
		} else {
			hs := httptest.NewServer(srv.Handler)
			defer hs.Close()
			base = hs.URL
			_ = srv.Shutdown(context.Background())
		}
		if code, body := get(t, base+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ready" {
			t.Errorf("%q: /readyz %d %q", metricsAddr, code, body)
		}
		if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("%q: /healthz %d", metricsAddr, code)
		}
		if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("%q: /metrics %d", metricsAddr, code)
		}
	}
	if _, err := flags("", "not-a-cidr").Setup(); err == nil {
		t.Error("a malformed -trusted-proxies was accepted")
	}
}
