package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/internal/brokeropt"
)

// The broker keeps history (ratchet.HistoryBroker) in Redis Streams; see the
// package documentation for the keys and the payloads.

var errNilDeliver = errors.New("ratchet/redis: nil deliver function")

// catchUpPage is how many kept messages one read of a catch-up fetches.
const catchUpPage = 1000

// streamKey is the key of the stream that keeps topic's messages, each
// under the ID "<offset>-0", so that reading after an offset is one XRANGE.
func (b *Broker) streamKey(topic string) string { return b.o.Prefix + "history:" + topic }

// latestKey is the key of the string holding the newest position of topic's
// stream ("epoch:offset"). It differs from every stream key, whatever the
// topic.
func (b *Broker) latestKey(topic string) string { return b.o.Prefix + "history-latest:" + topic }

// publishScript appends a message to a topic's stream and publishes it with
// its position, in one step: positions are given, and messages reach every
// node, in the order Redis ran the scripts.
//
// KEYS: stream, latest. ARGV: channel, payload (a channel payload), "1"
// when the payload is raw text, size, TTL in ms, the epoch of a new stream.
// Returns the position.
//
// A missing latest key starts a new epoch at offset 1. The first message of
// an epoch drops what the stream key may hold (a stream that outlived its
// latest key, evicted say): its IDs would not follow. XADD runs before the
// latest key is written, so a failing XADD changes nothing.
var publishScript = goredis.NewScript(`
local latest = redis.call('GET', KEYS[2])
local epoch, offset = ARGV[6], 1
if latest then
  local colon = string.find(latest, ':', 1, true)
  epoch = string.sub(latest, 1, colon - 1)
  offset = tonumber(string.sub(latest, colon + 1)) + 1
end
if offset == 1 then
  redis.call('DEL', KEYS[1])
end
local id = string.format('%d', offset)
local pos = epoch .. ':' .. id
redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[4], id .. '-0', 'd', ARGV[2])
redis.call('SET', KEYS[2], pos, 'PX', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local head = '{"position":"' .. pos .. '",'
if ARGV[3] == '1' then
  redis.call('PUBLISH', ARGV[1], head .. '"ratchet":1,"type":"text","data":' .. cjson.encode(ARGV[2]) .. '}')
else
  redis.call('PUBLISH', ARGV[1], head .. string.sub(ARGV[2], 2))
end
return pos
`)

// newEpoch returns the epoch of a new stream: random, so that a stream
// re-created after it was lost never reuses an old one's name.
func newEpoch() string { return strconv.FormatUint(rand.Uint64(), 36) }

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
	if b.closed.Load() {
		return ratchet.Position{}, ratchet.ErrBrokerClosed
	}
	policy = brokeropt.HistoryPolicy(policy)
	payload, raw := encodeHistory(msg)
	rawFlag := "0"
	if raw {
		rawFlag = "1"
	}
	keys := []string{b.streamKey(topic), b.latestKey(topic)}
	args := []any{b.Channel(topic), payload, rawFlag, policy.Size, max(policy.TTL.Milliseconds(), 1), newEpoch()}
	var pos ratchet.Position
	err := b.call(ctx, func() error {
		s, err := publishScript.Run(ctx, b.client, keys, args...).Text()
		if err == nil {
			pos, err = ratchet.ParsePosition(s)
		}
		return err
	})
	if err != nil {
		return ratchet.Position{}, fmt.Errorf("ratchet/redis: publish with history: %w", err)
	}
	return pos, nil
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
		return nil, err // not a nil *topicsubs.Sub in a non-nil interface
	}
	return s, nil
}

