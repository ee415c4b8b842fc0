package ratchet

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// keptRequest is what a connection keeps of its HTTP request for
// Conn.Request: the request's strings in one string, and its context and
// TLS state. Kept whole, the request (its struct, URL, header map and one
// allocation per header value) cost an idle connection 0.9 to 1.3 KiB
// more; request rebuilds it on each call.
type keptRequest struct {
	s   string // RemoteAddr first (for RemoteAddr), then see keep; each string length-prefixed
	ctx context.Context
	tls *tls.ConnectionState
}

// Flags in keptRequest.s: booleans of the request, and which of its
// pointers (URL, Header) are not nil.
const (
	keptClose = 1 << iota
	keptURL
	keptUser
	keptPasswordSet
	keptOmitHost
	keptForceQuery
	keptHeader
)

// keep records r; nil is kept as nil.
func (k *keptRequest) keep(r *http.Request) {
	if r == nil {
		return
	}
	bp := keptScratch.Get().(*[]byte)
	e := keptEncoder{b: (*bp)[:0]}
	e.request(r)
	k.s, k.ctx, k.tls = string(e.b), r.Context(), r.TLS // one allocation, of the exact size
	if cap(e.b) <= 16<<10 {
		*bp = e.b
		keptScratch.Put(bp)
	}
}

// keptScratch holds the buffers keep encodes into.
var keptScratch = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// remoteAddr is the request's RemoteAddr.
func (k *keptRequest) remoteAddr() string {
	if k.s == "" {
		return ""
	}
	d := keptDecoder{s: k.s}
	return d.str()
}

// request rebuilds the request that keep recorded; its Body is empty.
func (k *keptRequest) request() *http.Request {
	if k.s == "" {
		return nil
	}
	d := keptDecoder{s: k.s}
	remote, method, uri, proto := d.str(), d.str(), d.str(), d.str()
	r, err := http.NewRequestWithContext(k.ctx, method, "", nil)
	if err != nil { // a method NewRequest refuses, set by a handler
		r, _ = http.NewRequestWithContext(k.ctx, http.MethodGet, "", nil)
	}
	r.Method, r.RemoteAddr, r.RequestURI, r.Proto, r.TLS, r.Body = method, remote, uri, proto, k.tls, http.NoBody
	r.ProtoMajor, r.ProtoMinor = d.num(), d.num()
	r.Host, r.Pattern = d.str(), d.str()
	r.ContentLength = int64(d.num()) - 1
	flags := d.num()
	r.Close = flags&keptClose != 0
	if flags&keptURL == 0 {
		r.URL = nil
	} else {
		u := r.URL
		u.Scheme, u.Opaque = d.str(), d.str()
		if flags&keptUser != 0 {
			name, password := d.str(), d.str()
			if flags&keptPasswordSet != 0 {
				u.User = url.UserPassword(name, password)
			} else {
				u.User = url.User(name)
			}
		}
		u.Host, u.Path, u.RawPath = d.str(), d.str(), d.str()
		u.OmitHost, u.ForceQuery = flags&keptOmitHost != 0, flags&keptForceQuery != 0
		u.RawQuery, u.Fragment, u.RawFragment = d.str(), d.str(), d.str()
	}
	if n := d.num(); n > 0 {
		r.TransferEncoding = make([]string, n)
		for i := range r.TransferEncoding {
			r.TransferEncoding[i] = d.str()
		}
	}
	r.Header = nil
	if flags&keptHeader != 0 {
		keys, values := d.num(), d.num()
		r.Header = make(http.Header, keys)
		all := make([]string, values)
		for range keys {
			key, n := d.str(), d.num()
			vs := all[:n:n] // appending to one key's values must not overwrite the next key's
			all = all[n:]
			for i := range vs {
				vs[i] = d.str()
			}
			r.Header[key] = vs
		}
	}
	for n := d.num(); n > 0; n-- {
		r.SetPathValue(d.str(), d.str())
	}
	return r
}

// keptEncoder writes keptRequest.s.
type keptEncoder struct{ b []byte }

func (e *keptEncoder) num(n int) {
	for ; n >= 0x80; n >>= 7 {
		e.b = append(e.b, byte(n)|0x80)
	}
	e.b = append(e.b, byte(n))
}

func (e *keptEncoder) str(ss ...string) {
	for _, s := range ss {
		e.num(len(s))
		e.b = append(e.b, s...)
	}
}

func (e *keptEncoder) request(r *http.Request) {
	e.str(r.RemoteAddr, r.Method, r.RequestURI, r.Proto)
	e.num(r.ProtoMajor)
	e.num(r.ProtoMinor)
	e.str(r.Host, r.Pattern)
	e.num(int(max(r.ContentLength+1, 0)))
	flags := 0
	if r.Close {
		flags |= keptClose
	}
	u := r.URL
	if u != nil {
		flags |= keptURL
		if u.User != nil {
			flags |= keptUser
		}
		if _, ok := u.User.Password(); ok {
			flags |= keptPasswordSet
		}
		if u.OmitHost {
			flags |= keptOmitHost
		}
		if u.ForceQuery {
			flags |= keptForceQuery
		}
	}
	if r.Header != nil {
		flags |= keptHeader
	}
	e.num(flags)
	if u != nil {
		e.str(u.Scheme, u.Opaque)
		if u.User != nil {
			password, _ := u.User.Password()
			e.str(u.User.Username(), password)
		}
		e.str(u.Host, u.Path, u.RawPath, u.RawQuery, u.Fragment, u.RawFragment)
	}
	e.num(len(r.TransferEncoding))
	e.str(r.TransferEncoding...)
	if r.Header != nil {
		values := 0
		for _, vs := range r.Header {
			values += len(vs)
		}
		e.num(len(r.Header))
		e.num(values)
		for key, vs := range r.Header {
			e.str(key)
			e.num(len(vs))
			e.str(vs...)
		}
	}
	// The values of the pattern's wildcards: the mux keeps them where
	// only PathValue reads them.
	names := 0
	for range wildcards(r.Pattern) {
		names++
	}
	e.num(names)
	for name := range wildcards(r.Pattern) {
		e.str(name, r.PathValue(name))
	}
}

// wildcards yields the names of the wildcards of a ServeMux pattern
// ("{name}" and "{name...}" segments; not "{$}").
func wildcards(pattern string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		if i := strings.IndexByte(pattern, '/'); i >= 0 {
			pattern = pattern[i:] // no method, no host
		}
		for seg := range strings.SplitSeq(pattern, "/") {
			name, ok := strings.CutPrefix(seg, "{")
			if name, ok = strings.CutSuffix(name, "}"); !ok || name == "$" {
				continue
			}
			if name = strings.TrimSuffix(name, "..."); name != "" && !yield(name) {
				return
			}
		}
	}
}

// keptDecoder reads keptRequest.s.
type keptDecoder struct{ s string }

func (d *keptDecoder) num() int {
	n, shift := 0, 0
	for {
		c := d.s[0]
		d.s = d.s[1:]
		n |= int(c&0x7f) << shift
		if c < 0x80 {
			return n
		}
		shift += 7
	}
}

func (d *keptDecoder) str() string {
	n := d.num()
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}
