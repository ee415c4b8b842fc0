package ratchet_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/ratchetgo/ratchet"
)

// printTransport is a Transport whose peer is the standard output.
type printTransport struct{}

func (printTransport) WriteMessages(msgs []ratchet.Message) error {
	for _, m := range msgs {
		fmt.Println("to the peer:", m)
	}
	return nil
}

func (printTransport) Close(code ratchet.StatusCode, reason string) error {
	fmt.Println("transport closed:", code, reason)
	return nil
}

// A transport becomes a Conn with NewTransportConn, and drives it: Open,
// Receive for each message from the peer, End when the peer is gone. The
// component sees a Conn like any other.
func ExampleNewTransportConn() {
	echo := ratchet.ComponentFuncs{
		Open: func(c ratchet.Conn) { fmt.Println("OnOpen") },
		Message: func(c ratchet.Conn, msg ratchet.Message) {
			_ = c.Send(msg)
			_ = c.Close(ratchet.StatusNormalClosure, "bye")
		},
		Close: func(c ratchet.Conn) { fmt.Println("OnClose") },
	}
	c := ratchet.NewTransportConn(echo, printTransport{}, httptest.NewRequest("GET", "/", nil), "", 0)
	c.Open()
	_ = c.Receive(ratchet.Text("hello")) // a message from the peer
	<-c.Done()
	// Output:
	// OnOpen
	// to the peer: hello
	// transport closed: 1000 normal closure bye
	// OnClose
}

// topicTransport is a PublicationWriter: it writes each message with its
// topic, as an SSE stream writes the topic's position into the event id.
type topicTransport struct{ printTransport }

func (topicTransport) WritePublications(pubs []ratchet.Publication) error {
	for _, p := range pubs {
		fmt.Printf("%q (position kept: %v): %s\n", p.Topic, !p.Position.IsZero(), p.Message)
	}
	return nil
}

// The Conn of a PublicationWriter gets each message of a topic with its
// topic and position; Send's messages come without a topic.
func ExamplePublicationWriter() {
	hub := ratchet.NewHub(ratchet.WithHistory("news", ratchet.HistoryPolicy{}))
	defer hub.Close(context.Background())
	ctx := context.Background()
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, topicTransport{}, httptest.NewRequest("GET", "/", nil), "", 0)
	c.Open()
	_ = hub.Subscribe(ctx, c, "news")
	_ = hub.Subscribe(ctx, c, "chat")
	_, _ = hub.Publish(ctx, "news", ratchet.Text("kept"))
	_, _ = hub.Publish(ctx, "chat", ratchet.Text("not kept"))
	_ = c.Send(ratchet.Text("direct"))
	_ = c.Close(ratchet.StatusNormalClosure, "")
	<-c.Done()
	// Output:
	// "news" (position kept: true): kept
	// "chat" (position kept: false): not kept
	// "" (position kept: false): direct
	// transport closed: 1000 normal closure
}
