package push

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

func TestEndpointPublishReachesExactlyTheSubscribers(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	a := s.dial(t, "topic=a")
	expectJSON(t, a, `{"subscribed":"a"}`)
	b := s.dial(t, "")
	send(t, b, `{"subscribe":"b"}`)
	expectJSON(t, b, `{"subscribed":"b"}`)
	ab := s.dial(t, "topic=a&topic=b")
	expectJSON(t, ab, `{"subscribed":"a"}`)
	expectJSON(t, ab, `{"subscribed":"b"}`)
	none := s.dial(t, "")
	s.waitConns(t, 4)

	require.Equal(t, 2, s.hub.Subscribers("a"))
	require.Equal(t, 2, s.hub.Subscribers("b"))
	require.Equal(t, []string{"a", "b"}, s.hub.Topics())

	require.Equal(t, 2, publish(t, s.hub, "a", "to a"))
	require.Equal(t, 2, publish(t, s.hub, "b", "to b"))
	// Everyone gets the broadcast; whoever did not subscribe sees it first.
	n, err := s.hub.Broadcast(context.Background(), ratchet.Text("end"))
	require.NoError(t, err)
	require.Equal(t, 4, n)

	expectText(t, a, "to a")
	expectText(t, a, "end")
	expectText(t, b, "to b")
	expectText(t, b, "end")
	expectText(t, ab, "to a")
	expectText(t, ab, "to b")
	expectText(t, ab, "end")
	expectText(t, none, "end")
}

func TestEndpointBinaryArrivesUnwrapped(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "topic=bin")
	expectJSON(t, c, `{"subscribed":"bin"}`)
	n, err := s.hub.Publish(context.Background(), "bin", ratchet.Binary([]byte{0, 1, 2, 255}))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	typ, got := readMsg(t, c)
	require.Equal(t, websocket.MessageBinary, typ)
	require.Equal(t, "\x00\x01\x02\xff", got)
}

func TestEndpointUnsubscribeAndDisconnect(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "topic=a&topic=b")
	expectJSON(t, c, `{"subscribed":"a"}`)
	expectJSON(t, c, `{"subscribed":"b"}`)
	other := s.dial(t, "topic=a")
	expectJSON(t, other, `{"subscribed":"a"}`)

	send(t, c, `{"unsubscribe":"a"}`)
	expectJSON(t, c, `{"unsubscribed":"a"}`)
	require.Equal(t, 1, s.hub.Subscribers("a"))
	send(t, c, `{"unsubscribe":"never"}`) // idempotent
	expectJSON(t, c, `{"unsubscribed":"never"}`)

	require.Equal(t, 1, publish(t, s.hub, "a", "only other"))
	require.Equal(t, 1, publish(t, s.hub, "b", "b for c"))
	expectText(t, c, "b for c") // not "only other"
	expectText(t, other, "only other")

	// Subscribing twice is one subscription.
	send(t, c, `{"subscribe":"b"}`)
	expectJSON(t, c, `{"subscribed":"b"}`)
	require.Equal(t, 1, s.hub.Subscribers("b"))

	c.Close(websocket.StatusNormalClosure, "bye")
	require.Eventually(t, func() bool { return s.hub.Subscribers("b") == 0 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, s.hub.Subscribers("a"))
	require.Equal(t, []string{"a"}, s.hub.Topics())
	other.CloseNow() // abrupt, no close frame
	require.Eventually(t, func() bool { return s.hub.Subscribers("a") == 0 && s.hub.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	require.Empty(t, s.hub.Topics())
}

func TestEndpointAuthorization(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	bob := s.dial(t, "user=bob&topic=secret&topic=private/bob&topic=private/alice")
	expectJSON(t, bob, `{"error":"forbidden","topic":"secret"}`)
	expectJSON(t, bob, `{"subscribed":"private/bob"}`)
	expectJSON(t, bob, `{"error":"forbidden","topic":"private/alice"}`)
	send(t, bob, `{"subscribe":"secret"}`)
	expectJSON(t, bob, `{"error":"forbidden","topic":"secret"}`)

	admin := s.dial(t, "user=admin")
	send(t, admin, `{"subscribe":"secret"}`)
	expectJSON(t, admin, `{"subscribed":"secret"}`)

	require.Equal(t, 1, publish(t, s.hub, "secret", "s3cr3t"))
	require.Equal(t, 0, publish(t, s.hub, "private/alice", "for alice"))
	require.Equal(t, 1, publish(t, s.hub, "private/bob", "for bob"))
	expectText(t, admin, "s3cr3t")
	expectText(t, bob, "for bob")
}

func TestEndpointInvalidTopics(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "topic=%40all&topic=")
	expectJSON(t, c, `{"error":"invalid_topic","topic":"@all"}`)
	expectJSON(t, c, `{"error":"invalid_topic","topic":""}`)
	send(t, c, `{"subscribe":"@user/alice"}`)
	expectJSON(t, c, `{"error":"invalid_topic","topic":"@user/alice"}`)
	send(t, c, `{"unsubscribe":"@all"}`)
	expectJSON(t, c, `{"error":"invalid_topic","topic":"@all"}`)
	long := strings.Repeat("x", 257)
	send(t, c, `{"subscribe":"`+long+`"}`)
	expectJSON(t, c, `{"error":"invalid_topic","topic":"`+long[:256]+`"}`)
	// Still connected, still reachable by broadcast only.
	require.Empty(t, s.hub.Topics())
	_, err := s.hub.Broadcast(context.Background(), ratchet.Text("alive"))
	require.NoError(t, err)
	expectText(t, c, "alive")
}

func TestEndpointMaxTopics(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithMaxTopics(2)}})
	c := s.dial(t, "topic=a&topic=b")
	expectJSON(t, c, `{"subscribed":"a"}`)
	expectJSON(t, c, `{"subscribed":"b"}`)
	send(t, c, `{"subscribe":"c"}`)
	expectJSON(t, c, `{"error":"too_many_topics","topic":"c"}`)
	send(t, c, `{"subscribe":"a"}`) // already there: fine
	expectJSON(t, c, `{"subscribed":"a"}`)
	send(t, c, `{"unsubscribe":"a"}`)
	expectJSON(t, c, `{"unsubscribed":"a"}`)
	send(t, c, `{"subscribe":"c"}`)
	expectJSON(t, c, `{"subscribed":"c"}`)

	over := s.dial(t, "topic=a&topic=b&topic=c")
	require.Equal(t, websocket.StatusPolicyViolation, readClose(t, over))
}

