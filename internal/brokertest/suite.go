//go:build unix

package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
)

// NewNode returns a new Broker connected to the same cluster as every other
// Broker it returns: one "node" of the cluster. It registers with t.Cleanup
// whatever the broker needs closed after it (clients, connections); the
// suite closes the broker itself.
type NewNode func(t *testing.T) ratchet.Broker

// Wait is how long the suite waits for a message before failing.
const Wait = 10 * time.Second

// Run runs the conformance suite on the Brokers newNode makes: publish and
// subscribe across nodes and on the publishing node, text and binary
// payloads, ordering per topic, isolation of topics, several subscriptions
// to one topic, Unsubscribe stopping deliveries, resubscribing, Publish and
// Subscribe after Close, contexts, and concurrent use.
func Run(t *testing.T, newNode NewNode) {
	node := func(t *testing.T) ratchet.Broker {
		b := newNode(t)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	t.Run("CrossNode", func(t *testing.T) { testCrossNode(t, node) })
	t.Run("Order", func(t *testing.T) { testOrder(t, node) })
	t.Run("TopicsIsolated", func(t *testing.T) { testTopicsIsolated(t, node) })
	t.Run("SeveralSubscriptions", func(t *testing.T) { testSeveral(t, node) })
	t.Run("UnsubscribeStopsDelivery", func(t *testing.T) { testUnsubscribe(t, node) })
	t.Run("Resubscribe", func(t *testing.T) { testResubscribe(t, node) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, node) })
	t.Run("Context", func(t *testing.T) { testContext(t, node) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, node) })
}

// Collector gathers the messages a subscription receives. Its Deliver
// method is a deliver function that never blocks.
type Collector struct {
	ch       chan ratchet.Message
	inflight atomic.Int32
	overlap  atomic.Bool
	count    atomic.Int64
}

// NewCollector returns a Collector that holds up to size undelivered
// messages; more fail the test when read.
func NewCollector(size int) *Collector { return &Collector{ch: make(chan ratchet.Message, size)} }

// Deliver records m. It notes calls that overlap, which the Broker contract
// forbids.
func (c *Collector) Deliver(m ratchet.Message) {
	if c.inflight.Add(1) != 1 {
		c.overlap.Store(true)
	}
	c.count.Add(1)
	select {
	case c.ch <- m:
	default:
	}
	c.inflight.Add(-1)
}

// Count returns how many messages were delivered.
func (c *Collector) Count() int64 { return c.count.Load() }

// Next returns the next message, failing the test after Wait.
func (c *Collector) Next(t testing.TB) ratchet.Message {
	t.Helper()
	select {
	case m := <-c.ch:
		return m
	case <-time.After(Wait):
		t.Fatalf("no message within %v", Wait)
		return ratchet.Message{}
	}
}

// Expect reads the next message and checks it is want.
func (c *Collector) Expect(t testing.TB, want ratchet.Message) {
	t.Helper()
	got := c.Next(t)
	if got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("got %v %q, want %v %q", got.Type, got.Data, want.Type, want.Data)
	}
}

// None checks that no message is waiting.
func (c *Collector) None(t testing.TB) {
	t.Helper()
	select {
	case m := <-c.ch:
		t.Fatalf("unexpected message %v %q", m.Type, m.Data)
	default:
	}
	if c.overlap.Load() {
		t.Fatal("deliver was called concurrently for one subscription")
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), Wait)
	t.Cleanup(cancel)
	return c
}

// Subscribe subscribes c to topic on b, failing the test on error.
func Subscribe(t testing.TB, b ratchet.Broker, topic string, c *Collector) ratchet.Subscription {
	t.Helper()
	cx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	s, err := b.Subscribe(cx, topic, c.Deliver)
	if err != nil {
		t.Fatalf("subscribe %q: %v", topic, err)
	}
	return s
}

// Publish publishes m on topic with b, failing the test on error.
func Publish(t testing.TB, b ratchet.Broker, topic string, m ratchet.Message) {
	t.Helper()
	cx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := b.Publish(cx, topic, m); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
}

