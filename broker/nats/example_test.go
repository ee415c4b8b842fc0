package nats_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/nats"
)

// Two nodes of one application, each with its own connection: a message
// published on one reaches a subscriber on the other.
func ExampleConnect() {
	ctx := context.Background()
	newNode := func() *nats.Broker {
		b, err := nats.Connect("nats://127.0.0.1:4222",
			nats.WithPrefix("chat."),
			nats.WithOnError(func(err error) { log.Print(err) }))
		if err != nil {
			log.Fatal(err)
		}
		return b
	}
	nodeA, nodeB := newNode(), newNode()
	defer nodeA.Close()
	defer nodeB.Close()

	got := make(chan ratchet.Message, 1)
	sub, err := nodeB.Subscribe(ctx, "room-1", func(m ratchet.Message) { got <- m })
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Unsubscribe(ctx)

	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := nodeA.Publish(pctx, "room-1", ratchet.Text("hello from A")); err != nil {
		log.Fatal(err) // NATS unreachable: the message was not sent
	}
	fmt.Println(<-got)
}

// Presence: who is in a room on any node, and who comes and goes. It lives
// in a JetStream key-value bucket named after the broker's prefix
// ("chat-presence" here), which NewPresence creates if needed.
func ExampleNewPresence() {
	ctx := context.Background()
	b, err := nats.Connect("nats://127.0.0.1:4222", nats.WithPrefix("chat."))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	p, err := nats.NewPresence(ctx, b, nats.WithPresenceTTL(15*time.Second))
	if err != nil {
		log.Fatal(err) // JetStream not enabled (nats-server -js)
	}
	var presence ratchet.Presence = p
	defer presence.Close(ctx)

	stop, err := presence.Watch(ctx, "room-1", func(e ratchet.PresenceEvent) {
		fmt.Println(e.User, e.Kind) // e.g. push it to the room's clients
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	_ = presence.Join(ctx, "room-1", "alice") // in OnOpen
	users, _ := presence.Members(ctx, "room-1")
	fmt.Println(users)
	_ = presence.Leave(ctx, "room-1", "alice") // in OnClose
}
