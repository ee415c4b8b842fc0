package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokeropt"
	"github.com/ratchetgo/ratchet/internal/presencenode"
)

// Presence defaults. DefaultPresencePrefix is the presence prefix of a
// broker with the default prefix; see WithPresencePrefix for the others.
const (
	DefaultPresencePrefix = "ratchet-presence:"
	DefaultPresenceTTL    = 30 * time.Second
)

// minPresenceTTL is the shortest TTL WithPresenceTTL accepts: Redis expires
// by the millisecond, and a heartbeat must fit within a third of it.
const minPresenceTTL = 30 * time.Millisecond

// PresenceOption configures a Presence.
type PresenceOption func(*presenceOptions)

type presenceOptions struct {
	presencenode.Options
	prefix string
}

// WithPresencePrefix sets the prefix of the keys and channels the presence
// uses, shared by every node of one application. No channel of a topic may
// start with it. By default it follows the broker's prefix (see
// PresencePrefix), so that applications with their own prefix on one Redis
// have their own presence: "ratchet-presence:" for the default prefix
// "ratchet:", "myapp-presence:" for "myapp:".
func WithPresencePrefix(prefix string) PresenceOption {
	return func(o *presenceOptions) { o.prefix = prefix }
}

// WithPresenceTTL sets how long the entries of a node that stopped
// refreshing them (it died, or lost Redis) stay valid (default 30s). A node
// refreshes its entries every TTL/3, and reaps expired ones of the topics it
// uses, publishing their leave events, as often.
func WithPresenceTTL(d time.Duration) PresenceOption {
	return func(o *presenceOptions) { o.TTL = d }
}

// WithNodeID names this node in the presence entries (default: random). Two
// live nodes must not share one.
func WithNodeID(id string) PresenceOption { return func(o *presenceOptions) { o.NodeID = id } }

// Presence is a ratchet.Presence on Redis, for one node. See the package
// documentation for the keys and the events channel.
type Presence struct {
	b      *Broker
	client *goredis.Client
	o      presenceOptions
	node   *presencenode.Node

	mu      sync.Mutex
	watched map[string]int // watches by topic, whose expired entries the heartbeat reaps
}

type member = presencenode.Member

// presenceEvent is the JSON published on a topic's events channel.
type presenceEvent struct {
	Kind string `json:"kind"` // "join" or "leave"
	User string `json:"user"`
}

// The scripts take the server's clock, so nodes' clocks need not agree.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// KEYS: members, user. ARGV: node, ttl ms, user, channel, join event,
// leave event.
var joinScript = goredis.NewScript(luaNow + `
local ttl = tonumber(ARGV[2])
local exp = now + ttl
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], exp, ARGV[1])
redis.call('PEXPIRE', KEYS[2], 3 * ttl)
if not score or tonumber(score) < exp then
  redis.call('ZADD', KEYS[1], exp, ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], 3 * ttl)
if score and tonumber(score) > now then
  return 0
end
if score then
  redis.call('PUBLISH', ARGV[4], ARGV[6])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`)

// KEYS: members, user. ARGV: node, user, channel, leave event.
var leaveScript = goredis.NewScript(luaNow + `
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #top == 0 then
  redis.call('DEL', KEYS[2])
  if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
    redis.call('PUBLISH', ARGV[3], ARGV[4])
    return 1
  end
  return 0
end
redis.call('ZADD', KEYS[1], top[2], ARGV[2])
return 0
`)

// KEYS: members. ARGV: user key prefix, channel.
var reapScript = goredis.NewScript(luaNow + `
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, u in ipairs(gone) do
  redis.call('ZREM', KEYS[1], u)
  redis.call('DEL', ARGV[1] .. u)
  redis.call('PUBLISH', ARGV[2], cjson.encode({kind = 'leave', user = u}))
end
return #gone
`)

