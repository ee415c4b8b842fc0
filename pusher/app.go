package pusher

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of an App's settings, used for its zero fields. They are
// Pusher's own.
const (
	DefaultActivityTimeout       = 120 * time.Second // silence after which the server pings a client
	DefaultPongTimeout           = 30 * time.Second  // how long a pinged client has to answer
	DefaultMaxPresenceMembers    = 100               // distinct users per presence channel
	DefaultClientEventsPerSecond = 10                // client events one connection may send per second
	DefaultMaxEventDataSize      = 10 << 10          // bytes of an event's data (HTTP API and client events)
	DefaultMaxChannels           = 100               // channels one connection may subscribe to
	DefaultHubEvent              = "message"         // event name of messages published to a channel's topic by other means than Trigger
)

// Protocol limits: Pusher's, and those of its server libraries.
const (
	MaxChannelNameLength = 200 // bytes of a channel name
	MaxEventNameLength   = 200 // bytes of an event name
	MaxTriggerChannels   = 100 // channels of one triggered event
	MaxBatchEvents       = 10  // events of one batch_events request
	MaxTopicPrefixLength = 48  // bytes of App.TopicPrefix, so that every channel's topic is a valid Hub topic
)

// App is one Pusher Channels application: the credentials its browsers and
// back-end servers use, and its settings. Zero settings take the defaults
// above.
type App struct {
	// ID is the app_id of the HTTP API (/apps/{ID}/...).
	ID string
	// Key is the public key browsers connect with (/app/{Key}).
	Key string
	// Secret signs channel authorizations, user sign-ins and HTTP API
	// requests. Keep it on the server side.
	Secret string

	// TopicPrefix is put before a channel's name to make its Hub topic:
	// channel "orders" of an app whose prefix is "shop:" is topic
	// "shop:orders". Hub.Publish on that topic reaches the channel's
	// subscribers (see the package documentation). It is "" (the topic is
	// the channel's name) or ends with a character that no channel name
	// holds, such as ':' or '/', so that topics of different apps never
	// meet; each app of a Server needs its own.
	TopicPrefix string

	// ClientEvents lets subscribers of private and presence channels send
	// client-* events to each other. Off by default, as on Pusher.
	ClientEvents bool
	// ClientEventsPerSecond limits the client events of one connection;
	// more are refused with a pusher:error of code 4301.
	ClientEventsPerSecond int
	// MaxEventDataSize bounds the data of an event, in bytes: larger
	// client events are refused (4301), larger HTTP API events answered
	// 413.
	MaxEventDataSize int
	// MaxPresenceMembers bounds the distinct users of a presence channel.
	MaxPresenceMembers int
	// MaxChannels bounds the channels one connection subscribes to.
	MaxChannels int
	// MaxConnections bounds the app's connections on this node; the next
	// one is closed with 4100 (over capacity: clients back off). 0: no
	// limit.
	MaxConnections int

	// ActivityTimeout is announced to clients in
	// pusher:connection_established (whole seconds, at least 1): a client
	// pings when it has heard nothing for that long. The server pings a
	// client it has heard nothing from for that long, and closes it with
	// 4201 when no answer comes within PongTimeout.
	ActivityTimeout time.Duration
	// PongTimeout: see ActivityTimeout.
	PongTimeout time.Duration
	// SigninTimeout, when set, closes with 4009 the connections that have
	// not signed in (pusher:signin) that long after connecting.
	SigninTimeout time.Duration

	// Webhooks get the app's events (see Webhook).
	Webhooks []Webhook
	// WebhookGrace is how long channel_vacated and member_removed wait:
	// when the channel is occupied again, or the user back, within it,
	// neither the departure nor the return is sent (a page reload makes no
	// pair). Default DefaultWebhookGrace; negative: no wait.
	WebhookGrace time.Duration

	// HubEvent is the event name clients see for a message published on a
	// channel's Hub topic by other means than Trigger: Hub.Publish from Go,
	// the push package's publish API, a broker. Default DefaultHubEvent.
	HubEvent string
}

// ErrInvalidApp is returned by NewServer for an App it cannot serve.
var ErrInvalidApp = errors.New("pusher: invalid app")

