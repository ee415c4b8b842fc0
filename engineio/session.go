package engineio

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/wire"
)

// Packet types of Engine.IO v4.
const (
	typeOpen    = '0'
	typeClose   = '1'
	typePing    = '2'
	typePong    = '3'
	typeMessage = '4'
	typeUpgrade = '5'
	typeNoop    = '6'
)

// separator ends each packet of a polling payload but the last.
const separator = '\x1e'

// binaryPrefix marks a base64 binary message in a polling payload.
const binaryPrefix = 'b'

// packet is one Engine.IO packet on its way to the client.
type packet struct {
	typ    byte
	data   []byte
	binary bool // a binary message: raw frame on WebSocket, "b" + base64 when polling
}

// session is one Engine.IO session: the ratchet.Transport of its Conn.
type session struct {
	h    *Handler
	id   string
	conn *ratchet.TransportConn

	mu        sync.Mutex
	out       []packet      // waiting for a poll or the WebSocket writer
	taken     uint64        // packets taken from out so far
	added     uint64        // packets appended to out so far
	changed   chan struct{} // closed and replaced on every change of the fields below
	polling   bool          // a GET is pending
	posting   bool          // a POST is being read
	probing   bool          // a WebSocket is probing for the upgrade
	upgrading bool          // the probe succeeded: answer GETs at once
	ws        *wsConn       // the WebSocket, once upgraded (or from the start)
	wsWriting bool          // a batch is being written on ws, by writeWebSocket or WriteMessages
	closed    bool
	ping      *time.Timer // next ping
	pong      *time.Timer // the pong deadline, while a ping awaits its pong
}

func (h *Handler) newSession(r *http.Request, user string) *session {
	s := &session{h: h, id: newSessionID(), changed: make(chan struct{})}
	s.conn = ratchet.NewTransportConn(tracked{h.component, h}, s, r, user, h.cfg.sendQueue)
	if h.obs != nil {
		s.conn.Observe(h.obs)
	}
	return s
}

func (s *session) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitLocked releases the lock until the next change (or ctx is done).
func (s *session) waitLocked(ctx context.Context) bool {
	ch := s.changed
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *session) pushLocked(p ...packet) {
	s.out = append(s.out, p...)
	s.added += uint64(len(p))
	s.notifyLocked()
}

func (s *session) takeLocked() []packet {
	batch := s.out
	s.out = nil
	s.taken += uint64(len(batch))
	s.notifyLocked()
	return batch
}

// WriteMessages implements ratchet.Transport: it waits until a poll or the
// WebSocket writer has taken msgs.
func (s *session) WriteMessages(msgs []ratchet.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ratchet.ErrClosed
	}
	if s.ws != nil && len(s.out) == 0 && !s.wsWriting {
		return s.writeDirectLocked(msgs)
	}
	for _, m := range msgs {
		s.pushLocked(packet{typ: typeMessage, data: m.Data, binary: m.Type == ratchet.MessageBinary})
	}
	target := s.added
	for s.taken < target && !s.closed {
		s.waitLocked(context.Background())
	}
	if s.taken < target {
		return ratchet.ErrClosed
	}
	return nil
}

// Close implements ratchet.Transport: a close packet for the client, taken
// by its next poll or the WebSocket within the ping timeout, then the end.
func (s *session) Close(ratchet.StatusCode, string) error {
	s.mu.Lock()
	if !s.closed {
		s.pushLocked(packet{typ: typeClose})
		ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.pingTimeout)
		target := s.added
		for s.taken < target && !s.closed && s.waitLocked(ctx) {
		}
		cancel()
	}
	s.mu.Unlock()
	s.end(nil)
	return nil
}

// end ends the session once: no more packets, the timers stopped, the
// WebSocket writer told to close, and the Conn told (err goes to OnError).
func (s *session) end(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.ping != nil {
		s.ping.Stop()
	}
	if s.pong != nil {
		s.pong.Stop()
	}
	s.notifyLocked()
	s.mu.Unlock()
	s.h.mu.Lock()
	delete(s.h.sessions, s.id)
	s.h.mu.Unlock()
	s.conn.End(err)
}

func (s *session) armPing() {
	s.mu.Lock()
	s.ping = time.AfterFunc(s.h.cfg.pingInterval, s.sendPing)
	s.mu.Unlock()
}

