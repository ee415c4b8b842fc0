package pusher

import (
	"errors"

	"github.com/ratchetgo/ratchet"
)

// Close codes and pusher:error codes of the Pusher protocol. pusher-js acts
// on the range of a close code: 4000-4099 it does not reconnect, 4100-4199
// it reconnects after a back-off, 4200-4299 it reconnects at once.
const (
	CodeAppNotFound         ratchet.StatusCode = 4001 // no app has the key of the URL
	CodeInvalidVersion      ratchet.StatusCode = 4006 // the protocol parameter is not a number
	CodeUnsupportedProtocol ratchet.StatusCode = 4007 // a protocol version this server does not speak
	CodeUnauthorized        ratchet.StatusCode = 4009 // sign-in refused or missing, connection terminated by the app
	CodeOverCapacity        ratchet.StatusCode = 4100 // over App.MaxConnections
	CodeReconnect           ratchet.StatusCode = 4200 // the server shuts down: reconnect at once
	CodePongTimeout         ratchet.StatusCode = 4201 // a ping went unanswered
	CodeClientEventRejected ratchet.StatusCode = 4301 // a client event over the rate or size limit, or client events off (pusher:error only)
)

// Protocol versions this server speaks; pusher-js 8 uses 7.
const (
	MinProtocol = 5
	MaxProtocol = 7
)

// Errors of Trigger and TriggerEvent; the HTTP API answers them with 400
// (413 for ErrDataTooLarge, 404 for ErrUnknownApp).
var (
	ErrUnknownApp       = errors.New("pusher: unknown app")
	ErrInvalidChannel   = errors.New("pusher: invalid channel name")
	ErrInvalidEventName = errors.New("pusher: invalid event name")
	ErrTooManyChannels  = errors.New("pusher: too many channels")
	ErrDataTooLarge     = errors.New("pusher: event data too large")
)