func testCrossNode(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	onB, onA := NewCollector(16), NewCollector(16)
	Subscribe(t, b, topic, onB)
	Subscribe(t, a, topic, onA)
	msgs := []ratchet.Message{
		ratchet.Text("hello"),
		ratchet.Binary([]byte{0, 1, 2, 0xff, 0xfe}),
		ratchet.Binary([]byte("binary that is valid UTF-8")),
		ratchet.Text(`{"ratchet":1,"type":"binary","data":"AAE="}`),
		ratchet.Text(`{"type":"chat","data":"application JSON passes through"}`),
		ratchet.Text("héllo, 世界"),
		ratchet.Text(""),
		ratchet.Binary([]byte{}),
	}
	for _, m := range msgs {
		Publish(t, a, topic, m)
	}
	for _, m := range msgs {
		onB.Expect(t, m)
		onA.Expect(t, m)
	}
	onB.None(t)
	onA.None(t)
}

func testOrder(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	const n = 2000
	c := NewCollector(n)
	Subscribe(t, b, topic, c)
	for i := range n {
		Publish(t, a, topic, ratchet.Text(fmt.Sprint(i)))
	}
	for i := range n {
		if got := c.Next(t).String(); got != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	c.None(t)
}

func testTopicsIsolated(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	t1, t2 := Topic(t), Topic(t)
	c1, c2 := NewCollector(4), NewCollector(4)
	Subscribe(t, b, t1, c1)
	Subscribe(t, b, t2, c2)
	Publish(t, a, t1, ratchet.Text("one"))
	Publish(t, a, t2, ratchet.Text("two"))
	c1.Expect(t, ratchet.Text("one"))
	c2.Expect(t, ratchet.Text("two"))
	c1.None(t)
	c2.None(t)
}

func testSeveral(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	cs := []*Collector{NewCollector(4), NewCollector(4), NewCollector(4)}
	subs := make([]ratchet.Subscription, len(cs))
	for i, c := range cs {
		subs[i] = Subscribe(t, b, topic, c)
	}
	Publish(t, a, topic, ratchet.Text("all"))
	for _, c := range cs {
		c.Expect(t, ratchet.Text("all"))
	}
	if err := subs[1].Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	Publish(t, a, topic, ratchet.Text("two of three"))
	cs[0].Expect(t, ratchet.Text("two of three"))
	cs[2].Expect(t, ratchet.Text("two of three"))
	cs[1].None(t)
}

func testUnsubscribe(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	gone, fence := NewCollector(1000), NewCollector(1000)
	s := Subscribe(t, b, topic, gone)
	Subscribe(t, b, topic, fence)
	// Publish a stream and unsubscribe in the middle of it: once Unsubscribe
	// has returned, the count must not move.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			_ = a.Publish(context.Background(), topic, ratchet.Text(fmt.Sprint(i)))
		}
	}()
	for range 50 {
		fence.Next(t)
	}
	if err := s.Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	after := gone.Count()
	<-done
	Publish(t, a, topic, ratchet.Text("last"))
	for fence.Next(t).String() != "last" {
	}
	if got := gone.Count(); got != after {
		t.Fatalf("%d deliveries after Unsubscribe returned", got-after)
	}
	// Unsubscribe is idempotent.
	if err := s.Unsubscribe(ctx(t)); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
}

func testResubscribe(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	c1 := NewCollector(4)
	s := Subscribe(t, b, topic, c1)
	Publish(t, a, topic, ratchet.Text("first"))
	c1.Expect(t, ratchet.Text("first"))
	if err := s.Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	Publish(t, a, topic, ratchet.Text("nobody"))
	c2 := NewCollector(4)
	Subscribe(t, b, topic, c2)
	Publish(t, a, topic, ratchet.Text("second"))
	c2.Expect(t, ratchet.Text("second"))
	c1.None(t)
	c2.None(t)
}

