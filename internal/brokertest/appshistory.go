//go:build unix

package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

// HistoryApp serves an App whose Hub publishes through b and keeps the
// history of every topic with policy. Its route /ws subscribes each
// connection to ?topic= with envelopes, recovering from the position ?since=
// when given (Hub.SubscribeWith), and sends a ready Notice once the
// subscription is live. When subscribing fails (the broker is down) it
// closes the connection with StatusTryAgainLater: the client is told, never
// left with a silent gap.
func HistoryApp(t testing.TB, b ratchet.Broker, policy ratchet.HistoryPolicy) (*ratchet.Hub, string) {
	hub := ratchet.NewHub(ratchet.WithBroker(b), ratchet.WithHistory("*", policy))
	app := ratchet.NewApp("", 0)
	app.Route("/ws", ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		q := c.Request().URL.Query()
		since, err := ratchet.ParsePosition(q.Get("since"))
		if err != nil {
			_ = c.Close(ratchet.StatusPolicyViolation, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = hub.SubscribeWith(ctx, c, q.Get("topic"), ratchet.SubscribeOptions{
			Since:    since,
			Envelope: true,
			Ready: func(r ratchet.Recovery) {
				n, _ := json.Marshal(Notice{Ready: true, Recovered: r.Recovered, Position: r.Position.String(), Sent: r.Sent})
				_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: n})
			},
		})
		if err != nil {
			_ = c.Close(ratchet.StatusTryAgainLater, "subscribe: "+err.Error())
		}
	}}, []string{"*"})
	return hub, serveApp(t, hub, app)
}

// Notice is what a client of a HistoryApp reads: a message in its envelope
// (Topic, Position, Data), or the notice that the subscription is live
// (Ready; whether history reached back to since, the newest Position, how
// many messages were Sent from history).
type Notice struct {
	Topic     string `json:"topic,omitempty"`
	Position  string `json:"position"`
	Data      string `json:"data,omitempty"`
	Ready     bool   `json:"ready,omitempty"`
	Recovered bool   `json:"recovered,omitempty"`
	Sent      int    `json:"sent,omitempty"`
}

// Resume dials the HistoryApp at wsURL for topic from since (the zero
// Position: from now on). The connection is closed at the end of the test.
func Resume(ctx context.Context, t testing.TB, wsURL, topic string, since ratchet.Position) *websocket.Conn {
	t.Helper()
	return dialOnly(ctx, t, wsURL+"?topic="+url.QueryEscape(topic)+"&since="+url.QueryEscape(since.String()))
}

// ReadNotice reads the next Notice, and returns the read error (such as the
// close frame of a failed subscription) instead.
func ReadNotice(ctx context.Context, c *websocket.Conn) (Notice, error) {
	_, data, err := c.Read(ctx)
	if err != nil {
		return Notice{}, err
	}
	var n Notice
	if err := json.Unmarshal(data, &n); err != nil {
		return Notice{}, fmt.Errorf("not a notice: %q: %w", data, err)
	}
	return n, nil
}

