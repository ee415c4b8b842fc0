package ratchet

import (
	"strconv"
	"unicode/utf8"
)

// MessageComponent is the application side of a WebSocket route, the Go form
// of Ratchet's MessageComponentInterface.
//
// For one connection the callbacks are sequential: OnOpen first, then each
// OnMessage in arrival order, then OnError (only when the connection ended
// abnormally), then OnClose exactly once and last. Callbacks of different
// connections run concurrently, so state shared between connections (a set of
// clients, a room list) must be safe for concurrent use; ConnSet and Hub are.
//
// A panic in a callback is recovered: OnError receives a *PanicError and the
// connection closes with StatusInternalError (1011). Other connections are
// not affected.
type MessageComponent interface {
	// OnOpen is called once the handshake is done, before any OnMessage.
	OnOpen(conn Conn)
	// OnMessage is called for every complete message the peer sends.
	// msg.Data belongs to the callee: keep it, or Send it on, without copying.
	OnMessage(from Conn, msg Message)
	// OnClose is called exactly once when the connection has ended, whatever
	// ended it. Sends after this point return ErrClosed.
	OnClose(conn Conn)
	// OnError reports why a connection ended abnormally (protocol error,
	// network error, slow consumer, keepalive timeout, panic). OnClose follows.
	OnError(conn Conn, err error)
}

// SubProtocoler is implemented by components that speak WebSocket
// subprotocols (Ratchet's WsServerInterface). The list is in order of
// preference: the first one the client also offers is chosen. When the client
// offers none of them, the handshake still succeeds with no subprotocol, as
// RFC 6455 allows; Conn.Subprotocol then returns "" and the component may
// close the connection with StatusProtocolError if it requires one.
type SubProtocoler interface {
	SubProtocols() []string
}

// ComponentFuncs adapts plain functions to a MessageComponent. Nil fields are
// no-ops, so a component that only answers messages is one field.
type ComponentFuncs struct {
	Open    func(Conn)
	Message func(Conn, Message)
	Close   func(Conn)
	Error   func(Conn, error)
}

// OnOpen calls f.Open if it is set.
func (f ComponentFuncs) OnOpen(c Conn) {
	if f.Open != nil {
		f.Open(c)
	}
}

// OnMessage calls f.Message if it is set.
func (f ComponentFuncs) OnMessage(c Conn, m Message) {
	if f.Message != nil {
		f.Message(c, m)
	}
}

// OnClose calls f.Close if it is set.
func (f ComponentFuncs) OnClose(c Conn) {
	if f.Close != nil {
		f.Close(c)
	}
}

// OnError calls f.Error if it is set.
func (f ComponentFuncs) OnError(c Conn, err error) {
	if f.Error != nil {
		f.Error(c, err)
	}
}

// MessageType is the kind of a WebSocket data message.
type MessageType int

// The two data message types of RFC 6455; the values match the opcodes.
const (
	MessageText   MessageType = 1
	MessageBinary MessageType = 2
)

// String returns "text" or "binary".
func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one WebSocket data message.
//
// Send does not copy Data: after Send (or a broadcast) the bytes are shared
// with the connections' queues and must not be modified. That is what lets
// one payload go to ten thousand connections without ten thousand copies.
type Message struct {
	Type MessageType
	Data []byte
}

// Text returns a text message holding s.
func Text(s string) Message { return Message{Type: MessageText, Data: []byte(s)} }

// Binary returns a binary message holding b (not copied).
func Binary(b []byte) Message { return Message{Type: MessageBinary, Data: b} }

// String returns the payload as a string.
func (m Message) String() string { return string(m.Data) }

// validText reports whether m may go on the wire: text must be UTF-8.
func (m Message) validText() bool { return m.Type != MessageText || utf8.Valid(m.Data) }
