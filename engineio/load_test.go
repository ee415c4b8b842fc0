package engineio_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ratchetgo/ratchet"
	"github.com/ratchetgo/ratchet/engineio"
)

// 1,000 polling sessions are open at once on one handler, each with a poll
// pending: a broadcast reaches every one of them, each one's message comes
// back to it alone, and each closes with its OnClose.
func TestThousandPollingSessions(t *testing.T) {
	const n = 1000
	var all ratchet.ConnSet
	var closes sync.WaitGroup
	closes.Add(n)
	h := engineio.NewHandler(ratchet.ComponentFuncs{
		Open:    func(c ratchet.Conn) { all.Add(c) },
		Message: func(c ratchet.Conn, m ratchet.Message) { _ = c.Send(m) },
		Close:   func(c ratchet.Conn) { all.Remove(c); closes.Done() },
	}, engineio.WithPing(time.Hour, time.Hour)) // no ping in a poll body, however slow the run
	base := serve(t, h)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	request := func(method, url, body string) (string, error) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("%s: %d %s", method, resp.StatusCode, b)
		}
		return string(b), err
	}

	sessions := make([]string, n)
	for i := range sessions {
		sessions[i], _ = open(t, base)
	}
	if h.Len() != n || all.Len() != n {
		t.Fatalf("%d sessions, %d open conns, want %d", h.Len(), all.Len(), n)
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, session := range sessions {
		wg.Go(func() {
			errs <- func() error {
				if got, err := request("GET", session, ""); err != nil || got != "4all" {
					return fmt.Errorf("session %d: broadcast poll %q, %v", i, got, err)
				}
				want := fmt.Sprintf("4mine %d", i)
				if _, err := request("POST", session, want); err != nil {
					return err
				}
				if got, err := request("GET", session, ""); err != nil || got != want {
					return fmt.Errorf("session %d: poll %q, %v; want %q", i, got, err, want)
				}
				_, err := request("POST", session, "1")
				return err
			}()
		})
	}
	if sent := all.Broadcast(ratchet.Message{Type: ratchet.MessageText, Data: []byte("all")}); sent != n {
		t.Errorf("broadcast queued for %d sessions, want %d", sent, n)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	closes.Wait()
	if h.Len() != 0 {
		t.Fatalf("%d sessions left", h.Len())
	}
}
