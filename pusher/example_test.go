package pusher_test

import (
	"context"
	"log"
	"os"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/broker/redis"
	"github.com/ratchetgo/ratchet/pusher"
)

// A Pusher Channels server for pusher-js, Laravel Echo and the Pusher
// server libraries, scaled out on Redis: run one per node behind a load
// balancer.
func Example() {
	ctx := context.Background()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	broker, err := redis.New(ctx, client)
	if err != nil {
		log.Fatal(err)
	}
	apps := []pusher.App{{
		ID:           os.Getenv("PUSHER_APP_ID"),
		Key:          os.Getenv("PUSHER_APP_KEY"),
		Secret:       os.Getenv("PUSHER_APP_SECRET"),
		ClientEvents: true, // Echo's whisper
	}}
	hub := ratchet.NewHub(ratchet.WithBroker(broker), ratchet.WithPresence(redis.NewPresence(broker)))
	srv, err := pusher.NewServer(hub, apps)
	if err != nil {
		log.Fatal(err)
	}
	app := ratchet.NewApp("", 6001, ratchet.WithAddress("0.0.0.0"))
	app.Handle("/app/", srv)  // WebSocket: ws://host:6001/app/{key}
	app.Handle("/apps/", srv) // HTTP API: http://host:6001/apps/{id}/events
	log.Fatal(app.Run())
}

// Triggering from Go: the event reaches the channel's subscribers on every
// node; a plain Hub.Publish on the channel's topic arrives as App.HubEvent.
func ExampleServer_Trigger() {
	hub := ratchet.NewHub()
	srv, err := pusher.NewServer(hub, []pusher.App{{ID: "1", Key: "key", Secret: "secret"}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	type order struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
	}
	// Echo.channel('orders').listen('.shipped', e => ...)
	if err := srv.Trigger(ctx, []string{"orders"}, "shipped", order{ID: 7, Status: "shipped"}); err != nil {
		log.Print(err)
	}
	// Echo.channel('orders').listen('.message', e => ...)
	_, _ = hub.Publish(ctx, "orders", ratchet.Text(`{"id":8}`))
}
