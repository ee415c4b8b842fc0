// Package forward carries an HTTP request over a ratchet.Broker to the
// node of a cluster that can answer it, and the answer back, so that the
// requests of one HTTP session (Engine.IO long polling, say) may land on
// any node behind a round-robin load balancer, with no sticky sessions.
//
// Each Node subscribes to an inbox topic of its own, Topic(id). The node
// that received the client's request (the front) publishes it in frames to
// the inbox of the node that owns the session (the owner); the owner runs
// its own http.Handler on it and publishes the answer (status, headers,
// body in chunks of ChunkSize) to the front's inbox; the front writes it to
// the client, flushing each chunk, and acknowledges the chunks the owner
// asks about after they were written. An owner's ResponseWriter.Write
// returns only once the front has written its bytes to the client (or
// failed to: Write returns the error), so a handler learns of a response
// that did not reach its client exactly as it would serving the client
// itself.
//
// Nothing waits on a peer without a bound: the owner must accept a request
// within AcceptTimeout (else the front answers 502 naming the node: gone,
// or over MaxServing); while it serves the request it says so every
// Config.Keepalive (else, after three, 502: it went away); the frames of
// an answer must follow one another within Config.Timeout, the longest a
// handler may hold a request (a long poll), else 504. Once the answer has
// begun, a failure cuts the client's response instead. When the client's request goes away, the front tells the owner,
// which cancels the context of the request it serves. The Broker's
// delivery function never blocks: frames go to bounded queues, and a peer
// overflowing them fails its request.
package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ratchetgo/ratchet"
)

// Limits of the forwarding protocol.
const (
	// ChunkSize is the most body bytes one frame carries, well under the
	// payload limits of Redis pub/sub and of NATS (1 MB by default).
	ChunkSize = 64 << 10
	// Window is how many chunks of an answer the owner publishes before it
	// waits for the front to have written them: the front's queue of
	// frames per request holds a window and a few more.
	Window = 16
	// AcceptTimeout bounds the wait for the owner to take a request: a node
	// that is gone answers nothing, and the front says so with a 502.
	AcceptTimeout = 5 * time.Second
	// MaxServing bounds the forwarded requests a node serves at once; more
	// are not accepted (the front answers 502).
	MaxServing = 10_000
	// PublishTimeout bounds one Publish of a frame.
	PublishTimeout = 5 * time.Second
	// DefaultKeepalive is how often an owner tells the front that it is
	// still serving a request (Config.Keepalive): a front that hears
	// nothing of it for three intervals answers 502, the owner being gone.
	DefaultKeepalive = 5 * time.Second
	// IDLen is the length of a node id: 64 random bits, URL-safe base64.
	IDLen = 11
)

// TopicPrefix starts the inbox topic of every node.
const TopicPrefix = "forward."

// Topic returns the inbox topic of node id.
func Topic(id string) string { return TopicPrefix + id }

// ValidID reports whether id has the form of a node id, so that a forged
// session id cannot make a node publish to an arbitrary topic.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Config configures a Node.
type Config struct {
	// Handler answers the requests forwarded to this node.
	Handler http.Handler
	// Timeout is the longest the front waits for the next frame of an
	// answer once the owner accepted the request: the longest a handler
	// holds a request without answering (a long poll), plus a margin.
	Timeout time.Duration
	// MaxBody is the most request body bytes the handler accepts: the front
	// carries at most MaxBody+1 of them, enough for the owner's own limit
	// to see a body over it.
	MaxBody int64
	// Keepalive is how often the owner of a request says it is still
	// serving it; DefaultKeepalive when zero.
	Keepalive time.Duration
}

// Node is one node of a cluster: it forwards requests to other nodes and
// serves those forwarded to it.
type Node struct {
	b   ratchet.Broker
	id  string
	cfg Config
	sub ratchet.Subscription

	mu      sync.Mutex
	calls   map[string]*call   // requests forwarded by this node, by request id
	serving map[string]*served // requests served for other nodes, by front and request id
	closed  bool
	wg      sync.WaitGroup // serve goroutines
}

