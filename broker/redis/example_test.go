package redis_test

import (
	"context"
	"fmt"
	"log"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
)

// Two nodes of one application, each with its own broker: a message
// published on one reaches a subscriber on the other.
func ExampleNew() {
	ctx := context.Background()
	newNode := func() *redis.Broker {
		client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
		b, err := redis.New(ctx, client,
			redis.WithPrefix("chat:"),
			redis.WithOnError(func(err error) { log.Print(err) }))
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
		log.Fatal(err) // Redis unreachable: the message was not sent
	}
	fmt.Println(<-got)
}

// Presence: who is in a room on any node, and who comes and goes.
func ExampleNewPresence() {
	ctx := context.Background()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	b, err := redis.New(ctx, client)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	var presence ratchet.Presence = redis.NewPresence(b, redis.WithPresenceTTL(15*time.Second))
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
