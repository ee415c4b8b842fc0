package pusher

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratchetgo/ratchet"
)

// component is the ratchet.MessageComponent of a Server's WebSocket side.
type component struct{ s *Server }

// conn is one Pusher connection. It wraps the WebSocket connection for the
// Hub: as a ratchet.PublicationSender it gets every publication of its
// channels and turns it into what its client is to see, without encoding
// anything per recipient. Its User is always "" so that the Hub records no
// presence for it; presence channels record their members themselves.
//
// Fields after the timers are touched by the connection's callbacks only,
// which run one at a time.
type conn struct {
	ratchet.Conn
	s        *Server
	a        *app
	socketID string

	active   atomic.Bool // the client sent something since the last activity check
	pinged   atomic.Bool // a pusher:ping awaits its answer
	signedIn atomic.Bool
	activity atomic.Pointer[time.Timer] // the callback of a timer may run before its creator has stored it
	signin   atomic.Pointer[time.Timer]

	subs   map[string]*subscription // by channel
	user   *member                  // set by pusher:signin
	bucket tokenBucket              // client events
}

// subscription is one channel of a connection.
type subscription struct {
	kind     kind
	presence *presenceState // presence channels
	member   member         // presence channels
}

// conn returns the Pusher connection of rc, nil for one refused in OnOpen.
// A map of the Server rather than rc.Set: a value map per connection costs
// more memory than an entry here.
func (s *Server) conn(rc ratchet.Conn) *conn {
	s.byConnMu.RLock()
	defer s.byConnMu.RUnlock()
	return s.byConn[rc]
}

// User implements ratchet.Conn: "" (see conn).
func (c *conn) User() string { return "" }

// errExcluded: the publication leaves this connection out (socket_id).
var errExcluded = errors.New("pusher: excluded by socket_id")

// SendPublication implements ratchet.PublicationSender: it sends the frame
// of an event publication unless it excludes this connection, closes the
// connection for a terminate publication, and wraps anything else as an
// App.HubEvent event (once per node, see app.wrap).
func (c *conn) SendPublication(p ratchet.Publication) error {
	kind, arg, frame, ok := splitPublication(p.Message.Data)
	switch {
	case !ok:
		if frame = c.a.wrap(p); frame == nil {
			return errExcluded
		}
	case kind == pubEvent:
		if len(arg) > 0 && string(arg) == c.socketID {
			return errExcluded
		}
	case kind == pubTerminate:
		c.refuse(CodeUnauthorized, "Connection terminated by the app")
		return nil
	default:
		return errExcluded
	}
	return c.Conn.Send(ratchet.Message{Type: ratchet.MessageText, Data: frame})
}

// send sends one frame.
func (c *conn) send(frame []byte) {
	_ = c.Conn.Send(ratchet.Message{Type: ratchet.MessageText, Data: frame})
}

func (c *conn) sendError(code ratchet.StatusCode, message string) { c.send(errorFrame(code, message)) }

// refuse ends the connection the Pusher way: a pusher:error, then the
// close code.
func (c *conn) refuse(code ratchet.StatusCode, message string) { refuse(c.Conn, code, message) }

func refuse(rc ratchet.Conn, code ratchet.StatusCode, message string) {
	_ = rc.Send(ratchet.Message{Type: ratchet.MessageText, Data: errorFrame(code, message)})
	_ = rc.Close(code, message)
}

// rawFrame is a Hub message wrapped as an event, kept for the other
// recipients of the same publication.
type rawFrame struct {
	topic string
	data  []byte
	once  sync.Once
	frame []byte
}

// wrap returns the event frame of a message published on a channel's topic
// by other means than this package: event App.HubEvent, the message as
// data (base64 for binary messages). Messages to every connection of the
// Hub (Hub.Broadcast) become events without a channel, which pusher-js
// hands to pusher.bind; nil means the topic is not one of the app's. The
// Hub hands a publication to its recipients before the next one of the
// topic, so remembering the last one encodes it once per node.
func (a *app) wrap(p ratchet.Publication) []byte {
	r := a.raw.Load()
	if r == nil || r.topic != p.Topic || !sameBytes(r.data, p.Message.Data) {
		fresh := &rawFrame{topic: p.Topic, data: p.Message.Data}
		if !a.raw.CompareAndSwap(r, fresh) {
			if r = a.raw.Load(); r == nil || r.topic != p.Topic || !sameBytes(r.data, p.Message.Data) {
				r = fresh // another topic's publication meanwhile: encode for this recipient
			}
		} else {
			r = fresh
		}
	}
	r.once.Do(func() { r.frame = a.encodeRaw(p) })
	return r.frame
}

func (a *app) encodeRaw(p ratchet.Publication) []byte {
	channel, ok := strings.CutPrefix(p.Topic, a.TopicPrefix)
	switch {
	case strings.HasPrefix(p.Topic, ratchet.ReservedTopicPrefix):
		channel = ""
	case !ok || !ValidChannelName(channel):
		return nil
	}
	var data []byte
	if p.Message.Type == ratchet.MessageBinary {
		data = append(data, '"')
		data = base64.StdEncoding.AppendEncode(data, p.Message.Data)
		data = append(data, '"')
	} else {
		data = appendJSONString(nil, string(p.Message.Data))
	}
	return appendFrame(nil, a.HubEvent, channel, data, "")
}