// MustReadNotice is ReadNotice that fails the test on error.
func MustReadNotice(ctx context.Context, t testing.TB, c *websocket.Conn) Notice {
	t.Helper()
	n, err := ReadNotice(ctx, c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return n
}

// ExpectRecovery reads what a client resuming on a HistoryApp gets: the
// messages want (with their positions), in order, then a ready notice that
// says they were all recovered, with latest as the newest position.
func ExpectRecovery(ctx context.Context, t testing.TB, c *websocket.Conn, topic string, want []ratchet.Publication, latest ratchet.Position) {
	t.Helper()
	for i, p := range want {
		got := MustReadNotice(ctx, t, c)
		if got.Ready || got.Topic != topic || got.Position != p.Position.String() || got.Data != string(p.Message.Data) {
			t.Fatalf("recovered message %d: got %+v, want %q at %v", i+1, got, p.Message.Data, p.Position)
		}
	}
	got := MustReadNotice(ctx, t, c)
	if wantReady := (Notice{Ready: true, Recovered: true, Position: latest.String(), Sent: len(want)}); got != wantReady {
		t.Fatalf("after %d recovered messages: got %+v, want %+v", len(want), got, wantReady)
	}
}

// PublishN publishes the texts "<first>" to "<last>" on topic with hub and
// returns them with their positions.
func PublishN(ctx context.Context, t testing.TB, hub *ratchet.Hub, topic string, first, last int) []ratchet.Publication {
	t.Helper()
	var out []ratchet.Publication
	for i := first; i <= last; i++ {
		msg := ratchet.Text(fmt.Sprint(i))
		pos, _, err := hub.PublishPosition(ctx, topic, msg)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		out = append(out, ratchet.Publication{Topic: topic, Position: pos, Message: msg})
	}
	return out
}

// RunAppsHistory runs two HistoryApps, each on its own Broker from newNode:
// a WebSocket client that reconnects with the position of the last message
// it got receives exactly what node A published meanwhile, then the live
// messages, whether it reconnects to node B or to node A; a position that
// history no longer covers is answered with an explicit "not recovered"
// before live messages flow.
func RunAppsHistory(t *testing.T, newNode NewNode) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokerA, brokerB := newNode(t), newNode(t)
	t.Cleanup(func() { _ = brokerA.Close(); _ = brokerB.Close() })
	policy := ratchet.HistoryPolicy{Size: 20, TTL: time.Minute}
	hubA, urlA := HistoryApp(t, brokerA, policy)
	_, urlB := HistoryApp(t, brokerB, policy)
	topic := Topic(t)

	c := Resume(ctx, t, urlB, topic, ratchet.Position{})
	start := MustReadNotice(ctx, t, c)
	seen := PublishN(ctx, t, hubA, topic, 1, 3)
	startPos, err := ratchet.ParsePosition(start.Position)
	if err != nil || !start.Ready || !start.Recovered || start.Sent != 0 || startPos.Epoch != seen[0].Position.Epoch || startPos.Offset >= seen[0].Position.Offset {
		t.Fatalf("first subscription: %+v, want ready before %v, in the stream the messages continue", start, seen[0].Position)
	}
	// A client that had only that position gets them all.
	ExpectRecovery(ctx, t, Resume(ctx, t, urlA, topic, startPos), topic, seen, seen[2].Position)
	for _, p := range seen {
		if got := MustReadNotice(ctx, t, c); got.Position != p.Position.String() || got.Data != string(p.Message.Data) {
			t.Fatalf("live on node B: got %+v, want %v", got, p)
		}
	}
	last := seen[len(seen)-1].Position
	c.CloseNow()

	missed := PublishN(ctx, t, hubA, topic, 4, 8)
	onB := Resume(ctx, t, urlB, topic, last)
	ExpectRecovery(ctx, t, onB, topic, missed, missed[4].Position)
	live := PublishN(ctx, t, hubA, topic, 9, 9)
	if got := MustReadNotice(ctx, t, onB); got.Position != live[0].Position.String() || got.Data != "9" {
		t.Fatalf("live after recovery on node B: %+v", got)
	}

	onA := Resume(ctx, t, urlA, topic, last)
	ExpectRecovery(ctx, t, onA, topic, append(missed, live...), live[0].Position)

	// 25 more: history (20) no longer reaches back to last.
	newest := PublishN(ctx, t, hubA, topic, 10, 34)
	for _, cl := range []*websocket.Conn{onA, onB} {
		for range newest {
			MustReadNotice(ctx, t, cl)
		}
	}
	gap := Resume(ctx, t, urlB, topic, last)
	want := Notice{Ready: true, Recovered: false, Position: newest[len(newest)-1].Position.String()}
	if got := MustReadNotice(ctx, t, gap); got != want {
		t.Fatalf("resume past history: got %+v, want %+v (nothing sent, not recovered)", got, want)
	}
	PublishN(ctx, t, hubA, topic, 35, 35)
	if got := MustReadNotice(ctx, t, gap); got.Data != "35" {
		t.Fatalf("live after the gap notice: %+v", got)
	}
}
