package engineio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
)

// Two nodes sharing a broker (a MemoryBroker here; Redis or NATS across
// processes): a session opened on node 1 is polled through node 2, which
// forwards the poll to node 1 over the broker, and closed by a POST
// through node 2 as well.
func ExampleWithBroker() {
	broker := ratchet.NewMemoryBroker()
	defer broker.Close()
	hello := ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { _ = c.Send(ratchet.Text("hello from node 1")) }}
	node1 := engineio.NewHandler(hello, engineio.WithBroker(broker))
	node2 := engineio.NewHandler(hello, engineio.WithBroker(broker))
	srv1, srv2 := httptest.NewServer(node1), httptest.NewServer(node2)
	defer srv1.Close()
	defer srv2.Close()
	defer node2.Shutdown(context.Background())
	defer node1.Shutdown(context.Background())

	get := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var open struct{ Sid string }
	_ = json.Unmarshal([]byte(get(srv1.URL + "/?EIO=4&transport=polling"))[1:], &open)
	fmt.Println(get(srv2.URL + "/?EIO=4&transport=polling&sid=" + open.Sid))
	fmt.Println("sessions on node 1:", node1.Len(), "on node 2:", node2.Len())
	resp, err := http.Post(srv2.URL+"/?EIO=4&transport=polling&sid="+open.Sid, "text/plain", strings.NewReader("1"))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(b), "- sessions on node 1:", node1.Len())
	}
	// Output:
	// 4hello from node 1
	// sessions on node 1: 1 on node 2: 0
	// ok - sessions on node 1: 0
}
