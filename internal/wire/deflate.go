package wire

import (
	"bytes"
	"compress/flate"
	"sync"
)

// DeflateMin is the smallest payload worth compressing: below it the
// deflate block overhead eats the gain (coder/websocket's threshold without
// context takeover).
const DeflateMin = 512

// deflateTail ends the output of a sync flush; RFC 7692 §7.2.1 has the
// sender remove it and the receiver add it back.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

var flatePool = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// Deflate compresses p as one permessage-deflate message without context
// takeover (RFC 7692 §7.2.1): the same bytes serve every connection that
// negotiated the extension, so a broadcast compresses once.
func Deflate(p []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(p)/2 + 16)
	w := flatePool.Get().(*flate.Writer)
	w.Reset(&out)
	_, _ = w.Write(p) // writes to a bytes.Buffer cannot fail
	_ = w.Flush()
	flatePool.Put(w)
	return bytes.TrimSuffix(out.Bytes(), deflateTail)
}
