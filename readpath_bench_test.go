package ratchet

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkReadMessage is the read path after coder/websocket's frame
// parsing: the pooled buffer and the one exact-size copy the component owns.
// Expect 1 alloc/op.
func BenchmarkReadMessage(b *testing.B) {
	for _, size := range []int{64, 4096, 64 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			payload := bytes.Repeat([]byte("x"), size)
			r := bytes.NewReader(payload)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(payload)
				if _, err := readMessage(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
