package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
)

// The broker keeps history (ratchet.HistoryBroker) in Redis Streams; see the
// package documentation for the keys and the payloads.

var errNilDeliver = errors.New("ratchet/redis: nil deliver function")

// catchUpPage is how many kept messages one read of a catch-up fetches.
const catchUpPage = 1000

// streamKey is the key of the stream that keeps topic's messages, each
// under the ID "<offset>-0", so that reading after an offset is one XRANGE.
func (b *Broker) streamKey(topic string) string { return b.o.prefix + "history:" + topic }

// metaKey is the key of the hash holding the epoch and the newest offset of
// topic's stream. It differs from every stream key, whatever the topic.
func (b *Broker) metaKey(topic string) string { return b.o.prefix + "history-meta:" + topic }

// publishScript appends a message to a topic's stream and publishes it with
// its position, in one step: positions are given, and messages reach every
// node, in the order Redis ran the scripts.
//
// KEYS: stream, meta. ARGV: channel, payload (a channel payload), "1" when
// the payload is raw text, size, TTL in ms, the epoch of a new stream.
// Returns {epoch, offset}.
//
// A missing meta starts a new epoch at offset 1 (a stream left without its
// meta is dropped: its IDs would not follow). XADD runs before the meta is
// written, so a failing XADD changes nothing.
var publishScript = goredis.NewScript(`
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'offset')
local epoch, offset = meta[1], 1
if epoch then
  offset = tonumber(meta[2]) + 1
else
  epoch = ARGV[6]
  redis.call('DEL', KEYS[1])
end
local id = string.format('%d', offset)
redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[4], id .. '-0', 'd', ARGV[2])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', id)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local head = '{"position":"' .. epoch .. ':' .. id .. '",'
if ARGV[3] == '1' then
  redis.call('PUBLISH', ARGV[1], head .. '"ratchet":1,"type":"text","data":' .. cjson.encode(ARGV[2]) .. '}')
else
  redis.call('PUBLISH', ARGV[1], head .. string.sub(ARGV[2], 2))
end
return {epoch, offset}
`)

// historyScript reads a topic's stream and its meta in one step.
//
// KEYS: stream, meta. ARGV: the epoch of since ("" for none), its offset,
// limit. Returns {} when there is no stream, else {epoch, newest offset,
// lost (0 or 1), entries}: the entries after since, or the oldest kept ones
// when since is lost or none; at most limit of them.
var historyScript = goredis.NewScript(`
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'offset')
if not meta[1] then
  return {}
end
local epoch, latest = meta[1], tonumber(meta[2])
local since, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local lost, entries = 0, {}
if ARGV[1] ~= '' and (ARGV[1] ~= epoch or since > latest) then
  lost = 1
elseif ARGV[1] ~= '' then
  if since == latest then
    return {epoch, latest, 0, {}}
  end
  local next = string.format('%d', since + 1)
  entries = redis.call('XRANGE', KEYS[1], next, '+', 'COUNT', math.max(limit, 1))
  if #entries == 0 or entries[1][1] ~= next .. '-0' then
    lost = 1
  end
  if limit < 1 then
    entries = {}
  end
  return {epoch, latest, lost, entries}
end
if limit > 0 then
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', limit)
end
return {epoch, latest, lost, entries}
`)

// newEpoch returns the epoch of a new stream: random, so that a stream
// re-created after it was lost never reuses an old one's name.
func newEpoch() string { return strconv.FormatUint(rand.Uint64(), 36) }

// withDefaults fills the zero fields of policy as ratchet.WithHistory does.
func withDefaults(policy ratchet.HistoryPolicy) ratchet.HistoryPolicy {
	if policy.Size <= 0 {
		policy.Size = ratchet.DefaultHistorySize
	}
	if policy.TTL <= 0 {
		policy.TTL = ratchet.DefaultHistoryTTL
	}
	return policy
}

// PublishHistory implements ratchet.HistoryBroker: one Lua script appends
// msg to the topic's stream (trimmed to policy.Size messages, expiring
// policy.TTL after this publish) and publishes it on the topic's channel
// with its position. Zero fields of policy take ratchet.DefaultHistorySize
// and ratchet.DefaultHistoryTTL. Like Publish it returns an error, never
// later than ctx allows, when Redis cannot be reached.
func (b *Broker) PublishHistory(ctx context.Context, topic string, msg ratchet.Message, policy ratchet.HistoryPolicy) (ratchet.Position, error) {
	if err := ctx.Err(); err != nil {
		return ratchet.Position{}, err
	}
	if b.isClosed.Load() {
		return ratchet.Position{}, ratchet.ErrBrokerClosed
	}
	policy = withDefaults(policy)
	payload, raw := encodeHistory(msg)
	rawFlag := "0"
	if raw {
		rawFlag = "1"
	}
	keys := []string{b.streamKey(topic), b.metaKey(topic)}
	args := []any{b.Channel(topic), payload, rawFlag, policy.Size, max(policy.TTL.Milliseconds(), 1), newEpoch()}
	var pos ratchet.Position
	err := b.call(ctx, func() error {
		v, err := publishScript.Run(ctx, b.client, keys, args...).Slice()
		if err != nil {
			return err
		}
		pos, err = scriptPosition(v)
		return err
	})
	if err != nil {
		return ratchet.Position{}, fmt.Errorf("ratchet/redis: publish with history: %w", err)
	}
	return pos, nil
}