// New returns a Node with a new random id, subscribed to its inbox on b.
func New(ctx context.Context, b ratchet.Broker, cfg Config) (*Node, error) {
	if cfg.Handler == nil || cfg.Timeout <= 0 || cfg.MaxBody <= 0 {
		return nil, errors.New("forward: Config needs a Handler, a Timeout and a MaxBody")
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	n := &Node{b: b, id: randomID(8), cfg: cfg, calls: make(map[string]*call), serving: make(map[string]*served)}
	sub, err := b.Subscribe(ctx, Topic(n.id), n.deliver)
	if err != nil {
		return nil, fmt.Errorf("forward: subscribe to the inbox %s: %w", Topic(n.id), err)
	}
	n.sub = sub
	return n, nil
}

// ID returns the node's id, which names its inbox.
func (n *Node) ID() string { return n.id }

// Close stops serving: the requests served for other nodes are cancelled
// and waited for (or until ctx is done), and the inbox is unsubscribed.
// Requests being forwarded by this node end on their own timeouts.
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	for _, s := range n.serving {
		s.cancel(errNodeClosed)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("forward: close: requests still being served: %w", ctx.Err())
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PublishTimeout)
	defer cancel()
	if uerr := n.sub.Unsubscribe(uctx); uerr != nil && err == nil {
		err = fmt.Errorf("forward: unsubscribe the inbox: %w", uerr)
	}
	return err
}

// errNodeClosed is the cause of the requests a closing node was serving.
var errNodeClosed = errors.New("forward: the node is closing")

func randomID(bytes int) string {
	b := make([]byte, bytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// Frame kinds.
const (
	kindRequest = "req"    // front → owner: the request's head, and body
	kindBody    = "body"   // front → owner: more body
	kindAck     = "ack"    // front → owner: the answer up to Seq was written (or Err)
	kindCancel  = "cancel" // front → owner: the client's request went away
	kindAccept  = "accept" // owner → front: the request was taken
	kindAlive   = "alive"  // owner → front: still serving it
	kindAnswer  = "answer" // owner → front: status and headers (first), body, end
)

// frame is one message on an inbox: a JSON head, a newline, then body bytes.
type frame struct {
	Kind string `json:"k"`
	ID   string `json:"id"`             // request id, chosen by the front
	From string `json:"from,omitempty"` // the sender's node id

	// Request (kindRequest, kindBody: More when more body follows).
	Method     string      `json:"m,omitempty"`
	URL        string      `json:"u,omitempty"`
	Host       string      `json:"host,omitempty"`
	RemoteAddr string      `json:"ra,omitempty"`
	Header     http.Header `json:"h,omitempty"`
	More       bool        `json:"more,omitempty"`

	// Answer (kindAnswer: Status and Header on the first; Ack asks the
	// front to acknowledge; End is the last; Err says why the owner failed).
	Status   int    `json:"s,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Ack      bool   `json:"ack,omitempty"`
	WriteFor int64  `json:"wf,omitempty"` // ms the front may take writing, with Ack
	End      bool   `json:"end,omitempty"`
	Err      string `json:"err,omitempty"`

	Body []byte `json:"-"`
}

func (f *frame) encode() ratchet.Message {
	head, _ := json.Marshal(f) // only strings, numbers and a header map
	b := make([]byte, 0, len(head)+1+len(f.Body))
	b = append(append(append(b, head...), '\n'), f.Body...)
	return ratchet.Message{Type: ratchet.MessageBinary, Data: b}
}

func decode(m ratchet.Message) (frame, error) {
	var f frame
	head, body, ok := bytes.Cut(m.Data, []byte{'\n'})
	if !ok {
		return f, errors.New("forward: a frame without a head")
	}
	if err := json.Unmarshal(head, &f); err != nil {
		return f, fmt.Errorf("forward: a frame head: %w", err)
	}
	f.Body = body
	return f, nil
}

func (n *Node) publish(ctx context.Context, to string, f *frame) error {
	f.From = n.id
	ctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	if err := n.b.Publish(ctx, Topic(to), f.encode()); err != nil {
		return fmt.Errorf("forward: publish to node %s over the broker: %w", to, err)
	}
	return nil
}

// deliver takes one frame from the inbox. It never blocks: frames go to
// bounded queues, served requests to goroutines of their own.
func (n *Node) deliver(m ratchet.Message) {
	f, err := decode(m)
	if err != nil || !ValidID(f.From) {
		return // not a frame of this package: nobody to answer
	}
	switch f.Kind {
	case kindAccept, kindAlive, kindAnswer:
		n.mu.Lock()
		c := n.calls[f.ID]
		n.mu.Unlock()
		if c != nil {
			c.put(f)
		}
	case kindRequest:
		n.start(f)
	case kindBody, kindAck, kindCancel:
		n.mu.Lock()
		s := n.serving[f.From+"/"+f.ID]
		n.mu.Unlock()
		if s != nil {
			s.put(f)
		}
	}
}

// hopHeaders are the headers of one connection, not carried across.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}

func endToEnd(h http.Header) http.Header {
	h = h.Clone()
	for _, k := range hopHeaders {
		h.Del(k)
	}
	return h
}

// forwardError answers the client of a request that could not be
// forwarded, with a text naming the node and what failed.
func forwardError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, fmt.Sprintf(format, args...), status)
}
