// pusher-js over one HTTP fallback transport (TRANSPORT: xhr_streaming or
// xhr_polling) through a load balancer that keeps a session's requests on
// one node (NODES: the balancer, then the two nodes behind it, which share
// Redis). Two clients whose sessions are on different nodes: private and
// presence channels, triggers from the HTTP API sent to the balancer and
// to each node reach both, client events cross between the nodes, nothing
// is lost or duplicated, and no session is lost (pusher-js would
// reconnect: "Server lost session") through several polls or heartbeats.
import assert from 'node:assert/strict';
import PusherJS from 'pusher-js';
import { env, clientOptions, clients, sdk, until, subscribed, record, sync, main } from './lib.mjs';

const transport = process.env.TRANSPORT;
const [lbHost, lbPort] = env.nodes[0].split(':');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// conns asks the test's balancer for the Pusher connections on each node.
async function conns() {
  const r = await fetch(`http://${env.nodes[0]}/test/conns`);
  assert.equal(r.status, 200);
  return r.json();
}

// untilConns waits until cond holds for the nodes' connection counts and
// returns them; it fails after 10 s.
async function untilConns(cond, what) {
  const start = Date.now();
  for (;;) {
    const n = await conns();
    if (cond(n)) return n;
    if (Date.now() - start > 10000) throw new Error(`timed out waiting for ${what}: connections ${n}`);
    await sleep(10);
  }
}

const total = (n) => n.reduce((a, b) => a + b, 0);

function client(user) {
  const c = new PusherJS(env.key, {
    ...clientOptions(0, user),
    enabledTransports: [transport],
    httpHost: lbHost,
    httpPort: Number(lbPort),
  });
  clients.push(c);
  c.states = [];
  c.errors = [];
  c.connection.bind('state_change', (s) => c.states.push(s.current));
  c.connection.bind('message', (m) => m.event === 'pusher:error' && c.errors.push(m.data));
  return c;
}

// connect connects a client for user through the balancer and returns it
// with the node its session is on: the one whose count went up.
async function connect(user) {
  const before = await conns();
  const c = client(user);
  await until(() => c.connection.state === 'connected', user.user_id + ' connected');
  const after = await untilConns((n) => total(n) === total(before) + 1, 'one more connection');
  const on = after.findIndex((n, i) => n === before[i] + 1);
  assert.equal(c.connection.connection.transport.name, transport, 'the transport used');
  return { c, on };
}

main(async () => {
  const annUser = { user_id: 'ann', user_info: { name: 'Ann' } };
  const bobUser = { user_id: 'bob', user_info: { name: 'Bob' } };
  const { c: ann, on: annOn } = await connect(annUser);
  // Sessions go to a node by the hash of their random name: try new Bobs
  // until one lands on the other node than Ann's (1 in 2 each time).
  let bob;
  for (let tries = 0; ; tries++) {
    assert.ok(tries < 20, 'every session on the same node: the balancer does not spread them');
    const b = await connect(bobUser);
    if (b.on !== annOn) {
      bob = b.c;
      break;
    }
    b.c.disconnect(); // its session ends after the session timeout
    clients.splice(clients.indexOf(b.c), 1);
    await untilConns((n) => total(n) === 1, 'the extra session to end');
  }

  const annChat = await subscribed(ann, 'private-chat');
  const bobChat = await subscribed(bob, 'private-chat');
  const annRoom = await subscribed(ann, 'presence-room');
  const bobRoom = await subscribed(bob, 'presence-room');
  await until(() => annRoom.members.count === 2 && bobRoom.members.count === 2, 'two members on each node');
  assert.deepEqual(annRoom.members.get('bob').info, { name: 'Bob' });
  assert.deepEqual(bobRoom.members.get('ann').info, { name: 'Ann' });

  const annSeen = record(annChat, 'client-typing');
  const bobSeen = record(bobChat, 'client-typing');
  const annRoomSeen = record(annRoom, 'client-wave');
  const bobRoomSeen = record(bobRoom, 'client-wave');
  const news = (seen) => seen.filter((e) => e.event === 'news').map((e) => e.data.n).sort((a, b) => a - b);

  // triggers sends n HTTP API triggers, in turn through the balancer
  // (round-robin) and to each node.
  let sent = 0;
  async function triggers(n) {
    for (let i = 0; i < n; i++) {
      sent++;
      await sdk(sent % 3).trigger('private-chat', 'news', { n: sent });
    }
    const want = Array.from({ length: sent }, (_, i) => i + 1);
    await until(() => news(annSeen).length >= sent && news(bobSeen).length >= sent, sent + ' news on both');
    assert.deepEqual(news(annSeen), want, 'every trigger once, for ann');
    assert.deepEqual(news(bobSeen), want, 'every trigger once, for bob');
  }
  await triggers(12);

  // Client events both ways, between the nodes (through Redis); pusher-js
  // sends each in an xhr_send of its own, so they may arrive in any order.
  for (let n = 1; n <= 5; n++) {
    assert.ok(annChat.trigger('client-typing', { from: 'ann', n }));
    assert.ok(bobChat.trigger('client-typing', { from: 'bob', n }));
  }
  assert.ok(annRoom.trigger('client-wave', { from: 'ann' }));
  assert.ok(bobRoom.trigger('client-wave', { from: 'bob' }));
  await sync(ann);
  await sync(bob);
  const typing = (seen) =>
    seen
      .filter((e) => e.event === 'client-typing')
      .map((e) => e.data.from + e.data.n)
      .sort();
  await until(() => typing(annSeen).length >= 5 && typing(bobSeen).length >= 5, 'client events on both');
  await until(() => annRoomSeen.length && bobRoomSeen.length, 'client-wave on both');
  assert.deepEqual(typing(annSeen), ['bob1', 'bob2', 'bob3', 'bob4', 'bob5'], 'bob to ann, each once');
  assert.deepEqual(typing(bobSeen), ['ann1', 'ann2', 'ann3', 'ann4', 'ann5'], 'ann to bob, each once');
  assert.deepEqual(annRoomSeen, [{ event: 'client-wave', data: { from: 'bob' }, user_id: 'bob' }]);
  assert.deepEqual(bobRoomSeen, [{ event: 'client-wave', data: { from: 'ann' }, user_id: 'ann' }]);

  // Several heartbeats later (a poll each, for xhr_polling), the sessions
  // are the same ones, on the same nodes, and still work.
  await sleep(Number(process.env.QUIET_MS));
  await triggers(6);
  for (const c of [ann, bob]) {
    assert.deepEqual(c.states, ['connected'], 'no reconnection: ' + c.states);
    assert.deepEqual(c.errors, [], 'no pusher:error');
  }
  const n = await conns();
  assert.deepEqual(n.slice().sort(), [1, 1], 'one session on each node: ' + n);
});