func (s *session) sendPing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.pushLocked(packet{typ: typePing})
	s.pong = time.AfterFunc(s.h.cfg.pingTimeout, func() { s.end(ratchet.ErrKeepaliveTimeout) })
}

func (s *session) gotPong() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pong == nil {
		return
	}
	if s.pong.Stop() {
		s.pong = nil
		s.ping.Reset(s.h.cfg.pingInterval)
	}
}

// begin starts a polling request, busy being s.polling for a GET or
// s.posting for a POST: a session on WebSocket refuses it, and a second one
// of its kind while one is under way ends the session (overlap, in the
// reference server's words).
func (s *session) begin(w http.ResponseWriter, busy *bool, overlap string) bool {
	s.mu.Lock()
	refused, overlapping := s.ws != nil, *busy
	*busy = *busy || !refused
	s.mu.Unlock()
	if refused || overlapping {
		writeError(w, http.StatusBadRequest, codeBadRequest)
	}
	if overlapping && !refused {
		s.end(fmt.Errorf("%w: %s", ErrProtocol, overlap))
	}
	return !refused && !overlapping
}

// poll answers a GET with what waits for the client, holding it until
// something does.
func (s *session) poll(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w, &s.polling, "a second poll while one is pending") {
		return
	}
	s.mu.Lock()
	gone := false
	for len(s.out) == 0 && !s.closed && !s.upgrading && s.ws == nil {
		if !s.waitLocked(r.Context()) {
			gone = true
			break
		}
	}
	var batch []packet
	if !gone {
		batch = s.takeLocked()
	}
	closed := s.closed
	s.polling = false
	s.mu.Unlock()
	if gone {
		s.end(fmt.Errorf("engineio: poll: %w", r.Context().Err()))
		return
	}
	switch {
	case closed && (len(batch) == 0 || batch[len(batch)-1].typ != typeClose):
		batch = append(batch, packet{typ: typeClose})
	case len(batch) == 0:
		batch = append(batch, packet{typ: typeNoop}) // released for the upgrade
	}
	if err := writePayload(w, batch, s.h.cfg.writeTimeout); err != nil {
		s.end(fmt.Errorf("engineio: poll response: %w", err))
	}
}

// writePayload writes packets as one polling payload.
func writePayload(w http.ResponseWriter, batch []packet, timeout time.Duration) error {
	var b []byte
	for i, p := range batch {
		if i > 0 {
			b = append(b, separator)
		}
		if p.binary {
			b = append(b, binaryPrefix)
			b = base64.StdEncoding.AppendEncode(b, p.data)
			continue
		}
		b = append(append(b, p.typ), p.data...)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout))
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, err := w.Write(b)
	return err
}

// post reads the packets of a POST body, in order.
func (s *session) post(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w, &s.posting, "a second POST while one is being read") {
		return
	}
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.h.cfg.maxPayload))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			s.end(fmt.Errorf("%w: a POST over maxPayload (%d bytes)", ErrProtocol, s.h.cfg.maxPayload))
			return
		}
		writeError(w, http.StatusBadRequest, codeBadRequest)
		s.end(fmt.Errorf("engineio: POST: %w", err))
		return
	}
	if n := bytes.Count(body, []byte{separator}) + 1; n > s.h.cfg.maxPackets {
		http.Error(w, "too many packets", http.StatusRequestEntityTooLarge)
		s.end(fmt.Errorf("%w: a POST of %d packets, over %d", ErrProtocol, n, s.h.cfg.maxPackets))
		return
	}
	for p := range bytes.SplitSeq(body, []byte{separator}) {
		if len(p) > 0 && p[0] == binaryPrefix {
			data, err := base64.StdEncoding.AppendDecode(nil, p[1:])
			if err != nil {
				writeError(w, http.StatusBadRequest, codeBadRequest)
				s.end(fmt.Errorf("%w: invalid base64 in a binary packet", ErrProtocol))
				return
			}
			_ = s.conn.Receive(ratchet.Message{Type: ratchet.MessageBinary, Data: data})
			continue
		}
		if err := s.receive(p, false); errors.Is(err, errClientClose) {
			break
		} else if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest)
			s.end(err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = w.Write([]byte("ok"))
}

