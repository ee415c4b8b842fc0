package ratchet

import (
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// The limits below are all off by default: WithMaxConns, WithMaxConnsPerIP,
// WithHandshakeRate, WithMessageRate and Hub's WithMaxSubscriptions each
// turn one on.
//
// A limit set by WithMaxConns, WithMaxConnsPerIP or WithHandshakeRate is
// shared by every server the option value configures: given to NewApp, it
// bounds the whole App; given to App.Route, that route alone. Both can be
// given at once.

// LimitRetryAfter is the Retry-After an upgrade refused for a connection
// limit carries, so that clients back off instead of retrying at once.
const LimitRetryAfter = 5 * time.Second

// ErrMessageRate is what OnError receives when a connection is closed with
// StatusPolicyViolation (1008) for sending faster than WithMessageRate
// allows.
var ErrMessageRate = errors.New("ratchet: inbound message rate exceeded")

// ErrTooManySubscriptions is returned by Hub.Subscribe when the connection
// already has as many topics as WithMaxSubscriptions allows.
var ErrTooManySubscriptions = errors.New("ratchet: too many subscriptions for one connection")

// WithMaxConns bounds the open connections: an upgrade over the limit is
// refused with 503 Service Unavailable and a Retry-After of
// LimitRetryAfter. Given to NewApp, it counts the App's connections on
// every route; given to App.Route or NewWsServer, that server's. Default:
// no limit (n <= 0).
func WithMaxConns(n int) WsOption {
	if n <= 0 {
		return func(*wsConfig) {}
	}
	l := &connLimit{max: int64(n)}
	return func(c *wsConfig) { c.connLimits = append(c.connLimits, l) }
}

// WithMaxConnsPerIP bounds the open connections of one client IP address
// (see WithTrustedProxies): one over the limit is refused with 429 Too Many
// Requests and a Retry-After of LimitRetryAfter. Like WithMaxConns, given to
// NewApp it counts across the App. Default: no limit (n <= 0).
func WithMaxConnsPerIP(n int) WsOption {
	if n <= 0 {
		return func(*wsConfig) {}
	}
	l := &ipConnLimit{max: n, n: make(map[netip.Addr]int)}
	return func(c *wsConfig) { c.ipLimits = append(c.ipLimits, l) }
}

// WithHandshakeRate bounds how often one client IP address may ask for an
// upgrade: r per second on average, in bursts of up to burst. An attempt
// over it is refused with 429 Too Many Requests and a Retry-After saying
// when the next one would pass, before the origin and the Authenticator are
// consulted. Default: no limit (r <= 0 or burst <= 0).
func WithHandshakeRate(r rate.Limit, burst int) WsOption {
	if r <= 0 || burst <= 0 {
		return func(*wsConfig) {}
	}
	l := &ipRateLimit{r: r, burst: burst, m: make(map[netip.Addr]*rate.Limiter)}
	return func(c *wsConfig) { c.handshakeRates = append(c.handshakeRates, l) }
}

// WithMessageRate bounds the messages one connection may send: r per
// second on average, in bursts of up to burst (a token bucket). A
// connection over it is closed with StatusPolicyViolation (1008) and
// OnError receives ErrMessageRate: a client that floods is cut off rather
// than slowed, since its messages would otherwise queue in the kernel and
// hold the component's time. Default: no limit (r <= 0 or burst <= 0).
func WithMessageRate(r rate.Limit, burst int) WsOption {
	return func(c *wsConfig) {
		if r <= 0 || burst <= 0 {
			c.messageRate, c.messageBurst = 0, 0
			return
		}
		c.messageRate, c.messageBurst = r, burst
	}
}

// WithTrustedProxies names the proxies whose X-Forwarded-For or Forwarded
// header tells the client's address, for WithMaxConnsPerIP and
// WithHandshakeRate. A request from one of them is counted against the
// address its proxies saw last that is not itself trusted (the header read
// from the right); from any other peer, against the peer's address.
// Forwarded (RFC 7239) is read when present, X-Forwarded-For otherwise.
// Default: none, so that no client can choose the address it is counted
// against.
func WithTrustedProxies(prefixes ...netip.Prefix) WsOption {
	return func(c *wsConfig) { c.trustedProxies = append([]netip.Prefix(nil), prefixes...) }
}

// connLimit counts open connections against a maximum.
type connLimit struct {
	max int64
	n   atomic.Int64
}

func (l *connLimit) enter() bool {
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *connLimit) leave() { l.n.Add(-1) }

// ipConnLimit counts open connections per client address.
type ipConnLimit struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

func (l *ipConnLimit) enter(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

func (l *ipConnLimit) leave(ip netip.Addr) {
	l.mu.Lock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
	l.mu.Unlock()
}

// ipRateLimit is a token bucket per client address. Buckets that have
// refilled are dropped now and then, so the map holds only recent clients.
type ipRateLimit struct {
	r     rate.Limit
	burst int
	mu    sync.Mutex
	m     map[netip.Addr]*rate.Limiter
	sweep int // sweep when the map grows past this
}

// allow takes a token for ip, or returns how long until one is there.
func (l *ipRateLimit) allow(ip netip.Addr, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= l.sweep {
		for k, lim := range l.m {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
		l.sweep = max(2*len(l.m), 1024)
	}
	lim := l.m[ip]
	if lim == nil {
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[ip] = lim
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	return false, time.Duration(missing / float64(l.r) * float64(time.Second))
}

// admit applies the connection limits to r. It returns a function that
// gives the slots back when the connection ends (noRelease when no limit is set),
// or writes the refusal and returns false.
func (s *WsServer) admit(w http.ResponseWriter, r *http.Request, ip netip.Addr) (release func(), ok bool) {
	cfg := &s.cfg
	if len(cfg.connLimits) == 0 && len(cfg.ipLimits) == 0 {
		return noRelease, true // no closure kept per connection
	}
	var conns []*connLimit
	var ips []*ipConnLimit
	release = func() {
		for _, l := range conns {
			l.leave()
		}
		for _, l := range ips {
			l.leave(ip)
		}
	}
	for _, l := range cfg.connLimits {
		if !l.enter() {
			release()
			refuseLimit(w, http.StatusServiceUnavailable, LimitRetryAfter, "too many connections")
			return nil, false
		}
		conns = append(conns, l)
	}
	for _, l := range cfg.ipLimits {
		if !l.enter(ip) {
			release()
			refuseLimit(w, http.StatusTooManyRequests, LimitRetryAfter, "too many connections from this address")
			return nil, false
		}
		ips = append(ips, l)
	}
	return release, true
}

// noRelease is admit's release when no connection limit is set.
func noRelease() {}

// handshakeAllowed applies WithHandshakeRate to r, writing the refusal.
func (s *WsServer) handshakeAllowed(w http.ResponseWriter, ip netip.Addr) bool {
	now := time.Now()
	for _, l := range s.cfg.handshakeRates {
		if ok, wait := l.allow(ip, now); !ok {
			refuseLimit(w, http.StatusTooManyRequests, wait, "too many connection attempts from this address")
			return false
		}
	}
	return true
}

// refuseLimit answers an upgrade refused for a limit, with a Retry-After
// of at least a second.
func refuseLimit(w http.ResponseWriter, status int, retry time.Duration, msg string) {
	secs := max(int(math.Ceil(retry.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	http.Error(w, msg, status)
}

// clientIP returns the address r is counted against; see
// WithTrustedProxies. The zero Addr when RemoteAddr is not an IP address.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ip := parseHostIP(r.RemoteAddr)
	if !ip.IsValid() || !isTrusted(ip, trusted) {
		return ip
	}
	var hops []string
	if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		for _, v := range fwd {
			for _, elem := range strings.Split(v, ",") {
				for _, pair := range strings.Split(elem, ";") {
					k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
					if strings.EqualFold(k, "for") {
						hops = append(hops, strings.Trim(v, `"`))
					}
				}
			}
		}
	} else {
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := parseHostIP(strings.TrimSpace(hops[i]))
		if !hop.IsValid() {
			break // "unknown", an obfuscated name: trust stops here
		}
		ip = hop
		if !isTrusted(hop, trusted) {
			break
		}
	}
	return ip
}

// parseHostIP parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port".
func parseHostIP(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return ip.Unmap()
	}
	return netip.Addr{}
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
