package pusher_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/pusher"
)

// presenceData is the data of a presence subscription_succeeded.
type presenceData struct {
	Presence struct {
		IDs   []string                  `json:"ids"`
		Hash  map[string]map[string]any `json:"hash"`
		Count int                       `json:"count"`
	} `json:"presence"`
}

func joinPresence(t *testing.T, c *client, channel, id, name string) presenceData {
	t.Helper()
	var d presenceData
	c.join(channel, memberData(id, name)).decode(t, &d)
	return d
}

type memberEvent struct {
	UserID   string         `json:"user_id"`
	UserInfo map[string]any `json:"user_info"`
}

func expectMember(t *testing.T, c *client, event, channel string) memberEvent {
	t.Helper()
	var m memberEvent
	c.expectOn(event, channel).decode(t, &m)
	return m
}

// closeAndWait closes clients and waits until n has seen them end, so
// that what their end caused has been sent.
func closeAndWait(t *testing.T, n *node, cs ...*client) {
	t.Helper()
	want := n.srv.Len() - len(cs)
	for _, c := range cs {
		c.close()
	}
	require.Eventually(t, func() bool { return n.srv.Len() == want }, 5*time.Second, time.Millisecond)
}

func TestPresenceMembers(t *testing.T) {
	n := single(t, nil)
	const ch = "presence-room"
	ann := connect(t, n, testApp.Key)
	d := joinPresence(t, ann, ch, "1", "Ann")
	assert.Equal(t, []string{"1"}, d.Presence.IDs)
	assert.Equal(t, 1, d.Presence.Count)
	assert.Equal(t, map[string]map[string]any{"1": {"name": "Ann"}}, d.Presence.Hash)

	bob := connect(t, n, testApp.Key)
	d = joinPresence(t, bob, ch, "2", "Bob")
	assert.Equal(t, []string{"1", "2"}, d.Presence.IDs)
	assert.Equal(t, 2, d.Presence.Count)
	assert.Equal(t, memberEvent{UserID: "2", UserInfo: map[string]any{"name": "Bob"}}, expectMember(t, ann, "pusher_internal:member_added", ch))
	bob.sync() // not told of itself

	// Bob's second tab: already a member, nobody is told.
	bob2 := connect(t, n, testApp.Key)
	d = joinPresence(t, bob2, ch, "2", "Bob")
	assert.Equal(t, []string{"1", "2"}, d.Presence.IDs)
	ann.sync()
	bob.sync()

	// A numeric user_id, as Laravel sends it.
	num := connect(t, n, testApp.Key)
	num.join(ch, `{"user_id":3,"user_info":{"name":"Cy"}}`)
	assert.Equal(t, "3", expectMember(t, ann, "pusher_internal:member_added", ch).UserID)
	expectMember(t, bob, "pusher_internal:member_added", ch)
	expectMember(t, bob2, "pusher_internal:member_added", ch)
	num.send("pusher:unsubscribe", "", map[string]string{"channel": ch})
	assert.Equal(t, memberEvent{UserID: "3"}, expectMember(t, ann, "pusher_internal:member_removed", ch))
	expectMember(t, bob, "pusher_internal:member_removed", ch)
	expectMember(t, bob2, "pusher_internal:member_removed", ch)

	users := newRequest("GET", "/apps/1/channels/"+ch+"/users", nil).ok(t, n)
	assert.Equal(t, []any{map[string]any{"id": "1"}, map[string]any{"id": "2"}}, users["users"])

	// One of Bob's tabs goes: he stays. The other goes: he leaves, once.
	closeAndWait(t, n, bob)
	ann.sync()
	closeAndWait(t, n, bob2)
	assert.Equal(t, memberEvent{UserID: "2"}, expectMember(t, ann, "pusher_internal:member_removed", ch))
	ann.sync()
}

// One user with tabs on two nodes is one member: member_added once when
// the first tab joins, member_removed once when the last leaves, on every
// node.
func TestPresenceAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, nil), cl.node(t, nil)
	const ch = "presence-chat"
	obsA := connect(t, a, testApp.Key)
	joinPresence(t, obsA, ch, "obs-a", "A")
	obsB := connect(t, b, testApp.Key)
	d := joinPresence(t, obsB, ch, "obs-b", "B")
	assert.Equal(t, []string{"obs-a", "obs-b"}, d.Presence.IDs)
	assert.Equal(t, "obs-b", expectMember(t, obsA, "pusher_internal:member_added", ch).UserID)

	tab1 := connect(t, b, testApp.Key)
	joinPresence(t, tab1, ch, "u", "You")
	assert.Equal(t, "u", expectMember(t, obsA, "pusher_internal:member_added", ch).UserID)
	assert.Equal(t, "u", expectMember(t, obsB, "pusher_internal:member_added", ch).UserID)
	tab2 := connect(t, b, testApp.Key)
	d = joinPresence(t, tab2, ch, "u", "You")
	assert.Equal(t, []string{"obs-a", "obs-b", "u"}, d.Presence.IDs)
	assert.Equal(t, 3, d.Presence.Count)
	tab3 := connect(t, a, testApp.Key) // and one on the other node
	d = joinPresence(t, tab3, ch, "u", "You")
	assert.Equal(t, []string{"obs-a", "obs-b", "u"}, d.Presence.IDs)
	for _, c := range []*client{obsA, obsB, tab1, tab2, tab3} {
		c.sync()
	}

	info := newRequest("GET", "/apps/1/channels/"+ch, nil)
	info.params["info"] = "user_count,subscription_count"
	assert.Equal(t, map[string]any{"occupied": true, "user_count": 3.0, "subscription_count": 5.0}, info.ok(t, a))

	closeAndWait(t, b, tab1, tab2)
	obsA.sync()
	obsB.sync()
	closeAndWait(t, a, tab3)
	assert.Equal(t, memberEvent{UserID: "u"}, expectMember(t, obsA, "pusher_internal:member_removed", ch))
	assert.Equal(t, memberEvent{UserID: "u"}, expectMember(t, obsB, "pusher_internal:member_removed", ch))
	obsA.sync()
	obsB.sync()
}