func (a App) withDefaults() App {
	if a.ClientEventsPerSecond <= 0 {
		a.ClientEventsPerSecond = DefaultClientEventsPerSecond
	}
	if a.MaxEventDataSize <= 0 {
		a.MaxEventDataSize = DefaultMaxEventDataSize
	}
	if a.MaxPresenceMembers <= 0 {
		a.MaxPresenceMembers = DefaultMaxPresenceMembers
	}
	if a.MaxChannels <= 0 {
		a.MaxChannels = DefaultMaxChannels
	}
	if a.ActivityTimeout <= 0 {
		a.ActivityTimeout = DefaultActivityTimeout
	}
	if a.PongTimeout <= 0 {
		a.PongTimeout = DefaultPongTimeout
	}
	if a.HubEvent == "" {
		a.HubEvent = DefaultHubEvent
	}
	return a
}

func (a App) validate() error {
	switch {
	case a.ID == "" || a.Key == "" || a.Secret == "":
		return fmt.Errorf("%w: ID, Key and Secret are required", ErrInvalidApp)
	case strings.ContainsAny(a.ID, "/?#") || strings.ContainsAny(a.Key, "/?#"):
		return fmt.Errorf("%w %q: ID and Key must not contain '/', '?' or '#'", ErrInvalidApp, a.ID)
	case !validPrefix(a.TopicPrefix):
		return fmt.Errorf("%w %q: TopicPrefix %q must be \"\" or at most %d bytes of UTF-8, not start with '@', and end with a character no channel name has (':' or '/')",
			ErrInvalidApp, a.ID, a.TopicPrefix, MaxTopicPrefixLength)
	case !ValidEventName(a.withDefaults().HubEvent):
		return fmt.Errorf("%w %q: HubEvent %q is not a valid event name", ErrInvalidApp, a.ID, a.HubEvent)
	}
	return nil
}

func validPrefix(p string) bool {
	if p == "" {
		return true
	}
	return len(p) <= MaxTopicPrefixLength && utf8.ValidString(p) && p[0] != '@' && !isChannelByte(p[len(p)-1])
}

// isChannelByte reports whether c may appear in a channel name.
func isChannelByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-_=@,.;", c) >= 0
}

// ValidChannelName reports whether name is a channel name Pusher accepts: 1
// to MaxChannelNameLength characters of [A-Za-z0-9_\-=@,.;], optionally
// after a leading '#' (the server-to-user channels, #server-to-user-{id}).
func ValidChannelName(name string) bool {
	if len(name) > MaxChannelNameLength {
		return false
	}
	name = strings.TrimPrefix(name, "#")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isChannelByte(name[i]) {
			return false
		}
	}
	return true
}

// ValidEventName reports whether name may be an event's name: 1 to
// MaxEventNameLength bytes of UTF-8.
func ValidEventName(name string) bool {
	return name != "" && len(name) <= MaxEventNameLength && utf8.ValidString(name)
}

// Channel name prefixes that choose a channel's kind.
const (
	privatePrefix      = "private-"
	encryptedPrefix    = "private-encrypted-"
	presencePrefix     = "presence-"
	serverToUserPrefix = "#server-to-user-"
)

// kind is what a channel's name makes of it.
type kind uint8

const (
	kindPublic       kind = iota
	kindPrivate           // private-*: subscriptions signed by the app
	kindEncrypted         // private-encrypted-*: private, payloads end-to-end encrypted, no client events
	kindPresence          // presence-*: signed, with members
	kindServerToUser      // #server-to-user-{id}: the signed-in user's own channel
)

func channelKind(name string) kind {
	switch {
	case strings.HasPrefix(name, encryptedPrefix):
		return kindEncrypted
	case strings.HasPrefix(name, privatePrefix):
		return kindPrivate
	case strings.HasPrefix(name, presencePrefix):
		return kindPresence
	case strings.HasPrefix(name, serverToUserPrefix):
		return kindServerToUser
	}
	return kindPublic
}

// cachePrefixes are the names of cache channels, which deliver their last
// event to each new subscriber.
var cachePrefixes = []string{"cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"}

func isCacheChannel(name string) bool {
	for _, p := range cachePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