// sameBytes reports whether a and b are the same slice, not equal contents.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// OnOpen admits a connection: the server must not be shutting down (4200),
// the protocol version must be one it speaks (4006, 4007), the app key
// known (4001) and the app under its connection cap (4100). It then sends
// pusher:connection_established.
func (cp component) OnOpen(rc ratchet.Conn) {
	s := cp.s
	if s.closing.Load() {
		refuse(rc, CodeReconnect, "Server is shutting down. Please reconnect.")
		return
	}
	r := rc.Request()
	if v := r.URL.Query().Get("protocol"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			refuse(rc, CodeInvalidVersion, "Invalid protocol version "+strconv.Quote(v))
			return
		case n < MinProtocol || n > MaxProtocol:
			refuse(rc, CodeUnsupportedProtocol, "Unsupported protocol version "+v)
			return
		}
	}
	a := s.byKey[r.PathValue("key")]
	if a == nil {
		refuse(rc, CodeAppNotFound, "App key "+strconv.Quote(r.PathValue("key"))+" does not exist")
		return
	}
	if n := a.conns.Add(1); a.MaxConnections > 0 && n > int64(a.MaxConnections) {
		a.conns.Add(-1)
		refuse(rc, CodeOverCapacity, "Over the connection quota of this app")
		return
	}
	c := &conn{
		Conn:     rc,
		s:        s,
		a:        a,
		socketID: strconv.FormatUint(uint64(s.socketNo), 10) + "." + strconv.FormatUint(rc.ID(), 10),
		subs:     make(map[string]*subscription),
	}
	c.bucket.init(a.ClientEventsPerSecond)
	s.byConnMu.Lock()
	s.byConn[rc] = c
	s.byConnMu.Unlock()
	s.conns.Add(c)
	ctx, cancel := context.WithTimeout(rc.Context(), hubTimeout)
	defer cancel()
	// In the Hub from the start, so that Hub.Broadcast reaches it.
	if err := s.hub.Add(ctx, c); err != nil {
		c.refuse(CodeOverCapacity, "Server unavailable, try again later")
		return
	}
	timeout := max(int64(a.ActivityTimeout/time.Second), 1)
	data := `{"socket_id":"` + c.socketID + `","activity_timeout":` + strconv.FormatInt(timeout, 10) + `}`
	c.send(stringFrame(evConnectionEstablished, "", data))
	c.activity.Store(time.AfterFunc(a.ActivityTimeout, c.checkActivity))
	if a.SigninTimeout > 0 {
		c.signin.Store(time.AfterFunc(a.SigninTimeout, c.signinExpired))
	}
}

// checkActivity runs on the activity timer: a client silent for
// ActivityTimeout is pinged, and closed with 4201 if it stays silent for
// PongTimeout more.
func (c *conn) checkActivity() {
	t := c.activity.Load()
	if c.Context().Err() != nil || t == nil {
		return
	}
	switch {
	case c.active.Swap(false):
		c.pinged.Store(false)
		t.Reset(c.a.ActivityTimeout)
	case !c.pinged.Swap(true):
		c.send(appendFrame(nil, evPing, "", []byte("{}"), ""))
		t.Reset(c.a.PongTimeout)
	default:
		c.refuse(CodePongTimeout, "Pong reply not received")
	}
}

func (c *conn) signinExpired() {
	if c.Context().Err() == nil && !c.signedIn.Load() {
		c.refuse(CodeUnauthorized, "Connection not authorized within timeout")
	}
}

// OnMessage handles one message of the client.
func (cp component) OnMessage(rc ratchet.Conn, msg ratchet.Message) {
	c := cp.s.conn(rc)
	if c == nil {
		return // refused in OnOpen
	}
	c.active.Store(true)
	if msg.Type != ratchet.MessageText {
		_ = rc.Close(ratchet.StatusUnsupportedData, "binary messages are not supported")
		return
	}
	m, err := parseMessage(msg.Data)
	if err != nil {
		c.sendError(0, "Malformed message: a JSON object with an event is expected")
		return
	}
	ctx, cancel := context.WithTimeout(rc.Context(), hubTimeout)
	defer cancel()
	switch m.Event {
	case evPing:
		c.send(appendFrame(nil, evPong, "", []byte("{}"), ""))
	case evPong:
	case evSubscribe:
		c.subscribe(ctx, m)
	case evUnsubscribe:
		c.unsubscribe(ctx, m)
	case evSignin:
		c.signIn(ctx, m)
	default:
		if strings.HasPrefix(m.Event, clientEventPrefix) {
			c.clientEvent(ctx, m)
			return
		}
		c.sendError(0, "Unknown event "+strconv.Quote(truncate(m.Event, MaxEventNameLength)))
	}
}

// OnClose leaves every channel.
func (cp component) OnClose(rc ratchet.Conn) {
	c := cp.s.conn(rc)
	if c == nil {
		return
	}
	for _, t := range []*time.Timer{c.activity.Load(), c.signin.Load()} {
		if t != nil {
			t.Stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), hubTimeout)
	defer cancel()
	for ch, sub := range c.subs {
		c.leave(ctx, ch, sub, false) // the Hub drops the topics by itself
	}
	c.a.conns.Add(-1)
	cp.s.conns.Remove(c)
	cp.s.byConnMu.Lock()
	delete(cp.s.byConn, rc)
	cp.s.byConnMu.Unlock()
}

// OnError does nothing: a Pusher client learns why from the close code.
func (cp component) OnError(ratchet.Conn, error) {}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
