package push

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

func historyServer(t *testing.T, size int) *testServer {
	return newTestServer(t, serverOpts{hub: []ratchet.HubOption{
		ratchet.WithHistory("*", ratchet.HistoryPolicy{Size: size}),
	}})
}

func publishAt(t *testing.T, h *ratchet.Hub, topic, text string) ratchet.Position {
	t.Helper()
	pos, _, err := h.PublishPosition(context.Background(), topic, ratchet.Text(text))
	require.NoError(t, err)
	require.False(t, pos.IsZero())
	return pos
}

// An EventSource that reconnects with Last-Event-ID gets exactly the events
// it missed, in order, with positions as ids, then the live ones.
func TestSSEResumesFromLastEventID(t *testing.T) {
	s := historyServer(t, 10)
	st, status, _ := s.openSSE(t, "topic=news", nil)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, st.resp.Header.Get(RecoveryHeader), "nothing to recover on a first connection")
	require.Equal(t, "position", st.event(t).Event, "the stream's start")
	first := publishAt(t, s.hub, "news", "1")
	require.Equal(t, sseEvent{ID: first.String(), Event: "message", Data: "1"}, st.event(t))
	st.cancel() // the client goes away
	<-st.done

	var missed []ratchet.Position
	for i := 2; i <= 6; i++ {
		missed = append(missed, publishAt(t, s.hub, "news", fmt.Sprint(i)))
	}
	st, status, _ = s.openSSE(t, "topic=news", http.Header{"Last-Event-Id": {first.String()}})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, RecoveryRecovered, st.resp.Header.Get(RecoveryHeader))
	for i, pos := range missed {
		require.Equal(t, sseEvent{ID: pos.String(), Event: "message", Data: fmt.Sprint(i + 2)}, st.event(t))
	}
	live := publishAt(t, s.hub, "news", "7")
	require.Equal(t, sseEvent{ID: live.String(), Event: "message", Data: "7"}, st.event(t))
}

// When history no longer covers the gap the stream says so, with an event
// of type reset and a header, before any live event.
func TestSSEResetWhenHistoryIsShort(t *testing.T) {
	s := historyServer(t, 3)
	first := publishAt(t, s.hub, "news", "1")
	var last ratchet.Position
	for i := 2; i <= 5; i++ {
		last = publishAt(t, s.hub, "news", fmt.Sprint(i))
	}
	st, status, _ := s.openSSE(t, "topic=news", http.Header{"Last-Event-Id": {first.String()}})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, RecoveryReset, st.resp.Header.Get(RecoveryHeader))
	require.Equal(t, sseEvent{ID: last.String(), Event: "reset",
		Data: `{"topic":"news","position":"` + last.String() + `"}`}, st.event(t))
	live := publishAt(t, s.hub, "news", "6")
	require.Equal(t, sseEvent{ID: live.String(), Event: "message", Data: "6"}, st.event(t))

	// An id that is no cursor (a counter of a stream without history).
	other, _, _ := s.openSSE(t, "topic=news", http.Header{"Last-Event-Id": {"42"}})
	require.Equal(t, RecoveryReset, other.resp.Header.Get(RecoveryHeader))
	require.Equal(t, "reset", other.event(t).Event)
}

// A stream of several topics has a cursor for an id: each topic's position,
// in the order of the topic parameters. ?since= takes the same form.
func TestSSECursorOfSeveralTopics(t *testing.T) {
	s := newTestServer(t, serverOpts{hub: []ratchet.HubOption{
		ratchet.WithHistory("h*", ratchet.HistoryPolicy{Size: 10}),
	}})
	a0 := publishAt(t, s.hub, "ha", "a0")
	b0 := publishAt(t, s.hub, "hb", "b0")
	a1 := publishAt(t, s.hub, "ha", "a1")

	st, _, _ := s.openSSE(t, "topic=ha&topic=plain&topic=hb&since="+a0.String()+",,"+b0.String(), nil)
	require.Equal(t, RecoveryRecovered, st.resp.Header.Get(RecoveryHeader))
	require.Equal(t, sseEvent{ID: a1.String() + ",," + b0.String(), Event: "message", Data: "a1"}, st.event(t))
	require.Equal(t, sseEvent{ID: a1.String() + ",," + b0.String(), Event: "position",
		Data: `{"topic":"hb","position":"` + b0.String() + `"}`}, st.event(t), "hb had nothing to recover: its position")
	b1 := publishAt(t, s.hub, "hb", "b1")
	require.Equal(t, sseEvent{ID: a1.String() + ",," + b1.String(), Event: "message", Data: "b1"}, st.event(t))
	publish(t, s.hub, "plain", "p")
	require.Equal(t, sseEvent{ID: a1.String() + ",," + b1.String(), Event: "message", Data: "p"}, st.event(t))

	_, status, body := s.openSSE(t, "topic=ha&topic=hb&since="+a0.String(), nil)
	require.Equal(t, http.StatusBadRequest, status, "a cursor of one topic for two")
	require.Contains(t, body, CodeInvalidSince)
}

