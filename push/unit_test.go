package push

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet"
)

func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct {
		msg  ratchet.Message
		want string
	}{
		{ratchet.Text("hello"), "id: 7\ndata: hello\n\n"},
		{ratchet.Text(""), "id: 7\ndata: \n\n"},
		{ratchet.Text("a\nb"), "id: 7\ndata: a\ndata: b\n\n"},
		{ratchet.Text("a\r\nb\rc\n"), "id: 7\ndata: a\ndata: b\ndata: c\ndata: \n\n"},
		{ratchet.Text(" x"), "id: 7\ndata:  x\n\n"},
		{ratchet.Binary([]byte{0xff, 0}), "id: 7\nevent: binary\ndata: /wA=\n\n"},
	} {
		require.Equal(t, tc.want, string(appendEvent([]byte("id: 7"), tc.msg)))
	}
}

// TestParsersAllocateBoundedly: oversized control messages are refused
// before decoding, and the publish body never exceeds the size limit.
func TestParsersAllocateBoundedly(t *testing.T) {
	huge := []byte(`{"subscribe":"` + strings.Repeat("a", 1<<20) + `"}`)
	allocs := testing.AllocsPerRun(10, func() { _, _ = parseControl(huge, DefaultMaxControlSize) })
	require.Zero(t, allocs)

	// A body much larger than the limit: the handler reads at most the
	// limit (+1 byte to detect it).
	h := NewPublishHandler(ratchet.NewHub(), WithSecret([]byte("s")), WithMaxBodySize(1024))
	r := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))}
	req := httptest.NewRequest("POST", "/publish", r)
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	ts, sig := Sign([]byte("s"), nil, time.Now()) // fresh: the body is read
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sig)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	require.Equal(t, 413, w.Code)
	require.LessOrEqual(t, r.n, 1025) // the limit, and one byte to notice
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestParseControl(t *testing.T) {
	for in, want := range map[string]control{
		`{"subscribe":"a"}`:               {subscribe: true, topic: "a"},
		` {"unsubscribe" : "caf\u00e9"} `: {topic: "café"},
		`{"\u0073ubscribe":"a"}`:          {subscribe: true, topic: "a"}, // the same name, escaped
	} {
		got, err := parseControl([]byte(in), DefaultMaxControlSize)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{
		`{"SUBSCRIBE":"a"}`, `{"Subscribe":"a"}`, // names are case-sensitive
		`{"subscribe":"a","subscribe":"b"}`, // no duplicates
		`{"subscribe":"a","unsubscribe":"a"}`,
		`{"subscribe":null}`, `{"subscribe":["a"]}`, `{}`, `{"subscribe":"a"}]`,
		`{"subscribe":"a"`, `"a"`, ``,
	} {
		_, err := parseControl([]byte(in), DefaultMaxControlSize)
		require.ErrorIs(t, err, errMalformed, in)
	}
}
