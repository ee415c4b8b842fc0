package ratchet

import (
	"net/http/httptest"
	"testing"
)

// endHooks refuses a member once its connection has ended, so that a Hub
// never keeps a connection that has already left; removing after the end
// finds nothing.
func TestEndHooks(t *testing.T) {
	var e endHooks
	a, b, c := new(hubMember), new(hubMember), new(hubMember)
	for _, m := range []*hubMember{a, b, c} {
		if !e.addLocked(m) {
			t.Fatal("add refused before the end")
		}
	}
	if !e.removeLocked(b) || e.removeLocked(b) {
		t.Fatal("remove: want true once, then false")
	}
	var got []*hubMember
	for m := e.endLocked(); m != nil; m = m.next {
		got = append(got, m)
	}
	if len(got) != 2 || got[0] != c || got[1] != a {
		t.Fatalf("end returned %v, want c, a", got)
	}
	if e.addLocked(b) || e.removeLocked(a) || e.endLocked() != nil {
		t.Fatal("after the end: add must refuse, remove find nothing, end return none")
	}
}

// The package's own connections join a Hub through their endHooks, with no
// context.AfterFunc, and a Hub whose member ends between the check of its
// Context and the hook refuses it.
func TestHubUsesEndHooks(t *testing.T) {
	h := NewHub()
	c := NewTransportConn(ComponentFuncs{}, nopTransport{}, httptest.NewRequest("GET", "/", nil), "", 4)
	m, err := h.member(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if m.stop != nil || c.hooks.first != m {
		t.Fatalf("member not hooked to the connection (stop %v, first %p, member %p)", m.stop != nil, c.hooks.first, m)
	}
	h2 := NewHub()
	c.mu.Lock()
	c.hooks.endLocked() // as finish does, just after canceling the Context
	c.mu.Unlock()
	if _, err := h2.member(t.Context(), c); err != ErrClosed || h2.Len() != 0 {
		t.Fatalf("member of an ended connection: %v, %d members", err, h2.Len())
	}
	if err := h.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.End(nil)
	<-c.Done()
}

type nopTransport struct{}

func (nopTransport) WriteMessages([]Message) error  { return nil }
func (nopTransport) Close(StatusCode, string) error { return nil }

// memberTopics keeps its first two topics inline and the others in a map,
// and each operation sees both, whichever order topics come and go in.
func TestMemberTopics(t *testing.T) {
	var mt memberTopics
	names := func() map[string]*hubTopic {
		got := make(map[string]*hubTopic)
		for tp := range mt.all {
			if got[tp.name] != nil {
				t.Fatalf("%s twice", tp.name)
			}
			got[tp.name] = tp
		}
		return got
	}
	topics := map[string]*hubTopic{}
	for _, n := range []string{"a", "b", "c", "d"} {
		topics[n] = &hubTopic{name: n}
		mt.set(topics[n])
	}
	if got := names(); len(got) != 4 || mt.more == nil {
		t.Fatalf("after four: %v (map %v)", got, mt.more)
	}
	if mt.remove("a") != topics["a"] || mt.remove("a") != nil || mt.get("a") != nil {
		t.Fatal("remove a")
	}
	// "c" is in the map: setting it again must not also put it in the free slot.
	c2 := &hubTopic{name: "c"}
	mt.set(c2)
	if got := names(); len(got) != 3 || got["c"] != c2 || mt.get("c") != c2 {
		t.Fatalf("after replacing c: %v", got)
	}
	mt.set(&hubTopic{name: "e"}) // into the free slot
	b2 := &hubTopic{name: "b"}
	mt.set(b2)
	if got := names(); len(got) != 4 || got["b"] != b2 || mt.get("e") == nil || mt.get("d") != topics["d"] {
		t.Fatalf("after e and b: %v", got)
	}
	for _, n := range []string{"b", "c", "d", "e"} {
		if mt.remove(n) == nil {
			t.Fatalf("remove %s", n)
		}
	}
	if len(names()) != 0 {
		t.Fatal("not empty")
	}
}

// A topic with one subscriber, a user's own mostly, drops its emptied
// pending map; one of many keeps it for the next join.
func TestPendingMapDroppedForOneSubscriber(t *testing.T) {
	h := NewHub()
	defer h.Close(t.Context())
	newConn := func(user string) *TransportConn {
		c := NewTransportConn(ComponentFuncs{}, nopTransport{}, httptest.NewRequest("GET", "/", nil), user, 4)
		t.Cleanup(func() { c.End(nil); <-c.Done() })
		return c
	}
	for _, user := range []string{"ann", "bob"} {
		if err := h.Add(t.Context(), newConn(user)); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.topics[userTopicPrefix+"ann"].pending; p != nil {
		t.Errorf("a user's topic keeps its pending map: %v", p)
	}
	if h.topics[topicAll].pending == nil {
		t.Error("a topic of two dropped its pending map")
	}
}
