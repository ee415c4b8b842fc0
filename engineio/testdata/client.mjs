// client.mjs drives engine.io-client for the engineio tests.
//   node client.mjs URL TRANSPORTS   (TRANSPORTS: "polling" or "polling,websocket")
// It writes one JSON line per event (open, message, upgrading, upgrade,
// close) and reads one JSON command per line on stdin:
//   {"send": "text"}                  send one message
//   {"burst": N, "from": I}           send "cI" .. "c(I+N-1)" ("prefix": "p" sends "pI" ...)
//   {"burstOnUpgrading": N, "from": I} the same, as soon as the probe succeeded
//   {"burstOnOpen": N, "from": I}      the same, as soon as the session is open
//   {"freeze": true}                  block the event loop: a client that vanished
//   {"close": true}                   close the socket
import { Socket } from "engine.io-client";
import { createInterface } from "node:readline";

const [url, transports] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const socket = new Socket(url, { transports: transports.split(",") });
let pendingBurst = null;
let openBurst = null;

const burst = (n, from, prefix = "c") => {
  for (let i = from; i < from + n; i++) socket.send(prefix + i);
};

socket.on("open", () => {
  out({ event: "open", transport: socket.transport.name });
  if (openBurst) burst(openBurst.n, openBurst.from);
});
socket.on("message", (data) =>
  out({ event: "message", data: typeof data === "string" ? data : "binary:" + Buffer.from(data).toString("hex") }));
socket.on("upgrading", (t) => {
  out({ event: "upgrading", transport: t.name });
  if (pendingBurst) burst(pendingBurst.n, pendingBurst.from);
});
socket.on("upgrade", (t) => out({ event: "upgrade", transport: t.name }));
socket.on("close", (reason) => out({ event: "close", reason }));
socket.on("error", (err) => out({ event: "error", error: String(err) }));

createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.send !== undefined) socket.send(cmd.send);
  if (cmd.binary !== undefined) socket.send(Buffer.from(cmd.binary, "hex"));
  if (cmd.burst !== undefined) burst(cmd.burst, cmd.from, cmd.prefix);
  if (cmd.burstOnUpgrading !== undefined) pendingBurst = { n: cmd.burstOnUpgrading, from: cmd.from };
  if (cmd.burstOnOpen !== undefined) openBurst = { n: cmd.burstOnOpen, from: cmd.from };
  if (cmd.freeze) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  if (cmd.close) socket.close();
});