// scriptPosition reads the {epoch, offset} publishScript returns.
func scriptPosition(v []any) (ratchet.Position, error) {
	if len(v) == 2 {
		epoch, ok1 := v[0].(string)
		offset, ok2 := v[1].(int64)
		if ok1 && ok2 && offset > 0 {
			return ratchet.Position{Epoch: epoch, Offset: uint64(offset)}, nil
		}
	}
	return ratchet.Position{}, fmt.Errorf("unexpected script answer %v", v)
}

// SubscribePublications implements ratchet.HistoryBroker; it is Subscribe
// with each message's position. Messages published with PublishHistory
// reach every node in position order. After an outage, and should the
// positions ever jump, the broker first delivers from the stream what the
// subscription missed after the newest position it delivered (or, before
// any delivery, the newest one History reported), so a subscription misses
// nothing the stream still keeps; when the stream lost messages, the next
// position shows it (a new epoch, or an offset that skips).
func (b *Broker) SubscribePublications(ctx context.Context, topic string, deliver func(ratchet.Publication)) (ratchet.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if deliver == nil {
		return nil, errNilDeliver
	}
	s, err := b.subscribeChannel(ctx, b.Channel(topic), deliver)
	if err != nil {
		return nil, err // not a nil *subscription in a non-nil interface
	}
	return s, nil
}

// History implements ratchet.HistoryBroker with one Lua script (one round
// trip, whatever limit is): the meta and up to limit entries of the stream.
func (b *Broker) History(ctx context.Context, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	if err := ctx.Err(); err != nil {
		return ratchet.HistoryPage{}, err
	}
	if b.isClosed.Load() {
		return ratchet.HistoryPage{}, ratchet.ErrBrokerClosed
	}
	page, err := b.readHistory(ctx, topic, since, limit)
	if err != nil {
		return ratchet.HistoryPage{}, err
	}
	// A subscriber that read this page expects what follows it: a catch-up
	// before any delivery resumes from here.
	b.mu.Lock()
	if t := b.topics[b.Channel(topic)]; t != nil && t.last.IsZero() && t.anchor.IsZero() {
		t.anchor = page.Latest
	}
	b.mu.Unlock()
	return page, nil
}

func (b *Broker) readHistory(ctx context.Context, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	keys := []string{b.streamKey(topic), b.metaKey(topic)}
	args := []any{since.Epoch, strconv.FormatUint(since.Offset, 10), max(limit, 0)}
	var page ratchet.HistoryPage
	err := b.call(ctx, func() error {
		v, err := historyScript.Run(ctx, b.client, keys, args...).Slice()
		if err != nil {
			return err
		}
		page, err = parsePage(topic, v)
		return err
	})
	if err != nil {
		return ratchet.HistoryPage{}, fmt.Errorf("ratchet/redis: history of %q: %w", topic, err)
	}
	if page.Latest.IsZero() {
		page.Lost = !since.IsZero()
	}
	return page, nil
}

// parsePage reads what historyScript returns.
func parsePage(topic string, v []any) (ratchet.HistoryPage, error) {
	var page ratchet.HistoryPage
	if len(v) == 0 {
		return page, nil
	}
	bad := fmt.Errorf("unexpected script answer %v", v)
	if len(v) != 4 {
		return page, bad
	}
	epoch, ok1 := v[0].(string)
	latest, ok2 := v[1].(int64)
	lost, ok3 := v[2].(int64)
	entries, ok4 := v[3].([]any)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return page, bad
	}
	page.Latest = ratchet.Position{Epoch: epoch, Offset: uint64(latest)}
	page.Lost = lost == 1
	page.Publications = make([]ratchet.Publication, 0, len(entries))
	for _, e := range entries {
		p, err := parseEntry(topic, epoch, e)
		if err != nil {
			return ratchet.HistoryPage{}, err
		}
		page.Publications = append(page.Publications, p)
	}
	return page, nil
}