func TestPresenceLimit(t *testing.T) {
	small := testApp
	small.MaxPresenceMembers = 2
	n := single(t, []pusher.App{small})
	const ch = "presence-small"
	joinPresence(t, connect(t, n, small.Key), ch, "1", "a")
	joinPresence(t, connect(t, n, small.Key), ch, "2", "b")
	joinPresence(t, connect(t, n, small.Key), ch, "2", "b") // a member again: room
	c := connect(t, n, small.Key)
	c.subscribe(ch, channelAuth(small, c.socketID, ch, memberData("3", "c")), memberData("3", "c"))
	f := c.expectOn("pusher:subscription_error", ch)
	assert.Contains(t, f.data(), "LimitReached")
}

func TestPresenceRefusals(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	const ch = "presence-x"
	refused := func(auth, data, typ string) {
		t.Helper()
		c.subscribe(ch, auth, data)
		assert.Contains(t, c.expectOn("pusher:subscription_error", ch).data(), typ)
	}
	// Signed without channel_data, or channel_data changed after signing.
	refused(channelAuth(testApp, c.socketID, ch, ""), memberData("1", "a"), "AuthError")
	refused(channelAuth(testApp, c.socketID, ch, memberData("1", "a")), memberData("2", "a"), "AuthError")
	// Signed, but not a member.
	for _, data := range []string{`{}`, `{"user_id":""}`, `{"user_id":true}`, `[]`, `{"user_id":"1","user_info":"` + strings.Repeat("x", 2000) + `"}`} {
		refused(channelAuth(testApp, c.socketID, ch, data), data, "InvalidChannel")
	}
}

// heldPresence is a MemoryPresence whose events wait until release, as a
// cluster's do on their way through Redis or NATS: a joining subscriber
// gets its member list before its own join is reported.
type heldPresence struct {
	*ratchet.MemoryPresence
	mu     sync.Mutex
	held   bool
	queued []func()
}

func (p *heldPresence) Watch(ctx context.Context, topic string, fn func(ratchet.PresenceEvent)) (func(), error) {
	return p.MemoryPresence.Watch(ctx, topic, func(ev ratchet.PresenceEvent) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.held {
			p.queued = append(p.queued, func() { fn(ev) })
			return
		}
		fn(ev)
	})
}

func (p *heldPresence) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

func (p *heldPresence) release() {
	p.mu.Lock()
	q := p.queued
	p.queued, p.held = nil, false
	p.mu.Unlock()
	for _, f := range q {
		f()
	}
}

func TestPresenceOwnJoinReportedLate(t *testing.T) {
	p := &heldPresence{MemoryPresence: ratchet.NewMemoryPresence()}
	defer p.Close(context.Background())
	n := startNode(t, ratchet.NewHub(ratchet.WithPresence(p)), []pusher.App{testApp})
	const ch = "presence-late"
	obs := connect(t, n, testApp.Key)
	joinPresence(t, obs, ch, "obs", "O")

	p.hold()
	late := connect(t, n, testApp.Key)
	d := joinPresence(t, late, ch, "late", "L")
	assert.Equal(t, []string{"late", "obs"}, d.Presence.IDs, "in its own list before its join is reported")
	assert.Equal(t, map[string]any{"name": "L"}, d.Presence.Hash["late"])
	obs.sync() // not reported yet
	p.release()
	assert.Equal(t, "late", expectMember(t, obs, "pusher_internal:member_added", ch).UserID)
	late.sync() // never told of itself

	// Leaving while the join is still unreported: both events reach the
	// others, in order.
	p.hold()
	quick := connect(t, n, testApp.Key)
	joinPresence(t, quick, ch, "quick", "Q")
	quick.send("pusher:unsubscribe", "", map[string]string{"channel": ch})
	quick.sync()
	p.release()
	assert.Equal(t, "quick", expectMember(t, obs, "pusher_internal:member_added", ch).UserID)
	assert.Equal(t, "quick", expectMember(t, obs, "pusher_internal:member_removed", ch).UserID)
	obs.sync()
}