// errClientClose stops the reading of a session the client closed.
var errClientClose = errors.New("engineio: closed by the client")

// receive handles one packet from the client (text packets; binary ones
// are messages).
func (s *session) receive(p []byte, binary bool) error {
	if binary {
		_ = s.conn.Receive(ratchet.Message{Type: ratchet.MessageBinary, Data: p})
		return nil
	}
	if len(p) == 0 {
		return fmt.Errorf("%w: an empty packet", ErrProtocol)
	}
	switch p[0] {
	case typeMessage:
		if !utf8.Valid(p[1:]) {
			return fmt.Errorf("%w: %w", ErrProtocol, ratchet.ErrInvalidUTF8)
		}
		_ = s.conn.Receive(ratchet.Message{Type: ratchet.MessageText, Data: bytes.Clone(p[1:])})
	case typePong:
		s.gotPong()
	case typeNoop:
	case typeClose:
		s.end(nil)
		return errClientClose
	default:
		return fmt.Errorf("%w: unexpected packet type %q", ErrProtocol, p[0])
	}
	return nil
}

// wsConn is a WebSocket of a session. coder/websocket reads it; frames
// are written through wc (internal/wire), encoded straight into a batch
// that goes out in one write system call, with the write timeout as a
// socket deadline instead of a timer per write. coder/websocket itself
// writes only control frames (its pongs and the close handshake), each in
// one call, which wc keeps in order with the batches.
type wsConn struct {
	c  *websocket.Conn
	wc *wire.Conn
}

func (h *Handler) accept(w http.ResponseWriter, r *http.Request) (*wsConn, error) {
	// The origin policy was applied by ServeHTTP, with ratchet's rules.
	c, wc, _, err := wire.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true}, h.cfg.writeTimeout)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(h.cfg.maxPayload)
	return &wsConn{c: c, wc: wc}, nil
}

// write writes one frame now, blocking up to the write timeout.
func (ws *wsConn) write(typ websocket.MessageType, b []byte) error {
	return ws.wc.AppendFrame(byte(typ), false, b)
}

func (ws *wsConn) closeNow() { _ = ws.c.CloseNow() }

// maxPooledRead keeps one huge message from pinning a huge buffer in
// readPool.
const maxPooledRead = 1 << 20

var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// read reads one message into a pooled buffer and hands it to f, which
// must not keep it.
func (ws *wsConn) read(f func(typ websocket.MessageType, b []byte) error) error {
	typ, r, err := ws.c.Reader(context.Background()) // no cancel: coder arms no timer per read
	if err != nil {
		return err
	}
	bp := readPool.Get().(*[]byte)
	b := (*bp)[:0]
	for err == nil {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		n, err = r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
	}
	if err == io.EOF {
		err = f(typ, b)
	}
	if cap(b) <= maxPooledRead {
		*bp = b[:0]
		readPool.Put(bp)
	}
	return err
}

// upgrade serves the WebSocket that probes for and then completes the
// upgrade of a polling session.
func (s *session) upgrade(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	busy := s.ws != nil || s.probing || s.closed
	s.probing = !busy
	s.mu.Unlock()
	if busy {
		writeError(w, http.StatusBadRequest, codeBadRequest)
		return
	}
	ws, err := s.h.accept(w, r)
	if err != nil {
		s.mu.Lock()
		s.probing = false
		s.mu.Unlock()
		return
	}
	if s.probe(ws) {
		s.runWebSocket(ws)
		return
	}
	ws.closeNow()
	s.mu.Lock()
	s.probing, s.upgrading = false, false
	s.mu.Unlock()
}

// probe answers 2probe with 3probe, releases the pending poll, and waits
// for the upgrade packet; then the WebSocket is the session's transport.
func (s *session) probe(ws *wsConn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.pingTimeout)
	defer cancel()
	typ, b, err := ws.c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(b) != "2probe" {
		return false
	}
	if ws.write(websocket.MessageText, []byte("3probe")) != nil {
		return false
	}
	s.mu.Lock()
	s.upgrading = true
	s.notifyLocked() // the pending poll returns, with a noop if nothing waits
	s.mu.Unlock()
	typ, b, err = ws.c.Read(ctx)
	if err != nil || typ != websocket.MessageText || len(b) != 1 || b[0] != typeUpgrade {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.ws, s.upgrading, s.probing = ws, false, false
	s.notifyLocked()
	return true
}

