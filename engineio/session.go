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
	"github.com/ratchetgo/ratchet/internal/longpoll"
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
// Its packets for the client wait in lp, the long-polling session, until a
// poll or the WebSocket writer takes them.
type session struct {
	h    *Handler
	id   string
	lp   *longpoll.Session[packet]
	conn *ratchet.TransportConn

	mu      sync.Mutex
	posting bool        // a POST is being read
	probing bool        // a WebSocket is probing for the upgrade
	ws      *wsConn     // the WebSocket, once upgraded (or from the start)
	direct  bool        // on ws with nothing older waiting in lp: WriteMessages writes itself
	ping    *time.Timer // next ping
	pong    *time.Timer // the pong deadline, while a ping awaits its pong

	wmu sync.Mutex // one batch at a time on ws (writeWebSocket's, WriteMessages')
}

// newSession makes the session of a handshake; the registry gives the id.
func (h *Handler) newSession(id string, r *http.Request, user string) *session {
	s := &session{h: h, id: id}
	// A second pending poll is refused (and ends the session, see poll);
	// no idle timeout: the pings find a client that left.
	s.lp = longpoll.NewSession[packet](longpoll.Config{Overlap: longpoll.Refuse, OnEnd: s.ended})
	s.conn = ratchet.NewTransportConn(tracked{h.component, h}, s, r, user, h.cfg.sendQueue)
	if h.obs != nil {
		s.conn.Observe(h.obs)
	}
	return s
}

// WriteMessages implements ratchet.Transport: it waits until a poll or the
// WebSocket writer has taken msgs.
func (s *session) WriteMessages(msgs []ratchet.Message) error {
	s.mu.Lock()
	if s.direct {
		ws := s.ws
		s.mu.Unlock()
		return s.writeDirect(ws, msgs)
	}
	ps := make([]packet, len(msgs))
	for i, m := range msgs {
		ps[i] = messagePacket(m)
	}
	n, ok := s.lp.Push(ps...) // under s.mu: writeWebSocket sees it before it turns direct on
	s.mu.Unlock()
	if !ok || !s.lp.WaitTaken(context.Background(), n) {
		return s.lp.EndErr(ratchet.ErrClosed)
	}
	return nil
}

// messagePacket is the message packet that carries m.
func messagePacket(m ratchet.Message) packet {
	return packet{typ: typeMessage, data: m.Data, binary: m.Type == ratchet.MessageBinary}
}

// Close implements ratchet.Transport: a close packet for the client, taken
// by its next poll or the WebSocket within the ping timeout, then the end.
func (s *session) Close(ratchet.StatusCode, string) error {
	if n, ok := s.lp.Push(packet{typ: typeClose}); ok {
		ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.pingTimeout)
		s.lp.WaitTaken(ctx, n)
		cancel()
	}
	s.end(nil)
	return nil
}

// end ends the session once (see ended); err goes to OnError.
func (s *session) end(err error) { s.lp.End(err) }

// ended runs once when the session ends: no more packets, the timers
// stopped, the WebSocket writer told to close (by lp), the session out of
// the handler's registry, and the Conn told.
func (s *session) ended(err error) {
	s.mu.Lock()
	if s.ping != nil {
		s.ping.Stop()
	}
	if s.pong != nil {
		s.pong.Stop()
	}
	s.mu.Unlock()
	s.h.sessions.Remove(s.id)
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
	if _, ok := s.lp.Push(packet{typ: typePing}); !ok {
		return
	}
	s.pong = time.AfterFunc(s.h.cfg.pingTimeout, func() { s.end(ratchet.ErrKeepaliveTimeout) })
}

func (s *session) gotPong() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lp.Closed() || s.pong == nil {
		return
	}
	if s.pong.Stop() {
		s.pong = nil
		s.ping.Reset(s.h.cfg.pingInterval)
	}
}

// onWebSocket refuses a polling request of a session on WebSocket.
func (s *session) onWebSocket(w http.ResponseWriter) bool {
	s.mu.Lock()
	refused := s.ws != nil
	s.mu.Unlock()
	if refused {
		writeError(w, http.StatusBadRequest, codeBadRequest)
	}
	return refused
}

// poll answers a GET with what waits for the client, holding it until
// something does. A second GET while one is pending ends the session
// (overlap, in the reference server's words), which ends the first one
// with a close packet.
func (s *session) poll(w http.ResponseWriter, r *http.Request) {
	if s.onWebSocket(w) {
		return
	}
	err := s.lp.Poll(r.Context(), 0, func(batch []packet, closed bool) error {
		switch {
		case closed && (len(batch) == 0 || batch[len(batch)-1].typ != typeClose):
			batch = append(batch, packet{typ: typeClose})
		case len(batch) == 0:
			batch = append(batch, packet{typ: typeNoop}) // released for the upgrade
		}
		return writePayload(w, batch, s.h.cfg.writeTimeout)
	})
	switch {
	case errors.Is(err, longpoll.ErrBusy):
		writeError(w, http.StatusBadRequest, codeBadRequest)
		s.end(fmt.Errorf("%w: a second poll while one is pending", ErrProtocol))
	case err != nil: // the client left, or the response failed (lp has ended the session if it took messages)
		s.end(fmt.Errorf("engineio: poll: %w", err))
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
	if s.onWebSocket(w) {
		return
	}
	s.mu.Lock()
	overlapping := s.posting
	s.posting = true
	s.mu.Unlock()
	if overlapping {
		writeError(w, http.StatusBadRequest, codeBadRequest)
		s.end(fmt.Errorf("%w: a second POST while one is being read", ErrProtocol))
		return
	}
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()
	body, err := longpoll.ReadBody(w, r, s.h.cfg.maxPayload)
	if err != nil {
		if errors.Is(err, longpoll.ErrTooLarge) {
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
	busy := s.ws != nil || s.probing || s.lp.Closed()
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
	s.probing = false
	s.mu.Unlock()
	s.lp.SetImmediate(false)
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
	s.lp.SetImmediate(true) // the pending poll returns, with a noop if nothing waits

	typ, b, err = ws.c.Read(ctx)
	if err != nil || typ != websocket.MessageText || len(b) != 1 || b[0] != typeUpgrade {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lp.Closed() {
		return false
	}
	// Polls are refused from now on; one that raced past the refusal still
	// answers at once (immediate stays on).
	s.ws, s.probing = ws, false
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
	for {
		batch, closed := s.lp.Take(context.Background())
		if closed {
			break
		}
		s.wmu.Lock()
		err := writeBatch(ws.wc, len(batch), func(i int) packet { return batch[i] })
		s.wmu.Unlock()
		if err != nil {
			s.end(fmt.Errorf("engineio: websocket: %w", err))
			return
		}
		// Everything queued before is written: messages may go out on the
		// Conn's writer goroutine from now on, in order, without the
		// hand-off to this one (pings and the close packet still come here).
		s.mu.Lock()
		s.direct = s.direct || s.lp.Waiting() == 0
		s.mu.Unlock()
	}
	_ = ws.c.Close(websocket.StatusNormalClosure, "")
}

// writeDirect writes msgs on ws on the caller's goroutine (the Conn's
// writer), once nothing older waits for writeWebSocket.
func (s *session) writeDirect(ws *wsConn, msgs []ratchet.Message) error {
	s.wmu.Lock()
	err := writeBatch(ws.wc, len(msgs), func(i int) packet { return messagePacket(msgs[i]) })
	s.wmu.Unlock()
	if err != nil {
		s.end(fmt.Errorf("engineio: websocket: %w", err))
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
