//go:build unix

package wstest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// SendRaw opens a TCP connection to addr and writes data on it as is, for
// requests no client would send (a body that never comes, say). The
// connection is closed at the end of the test.
func SendRaw(t testing.TB, addr, data string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	_, err = io.WriteString(nc, data)
	require.NoError(t, err)
	return nc
}

// ReadResponse reads one HTTP response and its body from br, failing the
// test if none comes within ten seconds.
func ReadResponse(t testing.TB, nc net.Conn, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "no answer")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// RequireClosed reads what is left on nc and fails the test unless the
// server closes the connection within ten seconds.
func RequireClosed(t testing.TB, nc net.Conn, br *bufio.Reader) {
	t.Helper()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.ReadAll(br)
	require.NoError(t, err, "the server should close the connection, not leave it to our deadline")
}

// Do sends req with http.DefaultClient and returns the response with its
// whole body, failing the test on error.
func Do(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}