// runWebSocket reads the session's WebSocket until it ends, while a writer
// goroutine sends what waits in the session.
func (s *session) runWebSocket(ws *wsConn) {
	s.mu.Lock()
	s.ws = ws
	s.mu.Unlock()
	written := make(chan struct{})
	go s.writeWebSocket(ws, written)
	var err error
	for err == nil {
		err = ws.read(func(typ websocket.MessageType, b []byte) error {
			if typ == websocket.MessageBinary {
				b = bytes.Clone(b) // the component owns it; text is copied by receive
			}
			return s.receive(b, typ == websocket.MessageBinary)
		})
	}
	switch code := websocket.CloseStatus(err); {
	case errors.Is(err, errClientClose), code == websocket.StatusNormalClosure, code == websocket.StatusGoingAway,
		code == websocket.StatusNoStatusRcvd: // engine.io-client closes its WebSocket with no code
		err = nil
	case errors.Is(err, websocket.ErrMessageTooBig):
		err = fmt.Errorf("%w: a WebSocket message over maxPayload (%d bytes)", ErrProtocol, s.h.cfg.maxPayload)
	case !errors.Is(err, ErrProtocol):
		err = fmt.Errorf("engineio: websocket: %w", err)
	}
	s.end(err)
	<-written
	ws.closeNow()
}

// writeWebSocket writes what waits in the session until it has ended, then
// closes the WebSocket.
func (s *session) writeWebSocket(ws *wsConn, written chan<- struct{}) {
	defer close(written)
	s.mu.Lock()
	for {
		for (len(s.out) == 0 || s.wsWriting) && !s.closed {
			s.waitLocked(context.Background())
		}
		if len(s.out) == 0 {
			break
		}
		batch := s.takeLocked()
		s.wsWriting = true
		s.mu.Unlock()
		err := writeBatch(ws.wc, len(batch), func(i int) packet { return batch[i] })
		s.mu.Lock()
		s.wsWriting = false
		if err != nil {
			s.mu.Unlock()
			s.end(fmt.Errorf("engineio: websocket: %w", err))
			return
		}
	}
	s.mu.Unlock()
	_ = ws.c.Close(websocket.StatusNormalClosure, "")
}

// writeDirectLocked writes msgs on the WebSocket on the caller's
// goroutine (the Conn's writer), with s.mu held on entry and on return:
// nothing older waits in s.out, so no hand-off to writeWebSocket is needed
// to keep the order. writeWebSocket waits while wsWriting.
func (s *session) writeDirectLocked(msgs []ratchet.Message) error {
	ws := s.ws
	s.wsWriting = true
	s.mu.Unlock()
	err := writeBatch(ws.wc, len(msgs), func(i int) packet {
		return packet{typ: typeMessage, data: msgs[i].Data, binary: msgs[i].Type == ratchet.MessageBinary}
	})
	s.mu.Lock()
	s.wsWriting = false
	if len(s.out) > 0 || err != nil {
		s.notifyLocked() // writeWebSocket waits for the end of this batch
	}
	if err != nil {
		s.mu.Unlock()
		s.end(fmt.Errorf("engineio: websocket: %w", err))
		s.mu.Lock()
		return ratchet.ErrClosed
	}
	return nil
}

// framePool holds the payloads of text frames being encoded: a packet's
// type, then its data.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// writeBatch writes n packets (packet(i) for each) as WebSocket frames,
// one message each, in one write system call (or one per 64 KiB).
func writeBatch(wc *wire.Conn, n int, packet func(i int) packet) error {
	fp := framePool.Get().(*[]byte)
	wc.Hold()
	var err error
	for i := 0; i < n && err == nil; i++ {
		p := packet(i)
		if p.binary {
			err = wc.AppendFrame(byte(websocket.MessageBinary), false, p.data)
			continue
		}
		*fp = append(append((*fp)[:0], p.typ), p.data...)
		err = wc.AppendFrame(byte(websocket.MessageText), false, *fp)
	}
	if cap(*fp) <= maxPooledRead {
		framePool.Put(fp)
	}
	if ferr := wc.Flush(); err == nil {
		err = ferr
	}
	return err
}
