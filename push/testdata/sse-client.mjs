// sse-client.mjs: the npm package eventsource as a test's SSE client.
//
//   node sse-client.mjs URL
//
// Connects to URL and writes one JSON line to stdout per callback:
//   {"type":"open"}
//   {"type":"error","message":".."}   the stream ended or failed (it reconnects)
//   {"type":"message"|"position"|"reset"|"binary","id":"..","data":".."}
//                                     an event; id is its lastEventId
// It runs until it is killed.
import { EventSource } from "eventsource";

const url = process.argv[2];
if (!url) {
  process.stderr.write("usage: node sse-client.mjs URL\n");
  process.exit(2);
}

const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const es = new EventSource(url);
es.onopen = () => out({ type: "open" });
es.onerror = (e) => out({ type: "error", message: e.message ?? "" });
for (const type of ["message", "position", "reset", "binary"]) {
  es.addEventListener(type, (e) => out({ type, id: e.lastEventId, data: e.data }));
}
