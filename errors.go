package ratchet

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/coder/websocket"
)

// StatusCode is a WebSocket close code (RFC 6455 §7.4).
type StatusCode int

// Close codes used by this package; any code from 3000 to 4999 may also be
// sent by applications.
const (
	StatusNormalClosure   StatusCode = 1000 // the purpose was fulfilled
	StatusGoingAway       StatusCode = 1001 // server shutting down, page closed
	StatusProtocolError   StatusCode = 1002 // malformed frames, bad subprotocol use
	StatusUnsupportedData StatusCode = 1003 // a data type the endpoint cannot take
	StatusNoStatusRcvd    StatusCode = 1005 // reported only: the close frame had no code
	StatusAbnormalClosure StatusCode = 1006 // reported only: no close frame at all
	StatusInvalidPayload  StatusCode = 1007 // text or close reason not UTF-8, corrupt compressed data
	StatusPolicyViolation StatusCode = 1008 // slow consumer, unwanted messages
	StatusMessageTooBig   StatusCode = 1009 // message over the read limit
	StatusInternalError   StatusCode = 1011 // panic in a callback
	StatusServiceRestart  StatusCode = 1012 // server restarting
	StatusTryAgainLater   StatusCode = 1013 // server overloaded
)

// String returns the code with its RFC 6455 name, e.g. "1008 policy violation".
func (c StatusCode) String() string {
	name := statusNames[c]
	if name == "" {
		return strconv.Itoa(int(c))
	}
	return strconv.Itoa(int(c)) + " " + name
}

var statusNames = map[StatusCode]string{
	StatusNormalClosure: "normal closure", StatusGoingAway: "going away",
	StatusProtocolError: "protocol error", StatusUnsupportedData: "unsupported data",
	StatusNoStatusRcvd: "no status", StatusAbnormalClosure: "abnormal closure",
	StatusInvalidPayload: "invalid payload", StatusPolicyViolation: "policy violation",
	StatusMessageTooBig: "message too big", StatusInternalError: "internal error",
	StatusServiceRestart: "service restart", StatusTryAgainLater: "try again later",
}

var (
	// ErrClosed is returned by Send and Close on a connection that is closing
	// or closed, and by Hub methods given such a connection.
	ErrClosed = errors.New("ratchet: connection closed")

	// ErrHubClosed is returned by a Hub used after Hub.Close. It is distinct
	// from ErrClosed so that Hub.Subscribe tells a closed Hub from a
	// connection that ended.
	ErrHubClosed = errors.New("ratchet: hub closed")

	// ErrPresenceClosed is returned by a MemoryPresence used after Close.
	ErrPresenceClosed = errors.New("ratchet: presence closed")

	// ErrSlowConsumer is returned by Send when the connection's send queue is
	// full because the peer does not read fast enough. The message is not
	// queued, and the queue is dropped; the connection is closed with
	// StatusPolicyViolation (1008), sent right after the message being
	// written, and OnError receives ErrSlowConsumer, so no loss goes
	// unreported.
	ErrSlowConsumer = errors.New("ratchet: slow consumer: send queue full")

	// ErrKeepaliveTimeout is reported to OnError when a peer did not answer a
	// ping in time.
	ErrKeepaliveTimeout = errors.New("ratchet: keepalive timeout: no pong from peer")

	// ErrInvalidUTF8 is reported to OnError when a text message is not valid
	// UTF-8; the connection is closed with StatusInvalidPayload (1007).
	// Hub.Publish returns it for such text, and the brokers report it when
	// such text arrives from another publisher (see Broker.Subscribe).
	ErrInvalidUTF8 = errors.New("ratchet: text message is not valid UTF-8")

	// ErrServerClosed is returned by App.Run and App.Serve after Shutdown.
	ErrServerClosed = http.ErrServerClosed
)

// CloseError is reported to OnError when the peer closed the connection with
// a code other than 1000 or 1001, and is the cause recorded when the server
// closed it for a protocol reason. Use errors.As to read it.
type CloseError struct {
	Code   StatusCode
	Reason string
}

// Error describes the close code and reason.
func (e *CloseError) Error() string {
	if e.Reason == "" {
		return "ratchet: connection closed with " + e.Code.String()
	}
	return fmt.Sprintf("ratchet: connection closed with %s: %s", e.Code, e.Reason)
}

// PanicError is reported to OnError when a callback panicked.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack at the panic
}

// Error gives the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("ratchet: panic in callback: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// RejectError lets an Authenticate hook choose the HTTP status of a rejected
// handshake. Any other error rejects with 401 Unauthorized.
type RejectError struct {
	Status int    // an HTTP status code, e.g. http.StatusForbidden
	Reason string // the response body; the status text when empty
}

// Error returns the reason, or the status text without one.
func (e *RejectError) Error() string {
	if e.Reason == "" {
		return http.StatusText(e.Status)
	}
	return e.Reason
}

// CloseStatus returns the WebSocket close code that err stands for, or -1 if
// it stands for none (nil included): the Code of a *CloseError, the code this
// package closes the connection with for ErrSlowConsumer (1008),
// ErrInvalidUTF8 (1007) and a *PanicError (1011), and the code of a
// coder/websocket CloseError. It reads the errors OnError receives, like
// coder/websocket's CloseStatus:
//
//	func (c *Chat) OnError(conn ratchet.Conn, err error) {
//		if ratchet.CloseStatus(err) == ratchet.StatusPolicyViolation {
//			slowConsumers.Add(1)
//		}
//	}
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	var pe *PanicError
	switch {
	case err == nil:
		return -1
	case errors.As(err, &ce):
		return ce.Code
	case errors.As(err, &pe):
		return StatusInternalError
	case errors.Is(err, ErrSlowConsumer):
		return StatusPolicyViolation
	case errors.Is(err, ErrInvalidUTF8):
		return StatusInvalidPayload
	}
	return StatusCode(websocket.CloseStatus(err))
}
