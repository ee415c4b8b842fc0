package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ratchetgo/ratchet"
)

// Event is one event to trigger on channels of an app, as the HTTP API's
// POST /apps/{id}/events takes it.
type Event struct {
	// App is the ID of the app; "" for the Server's first app.
	App string
	// Channels get the event: 1 to MaxTriggerChannels valid channel names.
	Channels []string
	// Name is the event's name, 1 to MaxEventNameLength bytes.
	Name string
	// Data is the event's data, at most App.MaxEventDataSize bytes: usually
	// JSON, which pusher-js parses before handing it to listeners.
	Data string
	// SocketID, if set, is a connection (pusher.connection.socket_id in
	// the browser) that does not get the event, on whichever node it is.
	SocketID string
}

// ErrInvalidSocketID is returned for a socket_id not of the form
// "123.456".
var ErrInvalidSocketID = errors.New("pusher: invalid socket_id")

// Trigger sends an event to channels of the Server's first app, the Go
// form of the server libraries' trigger. data is sent as is when it is a
// string, []byte or json.RawMessage, and JSON-encoded otherwise. The event
// reaches subscribers on every node of the cluster.
func (s *Server) Trigger(ctx context.Context, channels []string, event string, data any) error {
	d, err := eventData(data)
	if err != nil {
		return err
	}
	return s.TriggerEvent(ctx, Event{Channels: channels, Name: event, Data: d})
}

// TriggerEvent sends e. It checks every channel and limit first and sends
// nothing when one is violated (ErrUnknownApp, ErrInvalidChannel,
// ErrTooManyChannels, ErrInvalidEventName, ErrDataTooLarge,
// ErrInvalidSocketID); then it publishes on each channel's topic, its frame
// encoded once for every subscriber, and returns the Hub's errors joined.
func (s *Server) TriggerEvent(ctx context.Context, e Event) error {
	a, err := s.app(e.App)
	if err != nil {
		return err
	}
	if err := a.checkEvent(e); err != nil {
		return err
	}
	return a.publish(ctx, e)
}

func eventData(data any) (string, error) {
	switch d := data.(type) {
	case string:
		return d, nil
	case []byte:
		return string(d), nil
	case json.RawMessage:
		return string(d), nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("pusher: event data: %w", err)
	}
	return string(b), nil
}

func (a *app) checkEvent(e Event) error {
	switch {
	case len(e.Channels) == 0 || len(e.Channels) > MaxTriggerChannels:
		return fmt.Errorf("%w: %d channels (1 to %d)", ErrTooManyChannels, len(e.Channels), MaxTriggerChannels)
	case !ValidEventName(e.Name):
		return fmt.Errorf("%w: 1 to %d bytes of UTF-8", ErrInvalidEventName, MaxEventNameLength)
	case len(e.Data) > a.MaxEventDataSize:
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrDataTooLarge, len(e.Data), a.MaxEventDataSize)
	case e.SocketID != "" && !validSocketID(e.SocketID):
		return fmt.Errorf("%w %q", ErrInvalidSocketID, e.SocketID)
	}
	for _, ch := range e.Channels {
		if !ValidChannelName(ch) {
			return fmt.Errorf("%w %q", ErrInvalidChannel, ch)
		}
	}
	return nil
}

// validSocketID reports whether id has the form \d+\.\d+.
func validSocketID(id string) bool {
	dot := false
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '.' && !dot && i > 0 && i < len(id)-1:
			dot = true
		case c < '0' || c > '9':
			return false
		}
	}
	return dot && len(id) <= 42
}

// publish sends a checked event: one frame per channel, each published on
// the channel's topic.
func (a *app) publish(ctx context.Context, e Event) error {
	data := appendJSONString(make([]byte, 0, len(e.Data)+16), e.Data)
	var errs []error
	for _, ch := range e.Channels {
		b := appendEventHeader(make([]byte, 0, len(data)+len(e.Name)+len(ch)+64), e.SocketID)
		b = appendFrame(b, e.Name, ch, data, "")
		if _, err := a.s.hub.Publish(ctx, a.topic(ch), ratchet.Message{Type: ratchet.MessageText, Data: b}); err != nil {
			errs = append(errs, fmt.Errorf("pusher: channel %q: %w", ch, err))
		}
	}
	return errors.Join(errs...)
}

// terminate closes, on every node, the connections signed in as user.
func (a *app) terminate(ctx context.Context, user string) error {
	msg := ratchet.Message{Type: ratchet.MessageText, Data: []byte{pubMarker, pubTerminate, pubMarker}}
	_, err := a.s.hub.Publish(ctx, a.topic(serverToUserPrefix+user), msg)
	return err
}