// KEYS: members.
var membersScript = goredis.NewScript(luaNow + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`)

// NewPresence returns the presence of this node, on b's client and b's
// pub/sub connection (for Watch), and starts its heartbeat. Close it before
// closing b.
func NewPresence(b *Broker, opts ...PresenceOption) *Presence {
	o := presenceOptions{prefix: PresencePrefix(b.o.Prefix), Options: presencenode.Options{TTL: DefaultPresenceTTL}}
	for _, opt := range opts {
		opt(&o)
	}
	o.Check(DefaultPresenceTTL, minPresenceTTL)
	p := &Presence{b: b, client: b.client, o: o, watched: make(map[string]int)}
	p.node = presencenode.Start(o.TTL, presencenode.Backend{
		Join: func(ctx context.Context, m member) error {
			if err := p.runJoin(ctx, p.client, m).Err(); err != nil {
				return fmt.Errorf("ratchet/redis: presence join: %w", err)
			}
			return nil
		},
		Leave: func(ctx context.Context, m member) error {
			if err := p.runLeave(ctx, p.client, m).Err(); err != nil {
				return fmt.Errorf("ratchet/redis: presence leave: %w", err)
			}
			return nil
		},
		Beat:   p.beat,
		Remove: p.remove,
		BeatFailed: func(err error) {
			b.o.Report(slog.LevelWarn, "presence heartbeat failed", fmt.Errorf("ratchet/redis: presence heartbeat: %w", err))
		},
		Closed: ErrPresenceClosed,
	})
	return p
}

var _ ratchet.Presence = (*Presence)(nil)

// ErrPresenceClosed is returned by a Presence used after Close.
var ErrPresenceClosed = errors.New("ratchet/redis: presence closed")

// PresencePrefix returns the default presence prefix of a broker with the
// given prefix: the prefix without its final colon, followed by
// "-presence:". A prefix that does not end with a colon is followed by
// "@presence:" instead: no client topic starts with "@"
// (ratchet.ReservedTopicPrefix), so no topic's channel can be a presence
// key or channel.
func PresencePrefix(prefix string) string {
	if base, ok := strings.CutSuffix(prefix, ":"); ok {
		return base + "-presence:"
	}
	return prefix + "@presence:"
}

// MembersKey returns the sorted set holding topic's members: each user,
// scored with the time (Unix milliseconds, Redis clock) its entry expires.
func (p *Presence) MembersKey(topic string) string { return p.o.prefix + "m:" + topic }

// EventsChannel returns the channel on which topic's join and leave events
// are published.
func (p *Presence) EventsChannel(topic string) string { return p.o.prefix + "e:" + topic }

// userKeyPrefix is unambiguous whatever the topic contains.
func (p *Presence) userKeyPrefix(topic string) string {
	return p.o.prefix + "u:" + strconv.Itoa(len(topic)) + ":" + topic + ":"
}

func event(kind, user string) string {
	b, _ := json.Marshal(presenceEvent{Kind: kind, User: user})
	return string(b)
}

// Join implements ratchet.Presence.
func (p *Presence) Join(ctx context.Context, topic, user string) error {
	return p.node.Join(ctx, member{Topic: topic, User: user})
}

// Leave implements ratchet.Presence. When the backend call fails, the
// entry still expires after the TTL, since the heartbeat no longer
// refreshes it.
func (p *Presence) Leave(ctx context.Context, topic, user string) error {
	return p.node.Leave(ctx, member{Topic: topic, User: user})
}

// The scripts' keys and arguments for a member, whether run at once or in
// a pipeline.
func (p *Presence) joinArgs(m member) ([]string, []any) {
	return []string{p.MembersKey(m.Topic), p.userKeyPrefix(m.Topic) + m.User},
		[]any{p.o.NodeID, p.o.TTL.Milliseconds(), m.User, p.EventsChannel(m.Topic), event("join", m.User), event("leave", m.User)}
}

func (p *Presence) leaveArgs(m member) ([]string, []any) {
	return []string{p.MembersKey(m.Topic), p.userKeyPrefix(m.Topic) + m.User},
		[]any{p.o.NodeID, m.User, p.EventsChannel(m.Topic), event("leave", m.User)}
}

func (p *Presence) runJoin(ctx context.Context, c goredis.Scripter, m member) *goredis.Cmd {
	keys, args := p.joinArgs(m)
	return joinScript.Run(ctx, c, keys, args...)
}

func (p *Presence) runLeave(ctx context.Context, c goredis.Scripter, m member) *goredis.Cmd {
	keys, args := p.leaveArgs(m)
	return leaveScript.Run(ctx, c, keys, args...)
}

// Members implements ratchet.Presence.
func (p *Presence) Members(ctx context.Context, topic string) ([]string, error) {
	users, err := membersScript.Run(ctx, p.client, []string{p.MembersKey(topic)}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("ratchet/redis: presence members: %w", err)
	}
	slices.Sort(users)
	return users, nil
}

// Watch implements ratchet.Presence. fn runs on the broker's receiving
// goroutine: it must return quickly. While the node watches a topic, its
// heartbeat reaps the topic's expired entries, so watching nodes see the
// leaves of users whose node died.
func (p *Presence) Watch(ctx context.Context, topic string, fn func(ratchet.PresenceEvent)) (func(), error) {
	if p.node.Closed() {
		return nil, ErrPresenceClosed
	}
	p.mu.Lock()
	p.watched[topic]++
	p.mu.Unlock()
	sub, err := p.b.subscribeChannel(ctx, p.EventsChannel(topic), func(pub ratchet.Publication) {
		var e presenceEvent
		if json.Unmarshal(pub.Message.Data, &e) != nil || e.User == "" {
			return
		}
		ev := ratchet.PresenceEvent{Topic: topic, User: e.User}
		switch e.Kind {
		case "join":
			ev.Kind = ratchet.PresenceJoin
		case "leave":
			ev.Kind = ratchet.PresenceLeave
		default:
			return
		}
		fn(ev)
	})
	if err != nil {
		p.unwatch(topic)
		return nil, fmt.Errorf("ratchet/redis: presence watch: %w", err)
	}
	return p.node.Watch(func() {
		_ = brokeropt.Cleanup(sub.Unsubscribe)
		p.unwatch(topic)
	})
}

func (p *Presence) unwatch(topic string) {
	p.mu.Lock()
	if p.watched[topic]--; p.watched[topic] <= 0 {
		delete(p.watched, topic)
	}
	p.mu.Unlock()
}

// beat refreshes this node's entries and reaps the expired ones of the
// topics this node uses, in one pipeline.
func (p *Presence) beat(ctx context.Context, members []member) error {
	p.mu.Lock()
	topics := make(map[string]bool, len(p.watched))
	for _, m := range members {
		topics[m.Topic] = true
	}
	for t := range p.watched {
		topics[t] = true
	}
	p.mu.Unlock()
	if len(topics) == 0 {
		return nil
	}
	// EVALSHA in a pipeline does not fall back to EVAL: load first (Redis
	// may have restarted and forgotten the scripts).
	for _, s := range []*goredis.Script{joinScript, reapScript} {
		if err := s.Load(ctx, p.client).Err(); err != nil {
			return err
		}
	}
	pipe := p.client.Pipeline()
	for _, m := range members {
		keys, args := p.joinArgs(m)
		joinScript.EvalSha(ctx, pipe, keys, args...)
	}
	for t := range topics {
		reapScript.EvalSha(ctx, pipe, []string{p.MembersKey(t)}, p.userKeyPrefix(t), p.EventsChannel(t))
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Close implements ratchet.Presence: it stops the heartbeat and the
// watches, and removes this node's entries.
func (p *Presence) Close(ctx context.Context) error { return p.node.Close(ctx) }

// remove removes this node's entries of members, in one pipeline.
func (p *Presence) remove(ctx context.Context, members []member) error {
	if err := leaveScript.Load(ctx, p.client).Err(); err != nil {
		return fmt.Errorf("ratchet/redis: presence close: %w", err)
	}
	pipe := p.client.Pipeline()
	for _, m := range members {
		keys, args := p.leaveArgs(m)
		leaveScript.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ratchet/redis: presence close: %w", err)
	}
	return nil
}

// crash stops the heartbeat without removing anything, as a dying node
// would. For tests.
func (p *Presence) crash() { p.node.Crash() }