func testClosed(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	c := NewCollector(4)
	s := Subscribe(t, b, topic, c)
	sa := Subscribe(t, a, topic, NewCollector(4))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	Publish(t, a, topic, ratchet.Text("after close"))
	if err := b.Publish(ctx(t), topic, ratchet.Text("x")); !errors.Is(err, ratchet.ErrBrokerClosed) {
		t.Fatalf("Publish after Close: %v, want ErrBrokerClosed", err)
	}
	if _, err := b.Subscribe(ctx(t), topic, c.Deliver); !errors.Is(err, ratchet.ErrBrokerClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrBrokerClosed", err)
	}
	if err := s.Unsubscribe(ctx(t)); err != nil {
		t.Fatalf("Unsubscribe after Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	c.None(t)
	_ = sa.Unsubscribe(ctx(t))
}

func testContext(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Publish(canceled, topic, ratchet.Text("x")); err == nil {
		t.Fatal("Publish with a canceled context succeeded")
	}
	if s, err := b.Subscribe(canceled, topic, func(ratchet.Message) {}); err == nil {
		_ = s.Unsubscribe(ctx(t))
		t.Fatal("Subscribe with a canceled context succeeded")
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if err := a.Publish(expired, topic, ratchet.Text("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with an expired context: %v, want DeadlineExceeded", err)
	}
	// The failed Subscribe left nothing behind: a real one works.
	c := NewCollector(4)
	Subscribe(t, b, topic, c)
	Publish(t, a, topic, ratchet.Text("ok"))
	c.Expect(t, ratchet.Text("ok"))
	c.None(t)
}

func testConcurrent(t *testing.T, node func(*testing.T) ratchet.Broker) {
	a, b := node(t), node(t)
	topic := Topic(t)
	stable := NewCollector(10000)
	Subscribe(t, b, topic, stable)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Churn on the stable topic (never its last subscription) and on one
	// that keeps being subscribed and unsubscribed on the broker.
	churn := Topic(t)
	for i := range 4 {
		topic := topic
		if i%2 == 1 {
			topic = churn
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := b.Subscribe(context.Background(), topic, func(ratchet.Message) {})
				if err != nil {
					t.Error(err)
					return
				}
				if err := s.Unsubscribe(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	const n = 300
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 3 {
				if err := a.Publish(context.Background(), topic, ratchet.Text(fmt.Sprint(w, "-", i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range n {
		stable.Next(t)
	}
	close(stop)
	wg.Wait()
	stable.None(t)
	// The churned topic still works.
	c := NewCollector(4)
	Subscribe(t, b, churn, c)
	Publish(t, a, churn, ratchet.Text("after churn"))
	c.Expect(t, ratchet.Text("after churn"))
}

// NewPrefixedNode returns a new node of the cluster whose topics carry
// prefix on the server. The suite closes it.
type NewPrefixedNode func(t *testing.T, prefix string) ratchet.Broker

// RunPrefix checks that nodes with different prefixes do not share topics,
// and nodes with the same prefix do.
func RunPrefix(t *testing.T, newNode NewPrefixedNode, prefixA, prefixB string) {
	node := func(prefix string) ratchet.Broker {
		b := newNode(t, prefix)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	a, a2, b := node(prefixA), node(prefixA), node(prefixB)
	topic := Topic(t)
	ca, ca2, cb := NewCollector(4), NewCollector(4), NewCollector(4)
	Subscribe(t, a, topic, ca)
	Subscribe(t, a2, topic, ca2)
	Subscribe(t, b, topic, cb)
	Publish(t, a, topic, ratchet.Text("for a"))
	ca.Expect(t, ratchet.Text("for a"))
	ca2.Expect(t, ratchet.Text("for a"))
	Publish(t, b, topic, ratchet.Text("for b"))
	cb.Expect(t, ratchet.Text("for b"))
	ca.None(t)
	ca2.None(t)
	cb.None(t)
}
