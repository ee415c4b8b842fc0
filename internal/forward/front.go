package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// call is a request this node forwards, waiting for its answer.
type call struct {
	frames   chan frame    // Window chunks and the accept, end and a spare
	alive    chan struct{} // a keepalive came (one is enough)
	overflow chan struct{} // closed when the owner sent more than the queue holds
	once     sync.Once
}

// put queues f for the forwarding goroutine, never blocking.
func (c *call) put(f frame) {
	if f.Kind == kindAlive {
		select {
		case c.alive <- struct{}{}:
		default:
		}
		return
	}
	select {
	case c.frames <- f:
	default:
		c.once.Do(func() { close(c.overflow) })
	}
}

// Forward serves r by node owner: it publishes the request to the owner's
// inbox and writes the owner's answer to w. When the owner does not
// accept the request within AcceptTimeout the client gets a 502, when its
// answer stops for Config.Timeout a 504 (or a cut response), each naming
// the node and what failed. A request for this node is served here; after
// Close, a request for another node is answered 503.
func (n *Node) Forward(w http.ResponseWriter, r *http.Request, owner string) {
	if owner == n.id {
		n.cfg.Handler.ServeHTTP(w, r)
		return
	}
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		forwardError(w, http.StatusServiceUnavailable, "forward: node %s is closing: it forwards no more requests", n.id)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, n.cfg.MaxBody+1))
	if err != nil {
		forwardError(w, http.StatusBadRequest, "forward: read the request body: %v", err)
		return
	}
	id := randomID(16)
	c := &call{frames: make(chan frame, Window+3), alive: make(chan struct{}, 1), overflow: make(chan struct{})}
	n.mu.Lock()
	n.calls[id] = c
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.calls, id)
		n.mu.Unlock()
	}()

	ctx := r.Context()
	first := &frame{Kind: kindRequest, ID: id, Method: r.Method, URL: r.URL.RequestURI(), Host: r.Host,
		RemoteAddr: r.RemoteAddr, Header: endToEnd(r.Header)}
	for {
		chunk := body[:min(len(body), ChunkSize)]
		body = body[len(chunk):]
		f := first
		if f == nil {
			f = &frame{Kind: kindBody, ID: id}
		}
		first = nil
		f.Body, f.More = chunk, len(body) > 0
		if err := n.publish(ctx, owner, f); err != nil {
			// The owner may have the frame all the same (a publish cut
			// short by the client going away, say): it must not hold it.
			n.cancel(ctx, owner, id)
			forwardError(w, http.StatusBadGateway, "%v", err)
			return
		}
		if len(body) == 0 {
			break
		}
	}
	if err := n.relay(ctx, w, owner, id, c); err != nil {
		// The owner learns that the client's request is over, whatever
		// the reason, so that it does not hold it for nobody.
		n.cancel(ctx, owner, id)
		if errors.Is(err, errCut) {
			panic(http.ErrAbortHandler) // the client sees a broken response, as from a dead server
		}
	}
}

// cancel tells owner that request id is over, even when ctx, the client's
// request's, is done already.
func (n *Node) cancel(ctx context.Context, owner, id string) {
	_ = n.publish(context.WithoutCancel(ctx), owner, &frame{Kind: kindCancel, ID: id})
}

// errCut ends a forwarded request whose answer had begun: the client's
// response is cut.
var errCut = errors.New("forward: answer cut")

// relay writes the owner's answer to w as its frames come.
func (n *Node) relay(ctx context.Context, w http.ResponseWriter, owner, id string, c *call) error {
	rc := http.NewResponseController(w)
	accepted, begun := false, false
	silence := 3 * n.cfg.Keepalive
	var heard, answered time.Time // the last frame, the last frame of the answer (or the accept)
	timer := time.NewTimer(AcceptTimeout)
	defer timer.Stop()
	rearm := func() {
		timer.Reset(min(time.Until(heard.Add(silence)), time.Until(answered.Add(n.cfg.Timeout))))
	}
	fail := func(status int, format string, args ...any) error {
		if begun {
			return errCut
		}
		forwardError(w, status, format, args...)
		return errors.New("forward: failed")
	}
	var seq uint64
	for {
		var f frame
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.overflow:
			return fail(http.StatusBadGateway, "forward: node %s sent more than %d frames unacknowledged", owner, Window)
		case <-timer.C:
			switch {
			case !accepted:
				return fail(http.StatusBadGateway, "forward: node %s did not accept the request within %v: it is gone, or busy with %d forwarded requests",
					owner, AcceptTimeout, MaxServing)
			case time.Since(heard) >= silence:
				return fail(http.StatusBadGateway, "forward: node %s went silent for %v while serving the request: it is gone", owner, silence)
			}
			return fail(http.StatusGatewayTimeout, "forward: no answer from node %s within %v", owner, n.cfg.Timeout)
		case <-c.alive:
			if accepted {
				heard = time.Now()
				rearm()
			}
			continue
		case f = <-c.frames:
		}
		heard, answered, accepted = time.Now(), time.Now(), true
		rearm()
		if f.Kind == kindAccept {
			continue
		}
		if f.Seq != seq {
			return fail(http.StatusBadGateway, "forward: node %s: answer frame %d, want %d", owner, f.Seq, seq)
		}
		seq++
		if !begun {
			if f.Err != "" {
				return fail(http.StatusBadGateway, "forward: node %s: %s", owner, f.Err)
			}
			for k, v := range f.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(f.Status)
			begun = true
		} else if f.Err != "" {
			return errCut
		}
		var werr error
		if f.WriteFor > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(time.Duration(f.WriteFor) * time.Millisecond))
		}
		if len(f.Body) > 0 {
			_, werr = w.Write(f.Body)
		}
		if werr == nil && (f.Ack || f.End) {
			werr = rc.Flush()
		}
		if f.Ack {
			ack := &frame{Kind: kindAck, ID: id, Seq: f.Seq}
			if werr != nil {
				ack.Err = fmt.Sprintf("write to the client: %v", werr)
			}
			if err := n.publish(ctx, owner, ack); err != nil {
				return errCut
			}
		}
		if werr != nil {
			return errCut
		}
		if f.End {
			return nil
		}
	}
}