// The stream's first bytes hold the position of each topic, in an event of
// type position that carries data: every EventSource keeps its id (the npm
// package eventsource ignores the id of a block without data), so a client
// that reconnects before any message came still misses nothing.
func TestSSEStartsWithPositions(t *testing.T) {
	s := historyServer(t, 10)
	req, err := http.NewRequest(http.MethodGet, s.url+"/events?topic=news", nil)
	require.NoError(t, err)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var got strings.Builder
	buf := make([]byte, 256)
	for strings.Count(got.String(), "\n\n") < 2 {
		n, err := resp.Body.Read(buf)
		require.NoError(t, err)
		got.Write(buf[:n])
	}
	page, err := s.hub.History(context.Background(), "news", ratchet.Position{}, 0)
	require.NoError(t, err)
	pos := page.Latest
	require.Equal(t, "retry: 3000\n\nid: "+pos.String()+"\nevent: position\n"+
		`data: {"topic":"news","position":"`+pos.String()+`"}`+"\n\n", got.String())
	resp.Body.Close()

	first := publishAt(t, s.hub, "news", "published while away")
	st, _, _ := s.openSSE(t, "topic=news", http.Header{"Last-Event-Id": {pos.String()}})
	require.Equal(t, RecoveryRecovered, st.resp.Header.Get(RecoveryHeader))
	require.Equal(t, sseEvent{ID: first.String(), Event: "message", Data: "published while away"}, st.event(t))
}

// The WebSocket endpoint resumes with ?since= or {"subscribe":..,"since":..}
// and, with ?envelope=1, sends every message with its topic and position.
func TestEndpointResumesWithEnvelope(t *testing.T) {
	s := historyServer(t, 10)
	c := s.dial(t, "topic=news&envelope=1")
	sub := readReply(t, c)
	require.Equal(t, "news", sub["subscribed"])
	start, err := ratchet.ParsePosition(sub["position"].(string))
	require.NoError(t, err)
	require.NotContains(t, sub, "recovered", "no position was given")

	p1 := publishAt(t, s.hub, "news", "one")
	expectJSON(t, c, `{"topic":"news","position":"`+p1.String()+`","data":"one"}`)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))

	p2 := publishAt(t, s.hub, "news", "two")
	p3 := publishAt(t, s.hub, "news", "three")
	c = s.dial(t, "topic=news&envelope=1&since="+p1.String())
	expectJSON(t, c, `{"topic":"news","position":"`+p2.String()+`","data":"two"}`)
	expectJSON(t, c, `{"topic":"news","position":"`+p3.String()+`","data":"three"}`)
	expectJSON(t, c, `{"subscribed":"news","position":"`+p3.String()+`","recovered":true}`)

	// From a control message, on a connection without the envelope.
	raw := s.dial(t, "")
	send(t, raw, `{"subscribe":"news","since":"`+start.String()+`"}`)
	for _, want := range []string{"one", "two", "three"} {
		expectText(t, raw, want)
	}
	expectJSON(t, raw, `{"subscribed":"news","position":"`+p3.String()+`","recovered":true}`)
	send(t, raw, `{"subscribe":"other","since":"gone:7"}`)
	r := readReply(t, raw)
	require.Equal(t, false, r["recovered"])
	send(t, raw, `{"unsubscribe":"news","since":"gone:7"}`)
	expectJSON(t, raw, `{"error":"malformed"}`)
	send(t, raw, `{"subscribe":"news","since":"not a position"}`)
	expectJSON(t, raw, `{"error":"malformed"}`)
}

func readReply(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	_, m := readMsg(t, c)
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(m), &r), m)
	return r
}

// The publish API answers with the message's position.
func TestPublishAnswersPosition(t *testing.T) {
	s := historyServer(t, 10)
	status, body := s.postSigned(t, `{"topic":"news","data":"x"}`)
	require.Equal(t, http.StatusOK, status)
	pos, err := ratchet.ParsePosition(body["position"].(string))
	require.NoError(t, err)
	page, err := s.hub.History(context.Background(), "news", ratchet.Position{}, 0)
	require.NoError(t, err)
	require.Equal(t, page.Latest, pos)

	status, body = s.postSigned(t, `{"user":"u","data":"x"}`)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, "position")
}

// A recovery larger than the send queue (256 by default) is sent whole: the
// Hub waits for room in the connection's queue instead of overflowing it.
func TestEndpointRecoversMoreThanTheQueue(t *testing.T) {
	s := historyServer(t, 2000)
	start := publishAt(t, s.hub, "news", "0")
	const missed = 1000
	for i := 1; i <= missed; i++ {
		publishAt(t, s.hub, "news", fmt.Sprint(i))
	}
	c := s.dial(t, "topic=news&since="+start.String())
	for i := 1; i <= missed; i++ {
		expectText(t, c, fmt.Sprint(i))
	}
	r := readReply(t, c)
	require.Equal(t, true, r["recovered"])
}