// History implements ratchet.HistoryBroker. It reads the newest position
// and up to limit entries of the stream in one transaction: one round trip
// whatever limit is. Only when since is of another epoch, or after the
// newest position, a second read fetches the oldest kept messages.
func (b *Broker) History(ctx context.Context, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	if err := ctx.Err(); err != nil {
		return ratchet.HistoryPage{}, err
	}
	if b.closed.Load() {
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

// readHistory is History without its effect on catch-ups.
func (b *Broker) readHistory(ctx context.Context, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	limit = max(limit, 0)
	page, err := b.readRange(ctx, topic, since, limit)
	if err == nil && page.Lost && limit > 0 && len(page.Publications) == 0 && page.Latest.Offset > 0 {
		// since is of another epoch, or after the newest position: the
		// page holds the oldest kept messages, as it does for a trimmed
		// since.
		var oldest ratchet.HistoryPage
		if oldest, err = b.readRange(ctx, topic, ratchet.Position{}, limit); err == nil {
			page.Publications, page.Latest = oldest.Publications, oldest.Latest
		}
	}
	if err != nil {
		return ratchet.HistoryPage{}, fmt.Errorf("ratchet/redis: history of %q: %w", topic, err)
	}
	return page, nil
}

// readRange reads, in one MULTI/EXEC, the newest position of topic and up
// to limit entries of its stream after since (from the oldest when since is
// zero), and tells whether they follow since. A topic without a stream gets
// an empty one (newest position "<new epoch>:0", ratchet.DefaultHistoryTTL),
// so that Latest is a position a client can resume from: every message
// published after the read follows it.
func (b *Broker) readRange(ctx context.Context, topic string, since ratchet.Position, limit int) (ratchet.HistoryPage, error) {
	start, count := "-", int64(limit)
	if !since.IsZero() {
		// One entry at least, to see whether the one after since is kept.
		start, count = strconv.FormatUint(since.Offset+1, 10), max(count, 1)
		if since.Offset >= math.MaxInt64 { // after any offset: lost
			count = 0
		}
	}
	var created *goredis.BoolCmd
	var latest *goredis.StringCmd
	var entries *goredis.XMessageSliceCmd
	err := b.call(ctx, func() error {
		_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			created = p.SetNX(ctx, b.latestKey(topic), newEpoch()+":0", ratchet.DefaultHistoryTTL)
			latest = p.Get(ctx, b.latestKey(topic))
			if count > 0 {
				entries = p.XRangeN(ctx, b.streamKey(topic), start, "+", count)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return ratchet.HistoryPage{}, err
	}
	var page ratchet.HistoryPage
	if page.Latest, err = ratchet.ParsePosition(latest.Val()); err != nil || page.Latest.IsZero() {
		return ratchet.HistoryPage{}, fmt.Errorf("bad newest position %q", latest.Val())
	}
	if created.Val() { // no stream: since, if any, is of a lost one
		page.Lost = !since.IsZero()
		return page, nil
	}
	if entries != nil {
		page.Publications = make([]ratchet.Publication, 0, len(entries.Val()))
		for _, e := range entries.Val() {
			p, err := parseEntry(topic, page.Latest.Epoch, e)
			if err != nil {
				return ratchet.HistoryPage{}, err
			}
			if p.Position.Offset > page.Latest.Offset {
				break // of a stream that outlived its latest key: a lost life
			}
			page.Publications = append(page.Publications, p)
		}
	}
	switch {
	case since.IsZero():
	case since.Epoch != page.Latest.Epoch || since.Offset > page.Latest.Offset:
		page.Lost, page.Publications = true, nil
	case since.Offset == page.Latest.Offset:
	case len(page.Publications) == 0 || page.Publications[0].Position.Offset != since.Offset+1:
		page.Lost = true // trimmed or expired: the page holds the oldest kept
	}
	if len(page.Publications) > limit {
		page.Publications = page.Publications[:limit]
	}
	return page, nil
}

// parseEntry reads one stream entry, ID "<offset>-0" and field d.
func parseEntry(topic, epoch string, e goredis.XMessage) (ratchet.Publication, error) {
	digits, ok := strings.CutSuffix(e.ID, "-0")
	offset, err := strconv.ParseUint(digits, 10, 64)
	payload, isString := e.Values["d"].(string)
	if !ok || err != nil || !isString || len(e.Values) != 1 {
		return ratchet.Publication{}, fmt.Errorf("unexpected stream entry %v %v", e.ID, e.Values)
	}
	msg, _ := decodeChecked(payload)
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
		b.fill(t, strings.TrimPrefix(channel, b.o.Prefix), from, ratchet.Position{})
	}
}

// fill delivers to t's subscribers the kept publications of topic after
// from and before upto (all of them when upto is zero), reading the stream
// catchUpPage messages at a time. When from is no longer kept it delivers
// the oldest kept ones: the position then shows the gap. A failed read is
// reported; the positions show the gap too.
func (b *Broker) fill(t *topic, topic string, from, upto ratchet.Position) {
	for {
		ctx, cancel := context.WithTimeout(b.ctx, b.o.HealthInterval)
		page, err := b.readHistory(ctx, topic, from, catchUpPage)
		cancel()
		if err != nil {
			if !b.closed.Load() {
				b.o.Report(slog.LevelWarn, "catch-up from the stream failed", err, "topic", topic)
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
			b.mu.Unlock()
			if ok {
				t.subs.Deliver(p, t.report)
			}
			from = p.Position
		}
		if len(page.Publications) < catchUpPage {
			return
		}
	}
}