// parseEntry reads one stream entry, {"<offset>-0", {"d", payload}}.
func parseEntry(topic, epoch string, e any) (ratchet.Publication, error) {
	bad := fmt.Errorf("unexpected stream entry %v", e)
	entry, ok := e.([]any)
	if !ok || len(entry) != 2 {
		return ratchet.Publication{}, bad
	}
	id, _ := entry[0].(string)
	fields, _ := entry[1].([]any)
	digits, ok := strings.CutSuffix(id, "-0")
	offset, err := strconv.ParseUint(digits, 10, 64)
	if !ok || err != nil || len(fields) != 2 || fields[0] != "d" {
		return ratchet.Publication{}, bad
	}
	payload, ok := fields[1].(string)
	if !ok {
		return ratchet.Publication{}, bad
	}
	msg, _ := decodeString(payload)
	return ratchet.Publication{Topic: topic, Position: ratchet.Position{Epoch: epoch, Offset: offset}, Message: msg}, nil
}

// follows reports whether p comes after q in a topic's stream: q is zero,
// or of an older epoch (a stream has one epoch at a time), or before p.
func follows(p, q ratchet.Position) bool {
	return q.IsZero() || p.Epoch != q.Epoch || p.Offset > q.Offset
}

// resumeFrom is where a catch-up of t starts: the newest position its
// subscribers are known to have. b.mu is held.
func (t *topic) resumeFrom() ratchet.Position {
	if t.anchor.IsZero() || t.anchor.Epoch == t.last.Epoch && t.anchor.Offset <= t.last.Offset {
		return t.last
	}
	if t.last.IsZero() || t.anchor.Epoch == t.last.Epoch {
		return t.anchor
	}
	return t.last // a delivery of a newer epoch came after the anchor
}

// inOrder runs on the receiving goroutine for each publication p with a
// position, before it is delivered: it reports false for one delivered
// already (by a catch-up), and when p skips positions after the newest one
// the subscribers have, it first delivers the ones in between from the
// stream.
func (b *Broker) inOrder(t *topic, p ratchet.Publication) bool {
	b.mu.Lock()
	last, from := t.last, t.resumeFrom()
	b.mu.Unlock()
	if !follows(p.Position, last) {
		return false
	}
	switch {
	case from.IsZero():
	case p.Position.Epoch != from.Epoch && p.Position.Offset > 1:
		b.fill(t, p.Topic, ratchet.Position{Epoch: p.Position.Epoch}, p.Position)
	case p.Position.Epoch == from.Epoch && p.Position.Offset > from.Offset+1:
		b.fill(t, p.Topic, from, p.Position)
	}
	b.mu.Lock()
	ok := follows(p.Position, t.last)
	if ok {
		t.last = p.Position
	}
	b.mu.Unlock()
	return ok
}

// catchUp runs on the receiving goroutine when Redis confirmed the
// SUBSCRIBE of channel: after a reconnection, it delivers what was
// published on the topic while the node was not subscribed.
func (b *Broker) catchUp(channel string) {
	b.mu.Lock()
	t := b.topics[channel]
	var from ratchet.Position
	if t != nil && t.done {
		from = t.resumeFrom()
	}
	b.mu.Unlock()
	if !from.IsZero() {
		b.fill(t, strings.TrimPrefix(channel, b.o.prefix), from, ratchet.Position{})
	}
}

// fill delivers to t's subscribers the kept publications of topic after
// from and before upto (all of them when upto is zero), reading the stream
// catchUpPage messages at a time. When from is no longer kept it delivers
// the oldest kept ones: the position then shows the gap. A failed read is
// reported; the positions show the gap too.
func (b *Broker) fill(t *topic, topic string, from, upto ratchet.Position) {
	for {
		ctx, cancel := context.WithTimeout(b.ctx, b.o.healthInterval)
		page, err := b.readHistory(ctx, topic, from, catchUpPage)
		cancel()
		if err != nil {
			if !b.isClosed.Load() {
				b.o.logger.Warn("ratchet/redis: catch-up from the stream failed", "topic", topic, "error", err)
				b.report(err)
			}
			return
		}
		for _, p := range page.Publications {
			if !upto.IsZero() && (p.Position.Epoch != upto.Epoch || p.Position.Offset >= upto.Offset) {
				return
			}
			b.mu.Lock()
			ok := follows(p.Position, t.last)
			if ok {
				t.last = p.Position
			}
			subs := t.subs
			b.mu.Unlock()
			if ok {
				for _, s := range subs {
					b.deliver(s, p)
				}
			}
			from = p.Position
		}
		if len(page.Publications) < catchUpPage {
			return
		}
	}
}
