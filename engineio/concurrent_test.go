package engineio_test

import (
	"sync"
	"testing"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
)

// Handshakes and requests of other sessions arrive at once: the session
// table is read and written concurrently (run with -race; the table was
// once written outside its lock).
func TestConcurrentHandshakes(t *testing.T) {
	const n = 50
	h := engineio.NewHandler(ratchet.ComponentFuncs{Open: func(c ratchet.Conn) { _ = c.Send(ratchet.Text("hi")) }})
	base := serve(t, h)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			session, _ := open(t, base)
			if status, body, _ := do(t, "GET", session, ""); status != 200 || body != "4hi" {
				t.Errorf("poll: %d %q", status, body)
			}
			if status, _, _ := do(t, "POST", session, "1"); status != 200 {
				t.Errorf("close: %d", status)
			}
		})
	}
	wg.Wait()
}
