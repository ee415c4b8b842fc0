// Package ops is what the example commands share to be run in production:
// /metrics, /healthz and /readyz, and the connection limits as flags, so that
// an operator can try them before wiring them into a program.
package ops

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/metrics"
)

// Flags are the operations flags of an example command.
type Flags struct {
	MetricsAddr    *string
	MaxConns       *int
	MaxConnsPerIP  *int
	HandshakeRate  *float64
	MessageRate    *float64
	TrustedProxies *string
}

// Define defines the flags on flag.CommandLine; call it before flag.Parse.
func Define() *Flags {
	return &Flags{
		MetricsAddr:    flag.String("metrics-addr", "", `serve /metrics, /healthz and /readyz on this address instead of -addr (e.g. "127.0.0.1:9090")`),
		MaxConns:       flag.Int("max-conns", 0, "most connections open at once (0: no limit); over it, 503 with Retry-After"),
		MaxConnsPerIP:  flag.Int("max-conns-per-ip", 0, "most connections open at once from one client IP (0: no limit); over it, 429"),
		HandshakeRate:  flag.Float64("handshake-rate", 0, "connection attempts per second per client IP, in bursts of up to 10 (0: no limit); over it, 429"),
		MessageRate:    flag.Float64("message-rate", 0, "messages per second one connection may send, in bursts of up to 10 (0: no limit); over it, close 1008"),
		TrustedProxies: flag.String("trusted-proxies", "", `comma-separated CIDRs of proxies whose X-Forwarded-For/Forwarded is believed (e.g. "10.0.0.0/8")`),
	}
}

// burst is the burst of the rate flags.
const burst = 10

// Ops is what Setup built: the Metrics to observe a Hub with, and the App
// options to pass to NewApp.
type Ops struct {
	Metrics  *metrics.Metrics
	Options  []ratchet.Option
	registry *prometheus.Registry
	addr     string
}

// Setup builds the metrics registry (with the Go and process collectors) and
// the App options the flags ask for.
func (f *Flags) Setup() (*Ops, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o := &Ops{Metrics: metrics.New(reg), registry: reg, addr: *f.MetricsAddr}
	o.Options = append(o.Options, ratchet.WithObserver(o.Metrics),
		ratchet.WithMaxConns(*f.MaxConns), ratchet.WithMaxConnsPerIP(*f.MaxConnsPerIP),
		ratchet.WithHandshakeRate(rate.Limit(*f.HandshakeRate), burst),
		ratchet.WithMessageRate(rate.Limit(*f.MessageRate), burst))
	if *f.TrustedProxies != "" {
		var prefixes []netip.Prefix
		for _, s := range strings.Split(*f.TrustedProxies, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("-trusted-proxies: %w", err)
			}
			prefixes = append(prefixes, p)
		}
		o.Options = append(o.Options, ratchet.WithTrustedProxies(prefixes...))
	}
	return o, nil
}

// Mount serves /metrics, /healthz and /readyz (ready while app is and every
// broker is connected): on app itself, or, with -metrics-addr, on a server
// of their own started here, whose error is logged. It returns that
// server, or nil.
func (o *Ops) Mount(app *ratchet.App, brokers ...ratchet.Broker) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(o.registry, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", app.HealthHandler())
	mux.Handle("/readyz", app.ReadyHandler(brokers...))
	if o.addr == "" {
		app.Handle("/metrics", mux)
		app.Handle("/healthz", mux)
		app.Handle("/readyz", mux)
		return nil, nil
	}
	l, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux}
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	fmt.Printf("metrics and probes on http://%s/metrics, /healthz, /readyz\n", l.Addr())
	return srv, nil
}
