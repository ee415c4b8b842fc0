package pusher

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/ratchetgo/ratchet"
)

// presenceTopic is the Presence topic of a presence channel's members. Its
// "@" keeps it apart from the topics the Hub records presence on.
func (a *app) presenceTopic(channel string) string { return "@pusher/" + a.topic(channel) }

// presenceState is a presence channel on a node that has subscribers to it:
// the channel's members cluster-wide, followed on the Presence (a Watch,
// started with the members it has), and the local subscribers to tell of
// changes.
//
// The Presence reports a member (user_id and user_info) when its first
// connection joins on any node and when its last one leaves; every node
// hears it and tells its own subscribers: member_added when the user_id
// had no member yet, member_removed when it has none left. So one user with
// two tabs on two nodes is added once and removed once, everywhere.
type presenceState struct {
	a       *app
	channel string
	topic   string // on the Presence
	refs    int    // guarded by a.mu
	ready   chan struct{}
	err     error // set before ready closes
	stop    func()

	mu       sync.Mutex
	loading  bool                    // events are buffered until the first members are read
	buffered []ratchet.PresenceEvent // while loading
	users    userMembers
	local    ratchet.ConnSet // subscribers on this node that got subscription_succeeded
	// expect holds, by member, the subscribers whose own join is still to
	// be reported: they are in the member list they were given, so the
	// member_added of that join is not for them.
	expect map[string][]ratchet.Conn
}

// userMembers are the members of a presence channel by user id: the
// user_info each member (user_id and user_info, encoded) joined with. A
// user is in the channel while it has a member; usually it has one, more
// when its connections joined with different user_info.
type userMembers map[string]map[string]json.RawMessage

// join records member m of user id; it reports whether the user is new.
func (u userMembers) join(id, m string, info json.RawMessage) bool {
	ms := u[id]
	if _, seen := ms[m]; seen {
		return false
	}
	if ms == nil {
		ms = make(map[string]json.RawMessage, 1)
		u[id] = ms
	}
	ms[m] = info
	return len(ms) == 1
}

// leave forgets member m of user id; it reports whether the user is gone.
func (u userMembers) leave(id, m string) bool {
	ms := u[id]
	if _, seen := ms[m]; !seen {
		return false
	}
	delete(ms, m)
	if len(ms) > 0 {
		return false
	}
	delete(u, id)
	return true
}

// info returns the user_info of user id, the same on every node: that of
// its smallest encoded member.
func (u userMembers) info(id string) json.RawMessage {
	var first string
	for m := range u[id] {
		if first == "" || m < first {
			first = m
		}
	}
	if info := u[id][first]; info != nil {
		return info
	}
	return json.RawMessage("null")
}

// acquirePresence returns the state of a presence channel, following its
// members from now on if nobody on this node did. releasePresence undoes
// it.
func (a *app) acquirePresence(ctx context.Context, channel string) (*presenceState, error) {
	a.mu.Lock()
	ps := a.presence[channel]
	if ps != nil {
		ps.refs++
		a.mu.Unlock()
		select {
		case <-ps.ready:
			if ps.err != nil {
				return nil, ps.err
			}
			return ps, nil
		case <-ctx.Done():
			a.releasePresence(ps)
			return nil, ctx.Err()
		}
	}
	ps = &presenceState{
		a:       a,
		channel: channel,
		topic:   a.presenceTopic(channel),
		refs:    1,
		ready:   make(chan struct{}),
		loading: true,
		users:   make(userMembers),
		expect:  make(map[string][]ratchet.Conn),
	}
	a.presence[channel] = ps
	a.mu.Unlock()
	if ps.err = ps.load(ctx); ps.err != nil {
		a.mu.Lock()
		if a.presence[channel] == ps {
			delete(a.presence, channel)
		}
		a.mu.Unlock()
		close(ps.ready)
		return nil, ps.err
	}
	close(ps.ready)
	return ps, nil
}

// load starts following the members: Watch first, then the members so
// far, then the events heard meanwhile, which the members may or may not
// include already (applying them is idempotent, and the last event of a
// member is its state).
func (ps *presenceState) load(ctx context.Context) error {
	p := ps.a.s.presence
	stop, err := p.Watch(ctx, ps.topic, ps.onEvent)
	if err != nil {
		return err
	}
	members, err := p.Members(ctx, ps.topic)
	if err != nil {
		stop()
		return err
	}
	ps.mu.Lock()
	for _, m := range members {
		ps.apply(ratchet.PresenceEvent{Kind: ratchet.PresenceJoin, User: m}, false)
	}
	for _, ev := range ps.buffered {
		ps.apply(ev, false)
	}
	ps.buffered, ps.loading = nil, false
	ps.mu.Unlock()
	ps.stop = stop
	return nil
}