func TestEndpointMalformedControlMessages(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithMaxMalformed(3), WithMaxControlSize(64)}})
	c := s.dial(t, "")
	for _, m := range []string{
		`hello`,
		`{"subscribe":"a","unsubscribe":"b"}`,
		`{"subscribe":"` + strings.Repeat("a", 64) + `"}`,
	} {
		send(t, c, m)
		if len(m) > 64 {
			expectJSON(t, c, `{"error":"too_large"}`)
		} else {
			expectJSON(t, c, `{"error":"malformed"}`)
		}
	}
	// A good message between bad ones is still served.
	send(t, c, `{"subscribe":"a"}`)
	expectJSON(t, c, `{"subscribed":"a"}`)
	send(t, c, `{"subscribe":1}`) // the fourth malformed one closes
	require.Equal(t, websocket.StatusPolicyViolation, readClose(t, c))
	require.Eventually(t, func() bool { return s.hub.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestEndpointBinaryControlMessageCloses(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageBinary, []byte(`{"subscribe":"a"}`)))
	require.Equal(t, websocket.StatusUnsupportedData, readClose(t, c))
}

func TestEndpointWithoutAcks(t *testing.T) {
	s := newTestServer(t, serverOpts{push: []Option{WithAcks(false)}})
	c := s.dial(t, "topic=a")
	send(t, c, `{"subscribe":"@bad"}`)
	expectJSON(t, c, `{"error":"invalid_topic","topic":"@bad"}`) // errors still come
	send(t, c, `{"subscribe":"b"}`)
	require.Eventually(t, func() bool { return s.hub.Subscribers("b") == 1 }, 5*time.Second, 5*time.Millisecond)
	publish(t, s.hub, "a", "first")
	expectText(t, c, "first")
}

func TestPublishToUserReachesAllItsConnections(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	alice1 := s.dial(t, "user=alice")
	alice2 := s.dial(t, "user=alice&topic=x")
	expectJSON(t, alice2, `{"subscribed":"x"}`)
	bob := s.dial(t, "user=bob")
	aliceSSE, status, _ := s.openSSE(t, "user=alice", nil)
	require.Equal(t, 200, status)
	require.True(t, aliceSSE.next(t, false).isRetry)
	s.waitConns(t, 4)

	n, err := s.hub.PublishToUser(context.Background(), "alice", ratchet.Text("hi alice"))
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, err = s.hub.PublishToUser(context.Background(), "bob", ratchet.Text("hi bob"))
	require.NoError(t, err)

	expectText(t, alice1, "hi alice")
	expectText(t, alice2, "hi alice")
	require.Equal(t, "hi alice", aliceSSE.event(t).Data)
	expectText(t, bob, "hi bob")

	// The same through the HTTP API.
	status, out := s.postSigned(t, `{"user":"alice","data":"via http"}`)
	require.Equal(t, 200, status, "%v", out)
	require.Equal(t, map[string]any{"user": "alice", "delivered": 3.0}, out)
	expectText(t, alice1, "via http")
	expectText(t, alice2, "via http")
	require.Equal(t, "via http", aliceSSE.event(t).Data)
}

// A client may pipeline control messages far beyond the send queue: every
// reply comes back, in order (the replies hold back the connection's reader
// instead of overflowing its queue).
func TestEndpointPipelinedControlMessages(t *testing.T) {
	s := newTestServer(t, serverOpts{})
	c := s.dial(t, "")
	const n = 10000
	control := func(i int) (msg, reply string) {
		if i%2 == 0 {
			return `{"subscribe":"t"}`, `{"subscribed":"t"}`
		}
		return `{"unsubscribe":"t"}`, `{"unsubscribed":"t"}`
	}
	wrote := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range n {
			msg, _ := control(i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	for i := range n {
		_, reply := control(i)
		expectJSON(t, c, reply)
	}
	require.NoError(t, <-wrote)
	require.Equal(t, 0, s.hub.Subscribers("t"))
}
