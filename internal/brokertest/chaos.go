//go:build unix

package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ratchetgo/ratchet"
)

// RunChaos publishes messages (half from each of two nodes) on one topic
// with history while subscribers, WebSocket clients of a resuming component
// (resumeComponent), keep disconnecting and reconnecting, each time to a node picked at random,
// resuming from the position of the last message they got (?since=). Every
// subscriber must end with every message exactly once, in position order,
// and never be told that recovery failed (history holds them all).
func RunChaos(t *testing.T, newNode NewNode, messages, subscribers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	topic := Topic(t)
	policy := ratchet.HistoryPolicy{Size: messages + 100, TTL: 10 * time.Minute}
	var hubs []*ratchet.Hub
	var urls []string
	for range 2 {
		b := newNode(t)
		t.Cleanup(func() { _ = b.Close() })
		hub, url := pushNode(t, b, policy, messages)
		hubs, urls = append(hubs, hub), append(urls, url)
	}

	subs := make([]*chaosSubscriber, subscribers)
	for i := range subs {
		subs[i] = &chaosSubscriber{seen: make(map[string]bool, messages)}
		subs[i].start(ctx, t, urls[i%2], topic) // the position before any publish
	}
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			if err := s.run(ctx, urls, topic, messages, r); err != nil {
				t.Errorf("subscriber %d: %v", i, err)
			}
		}()
	}
	for n, hub := range hubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range messages / 2 {
				if _, _, err := hub.PublishPosition(ctx, topic, ratchet.Text(fmt.Sprintf("%d-%d", n, i))); err != nil {
					t.Errorf("node %d publish %d: %v", n, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, s := range subs {
		if len(s.seen) != messages-messages%2 {
			t.Errorf("subscriber %d got %d distinct messages, want %d", i, len(s.seen), messages-messages%2)
		}
	}
}

// chaosSubscriber is one resuming client.
type chaosSubscriber struct {
	last        ratchet.Position
	seen        map[string]bool
	connections int
}

// reply is the push endpoint's subscribed reply or a message envelope.
type chaosFrame struct {
	Subscribed *string `json:"subscribed"`
	Recovered  *bool   `json:"recovered"`
	Topic      string  `json:"topic"`
	Position   string  `json:"position"`
	Data       string  `json:"data"`
}

func (s *chaosSubscriber) start(ctx context.Context, t *testing.T, url, topic string) {
	c, err := s.dial(ctx, url, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := s.readSubscribed(ctx, c); err != nil {
		t.Fatal(err)
	}
}

func (s *chaosSubscriber) dial(ctx context.Context, url, topic string) (*websocket.Conn, error) {
	u := url + "?envelope=1&topic=" + topic
	if !s.last.IsZero() {
		u += "&since=" + s.last.String()
	}
	c, resp, err := websocket.Dial(ctx, u, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c.SetReadLimit(1 << 20)
	s.connections++
	return c, nil
}

// readSubscribed reads the subscribed reply of a first connection.
func (s *chaosSubscriber) readSubscribed(ctx context.Context, c *websocket.Conn) error {
	f, err := readFrame(ctx, c)
	for err == nil && f.Subscribed == nil && f.Topic == "" {
		f, err = readFrame(ctx, c) // another test's Broadcast
	}
	if err != nil {
		return err
	}
	if f.Subscribed == nil {
		return fmt.Errorf("first frame is not the subscribed reply: %+v", f)
	}
	s.last, err = ratchet.ParsePosition(f.Position)
	if err != nil || s.last.IsZero() {
		return fmt.Errorf("subscribed without a position to resume from: %+v", f)
	}
	return nil
}

// readFrame reads the next frame: a subscribed reply, an envelope, or
// (neither set) anything else, such as a Broadcast of another test sharing
// the broker's server, which carries no envelope.
func readFrame(ctx context.Context, c *websocket.Conn) (chaosFrame, error) {
	_, data, err := c.Read(ctx)
	if err != nil {
		return chaosFrame{}, fmt.Errorf("read: %w", err)
	}
	var f chaosFrame
	_ = json.Unmarshal(data, &f) // not JSON: not ours
	return f, nil
}

// run reconnects until it has every message, reading a random number of
// frames on each connection before dropping it.
func (s *chaosSubscriber) run(ctx context.Context, urls []string, topic string, messages int, r *rand.Rand) error {
	want := messages - messages%2
	for len(s.seen) < want {
		c, err := s.dial(ctx, urls[r.IntN(len(urls))], topic)
		if err != nil {
			return err
		}
		budget := 1 + r.IntN(2*want/10+1)
		err = s.read(ctx, c, budget, want)
		if r.IntN(2) == 0 {
			c.CloseNow() // a network drop
		} else {
			_ = c.Close(websocket.StatusNormalClosure, "")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *chaosSubscriber) read(ctx context.Context, c *websocket.Conn, budget, want int) error {
	for ; budget > 0 && len(s.seen) < want; budget-- {
		f, err := readFrame(ctx, c)
		if err != nil {
			return err
		}
		if f.Subscribed == nil && f.Topic == "" {
			budget++
			continue // a Broadcast of another test on the same server
		}
		if f.Subscribed != nil {
			if f.Recovered != nil && !*f.Recovered {
				return fmt.Errorf("told recovery failed after %d connections, at %v: %+v", s.connections, s.last, f)
			}
			continue
		}
		p, err := ratchet.ParsePosition(f.Position)
		if err != nil {
			return fmt.Errorf("envelope %+v: %w", f, err)
		}
		if p.Epoch != s.last.Epoch || p.Offset <= s.last.Offset {
			return fmt.Errorf("message %q at %v after %v: out of order or duplicated", f.Data, p, s.last)
		}
		if s.seen[f.Data] {
			return fmt.Errorf("message %q twice", f.Data)
		}
		s.seen[f.Data] = true
		s.last = p
	}
	return nil
}

// resumeComponent subscribes each connection to ?topic= with the envelope,
// from ?since= when given, and answers like the push endpoint does:
// {"subscribed":topic,"position":p[,"recovered":bool]} before live messages.
// (brokertest cannot import push: push's tests import brokertest.)
func resumeComponent(hub *ratchet.Hub) ratchet.MessageComponent {
	return ratchet.ComponentFuncs{Open: func(c ratchet.Conn) {
		ctx, cancel := context.WithTimeout(c.Context(), Wait)
		defer cancel()
		q := c.Request().URL.Query()
		topic := q.Get("topic")
		since, err := ratchet.ParsePosition(q.Get("since"))
		if err != nil {
			_ = c.Close(ratchet.StatusPolicyViolation, "since")
			return
		}
		_, err = hub.SubscribeWith(ctx, c, topic, ratchet.SubscribeOptions{
			Since: since, Envelope: true,
			Ready: func(r ratchet.Recovery) {
				reply := map[string]any{"subscribed": topic, "position": r.Position.String()}
				if !since.IsZero() {
					reply["recovered"] = r.Recovered
				}
				b, _ := json.Marshal(reply)
				_ = c.Send(ratchet.Message{Type: ratchet.MessageText, Data: b})
			},
		})
		if err != nil {
			_ = c.Close(ratchet.StatusTryAgainLater, "subscribe failed")
		}
	}}
}

// pushNode serves resumeComponent at /ws on a Hub with history on b.
func pushNode(t *testing.T, b ratchet.Broker, policy ratchet.HistoryPolicy, queue int) (*ratchet.Hub, string) {
	hub := ratchet.NewHub(ratchet.WithBroker(b), ratchet.WithHistory("*", policy))
	app := ratchet.NewApp("", 0)
	// The publishers do not wait for the readers: queues hold what they lag.
	app.Route("/ws", resumeComponent(hub), []string{"*"}, ratchet.WithSendQueue(queue+16))
	return hub, serveApp(t, hub, app)
}
