package ratchet_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

// pacedTransport hands each batch to the test over a channel with no
// buffer: a peer that takes its messages a batch at a time, as long polls do.
type pacedTransport struct{ batches chan []ratchet.Message }

func (p *pacedTransport) WriteMessages(msgs []ratchet.Message) error {
	p.batches <- append([]ratchet.Message(nil), msgs...)
	return nil
}

func (p *pacedTransport) Close(ratchet.StatusCode, string) error { return nil }

// A recovery larger than a TransportConn's send queue reaches the peer
// whole: the Hub waits for the transport to take the queue instead of
// overflowing it.
func TestTransportConnRecoversMoreThanTheQueue(t *testing.T) {
	hub := ratchet.NewHub(ratchet.WithHistory("*", ratchet.HistoryPolicy{Size: 1000}))
	defer hub.Close(context.Background())
	ctx := context.Background()
	start, _, err := hub.PublishPosition(ctx, "news", ratchet.Text("0"))
	require.NoError(t, err)
	const missed = 500
	for i := 1; i <= missed; i++ {
		_, _, err := hub.PublishPosition(ctx, "news", ratchet.Text(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	tr := &pacedTransport{batches: make(chan []ratchet.Message)}
	c := ratchet.NewTransportConn(ratchet.ComponentFuncs{}, tr, httptest.NewRequest("GET", "/", nil), "", 16)
	c.Open()
	subscribed := make(chan error, 1)
	go func() {
		_, err := hub.SubscribeWith(ctx, c, "news", ratchet.SubscribeOptions{Since: start})
		subscribed <- err
	}()
	next := 1
	for next <= missed {
		select {
		case batch := <-tr.batches:
			for _, m := range batch {
				require.Equal(t, fmt.Sprint(next), m.String())
				next++
			}
		case <-c.Done():
			t.Fatalf("the connection ended after %d of %d messages", next-1, missed)
		}
	}
	require.NoError(t, <-subscribed)
	c.End(nil)
	<-c.Done()
}
