// Package wire is ratchet's side of its contract with coder/websocket: the
// upgrade, and the net.Conn that coder/websocket gets in place of the
// hijacked one. coder/websocket does the handshake checks, reads and
// inflates frames, and runs the close handshake's protocol errors;
// everything else on the wire is written here. What follows is all that
// ratchet relies on, and TestCoderWebsocketContract checks each point
// against the coder/websocket of go.mod: when an upgrade breaks one, that
// test fails, naming it.
//
// # The upgrade
//
// Accept calls websocket.Accept with a ResponseWriter of its own.
// coder/websocket checks the request and answers refusals (4xx) through
// net/http as usual; for an upgrade it sets Upgrade, Connection,
// Sec-WebSocket-Accept, and Sec-WebSocket-Protocol and
// Sec-WebSocket-Extensions when it negotiated them, calls WriteHeader(101),
// then Hijack. Accept writes the 101 answer itself from those headers, in
// one write (net/http's response path costs CPU and a buffer per
// handshake), and returns from Hijack a Conn with a 512-byte reader and a
// 128-byte writer, which coder/websocket keeps for the connection's life.
// permessage-deflate was negotiated if and only if coder/websocket set
// Sec-WebSocket-Extensions.
//
// # Who writes which frame
//
// ratchet encodes data frames, pings, pongs and its close frames itself,
// straight into the Conn's batch (AppendFrame): it never calls
// coder/websocket's Write, Writer or Ping, and its OnPingReceived hook
// returns false, so that coder/websocket sends no pong. It calls
// coder/websocket's Close only after its own close frame, once its reader
// has stopped, for coder/websocket to read on to the peer's answer.
// coder/websocket writes only close frames: the echo of a peer's close
// frame, the close for a protocol error it detects itself (1002, 1009), and
// the one of its Close. It writes each whole, in one Write call (a
// control frame is at most 127 bytes, which the 128-byte writer holds, and
// coder/websocket flushes it after every frame), so Conn recognises a close
// frame by its first byte, 0x88. After a close frame, in either direction
// of the write path, AppendFrame refuses data (net.ErrClosed); Write drops a
// second close frame (coder/websocket's echo of the peer's answer to
// ratchet's close, or its Close's) and replaces a close frame whose reason
// is not UTF-8 (the echo of a peer's invalid one; ratchet's own reasons are
// valid) with 1007.
//
// Package engineio's WebSocket transport writes its frames the same way
// (Hold, AppendFrame, Flush) but leaves coder/websocket's ping handler on:
// coder/websocket then also writes pongs, control frames written whole in
// one Write call like its close frames, which Conn keeps in order with the
// batches.
//
// # Reading
//
// coder/websocket reads everything through the Conn, which first replays
// what net/http had read beyond the request. OnPongReceived hands ratchet
// the pongs. Errors from Conn.Read reach the caller of coder/websocket's
// Reader wrapped, and corrupt compressed data is reported as a
// flate.CorruptInputError; Conn itself records whether the socket failed
// (SocketFailed) and whether the bound of LimitRead was reached
// (LimitReached), which coder/websocket's errors do not always show.
//
// # Writing
//
// Frames between Hold (or HoldNonBlocking) and Flush (or TryFlush) go out
// in one write system call. TryFlush tries once, without blocking, on a
// plain socket, and leaves what the socket did not take pending. Write
// timeouts are socket deadlines, re-armed only when half the timeout is
// used, not a timer per write. A write that blocks holds only the socket's
// lock: building a batch and TryFlush never wait for it.
package wire
