package wire

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// Buffer sizes of an upgraded connection, kept for its whole life, so
// small. readBuffer is bufio's minimum: Conn buffers input itself, in a
// pooled buffer held only while input waits (see Conn.read), so that an idle
// connection holds 16 bytes instead of a read buffer. writeBuffer holds a
// whole control frame (2 + 125 bytes): each reaches Write in one call.
const (
	readBuffer  = 16
	writeBuffer = 128
)

// errNotHijacked means that coder/websocket upgraded the connection without
// going through Accept's ResponseWriter: the contract is broken.
var errNotHijacked = errors.New("wire: coder/websocket did not hijack through the wrapper")

// Accept upgrades r with coder/websocket's Accept, handing it a Conn in
// place of the hijacked connection (see the package documentation). deflate
// reports whether permessage-deflate was negotiated. On error, the request
// has been answered.
func Accept(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions, writeTimeout time.Duration) (ws *websocket.Conn, c *Conn, deflate bool, err error) {
	hw := &hijackWriter{ResponseWriter: w, writeTimeout: writeTimeout}
	ws, err = websocket.Accept(hw, r, opts)
	if err != nil {
		return nil, nil, false, err
	}
	if hw.wc == nil {
		_ = ws.CloseNow()
		return nil, nil, false, errNotHijacked
	}
	// coder/websocket put its reader over io.MultiReader(bytes of the
	// hijack's buffer, connection), for the input the hijack buffered
	// (golang/go#32314). Here that input is the Conn's pending bytes and the
	// buffer handed over was empty: reading the Conn directly saves the two
	// readers for the connection's life and a hop on every read.
	hw.wc.br.Reset(hw.wc)
	return ws, hw.wc, hw.header.Get("Sec-WebSocket-Extensions") != "", nil
}

// hijackWriter hands coder/websocket a Conn instead of the raw hijacked
// connection, and writes the 101 answer itself, in one write from the
// headers coder/websocket chose, instead of through net/http's general
// response machinery. Any other answer (a refusal) goes to the real
// ResponseWriter.
type hijackWriter struct {
	http.ResponseWriter
	writeTimeout time.Duration
	header       http.Header // set by coder/websocket
	switching    bool        // WriteHeader(101) was called: ours to send
	forwarded    bool        // the header went to the real ResponseWriter
	wc           *Conn
}

func (h *hijackWriter) Header() http.Header {
	if h.header == nil {
		h.header = make(http.Header, 4)
	}
	return h.header
}

func (h *hijackWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		h.switching = true
		return
	}
	h.forward()
	h.ResponseWriter.WriteHeader(code)
}

func (h *hijackWriter) Write(b []byte) (int, error) {
	h.forward()
	return h.ResponseWriter.Write(b)
}

func (h *hijackWriter) forward() {
	if h.forwarded {
		return
	}
	h.forwarded = true
	dst := h.ResponseWriter.Header()
	for k, v := range h.header {
		dst[k] = v
	}
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var pending []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pending = append([]byte(nil), b...)
	}
	wc := Wrap(nc, pending, h.writeTimeout)
	if h.switching {
		b := make([]byte, 0, 256)
		b = append(b, "HTTP/1.1 101 Switching Protocols\r\n"...)
		for k, vs := range h.header {
			for _, v := range vs {
				b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
			}
		}
		if _, err := wc.Write(append(b, "\r\n"...)); err != nil {
			_ = nc.Close()
			return nil, nil, err
		}
	}
	h.wc = wc
	wc.br = bufio.NewReaderSize(wc, readBuffer)
	return wc, bufio.NewReadWriter(wc.br, bufio.NewWriterSize(wc, writeBuffer)), nil
}