// releasePresence undoes one acquirePresence; the last one stops following
// the channel.
func (a *app) releasePresence(ps *presenceState) {
	a.mu.Lock()
	ps.refs--
	last := ps.refs == 0 && a.presence[ps.channel] == ps
	if last {
		delete(a.presence, ps.channel)
	}
	a.mu.Unlock()
	if last && ps.stop != nil {
		ps.stop() // never under ps.mu: an event may be waiting for it
	}
}

func (ps *presenceState) onEvent(ev ratchet.PresenceEvent) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.loading {
		ps.buffered = append(ps.buffered, ev)
		return
	}
	ps.apply(ev, true)
}

// apply records a join or leave of a member and, if notify, tells the
// local subscribers when it adds or removes a user.
func (ps *presenceState) apply(ev ratchet.PresenceEvent, notify bool) {
	id, info, ok := decodeMember(ev.User)
	if !ok {
		return // not written by this package
	}
	switch ev.Kind {
	case ratchet.PresenceJoin:
		except := ps.expect[ev.User]
		delete(ps.expect, ev.User)
		if ps.users.join(id, ev.User, info) && notify {
			frame := appendFrame(nil, evMemberAdded, ps.channel, appendJSONString(nil, ev.User), "")
			ps.local.Broadcast(ratchet.Message{Type: ratchet.MessageText, Data: frame}, except...)
		}
	case ratchet.PresenceLeave:
		if ps.users.leave(id, ev.User) && notify {
			data := appendJSONString(nil, `{"user_id":`+string(appendJSONString(nil, id))+`}`)
			ps.local.Broadcast(ratchet.Message{Type: ratchet.MessageText, Data: appendFrame(nil, evMemberRemoved, ps.channel, data, "")})
		}
	}
}

// admits reports whether a member with user id may join: the user is
// there already, or the channel has room. Joins on several nodes at once
// may overshoot the limit by as many.
func (ps *presenceState) admits(id string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	_, there := ps.users[id]
	return there || len(ps.users) < ps.a.MaxPresenceMembers
}

// joined sends c its subscription_succeeded with the members, itself
// included, and makes it hear the changes from now on.
func (ps *presenceState) joined(c *conn, m member) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ids := make([]string, 0, len(ps.users)+1)
	for id := range ps.users {
		ids = append(ids, id)
	}
	if ps.users[m.id] == nil {
		ids = append(ids, m.id) // its join is not reported yet
	}
	if _, seen := ps.users[m.id][m.encoded]; !seen {
		ps.expect[m.encoded] = append(ps.expect[m.encoded], c)
	}
	slices.Sort(ids)
	d := []byte(`{"presence":{"ids":[`)
	for i, id := range ids {
		if i > 0 {
			d = append(d, ',')
		}
		d = appendJSONString(d, id)
	}
	d = append(d, `],"hash":{`...)
	for i, id := range ids {
		if i > 0 {
			d = append(d, ',')
		}
		d = appendJSONString(d, id)
		d = append(d, ':')
		if ps.users[id] != nil {
			d = append(d, ps.users.info(id)...)
		} else {
			_, info, _ := decodeMember(m.encoded)
			if info == nil {
				info = json.RawMessage("null")
			}
			d = append(d, info...)
		}
	}
	d = append(d, `},"count":`...)
	d = strconv.AppendInt(d, int64(len(ids)), 10)
	d = append(d, `}}`...)
	c.send(appendFrame(nil, evSubscriptionSucceeded, ps.channel, appendJSONString(nil, string(d)), ""))
	ps.local.Add(c)
}

// left stops telling c of changes.
func (ps *presenceState) left(c *conn, m member) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.local.Remove(c)
	if list := slices.DeleteFunc(ps.expect[m.encoded], func(x ratchet.Conn) bool { return x == c }); len(list) > 0 {
		ps.expect[m.encoded] = list
	} else {
		delete(ps.expect, m.encoded)
	}
}
