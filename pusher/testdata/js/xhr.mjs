// pusher-js over its HTTP fallback only (TRANSPORT: xhr_streaming or
// xhr_polling), against node 0: private and presence channels, triggers
// from the HTTP API, client events, several polls or heartbeats without a
// reconnection, and a disconnect the server notices. Every HTTP request of
// the process (pusher-js and the server library) must go to node 0, never
// to Pusher's cloud (sockjs*.pusher.com).
import http from 'node:http';
import https from 'node:https';
import assert from 'node:assert/strict';
import PusherJS from 'pusher-js';
import { env, clientOptions, clients, sdk, until, subscribed, record, sync, marker, main } from './lib.mjs';

const transport = process.env.TRANSPORT;
const requests = [];
for (const mod of [http, https]) {
  const request = mod.request;
  mod.request = function (options, ...rest) {
    const o = typeof options === 'string' || options instanceof URL ? new URL(options) : options;
    requests.push({ host: `${o.hostname || o.host}:${o.port}`, path: o.path || o.pathname, tls: mod === https });
    return request.call(this, options, ...rest);
  };
}

function client(user) {
  const [host, port] = env.nodes[0].split(':');
  const c = new PusherJS(env.key, {
    ...clientOptions(0, user),
    enabledTransports: [transport],
    httpHost: host,
    httpPort: Number(port),
  });
  clients.push(c);
  const states = [];
  c.connection.bind('state_change', (s) => states.push(s.current));
  c.states = states;
  return c;
}

main(async () => {
  const ann = client({ user_id: 'ann', user_info: { name: 'Ann' } });
  const bob = client({ user_id: 'bob', user_info: { name: 'Bob' } });
  await until(() => ann.connection.state === 'connected' && bob.connection.state === 'connected', 'both connected');
  assert.equal(ann.connection.connection.transport.name, transport, 'the transport used');

  const annChat = await subscribed(ann, 'private-chat');
  const bobChat = await subscribed(bob, 'private-chat');
  const annRoom = await subscribed(ann, 'presence-room');
  const bobRoom = await subscribed(bob, 'presence-room');
  await until(() => annRoom.members.count === 2, 'two members for ann');
  assert.equal(bobRoom.members.count, 2);
  assert.deepEqual(bobRoom.members.get('ann').info, { name: 'Ann' });

  const annSeen = record(annChat, 'client-typing');
  const bobSeen = record(bobChat, 'client-typing');

  // Triggers from the HTTP API reach both.
  await sdk(0).trigger('private-chat', 'news', { n: 1 });
  await until(() => annSeen.length && bobSeen.length, 'news');
  assert.deepEqual(annSeen.shift(), { event: 'news', data: { n: 1 } });
  assert.deepEqual(bobSeen.shift(), { event: 'news', data: { n: 1 } });

  // A client event goes to the other subscriber only, with its user on
  // presence channels.
  assert.ok(annChat.trigger('client-typing', { who: 'ann' }));
  await sync(ann);
  const [forAnn, forBob] = await marker('private-chat', [annSeen, bobSeen]);
  assert.deepEqual(forAnn, []);
  assert.deepEqual(forBob, [{ event: 'client-typing', data: { who: 'ann' }, user_id: undefined }]);
  const roomSeen = record(bobRoom, 'client-wave');
  annRoom.trigger('client-wave', { hi: 1 });
  await until(() => roomSeen.length, 'client-wave');
  assert.deepEqual(roomSeen.shift(), { event: 'client-wave', data: { hi: 1 }, user_id: 'ann' });

  // Several heartbeats later (a poll each, for xhr_polling), the
  // connections are the same and still work.
  const before = requests.length;
  await new Promise((r) => setTimeout(r, Number(process.env.QUIET_MS)));
  assert.ok(requests.length - before >= 4, `only ${requests.length - before} requests while quiet`);
  for (let n = 2; n < 5; n++) {
    await sdk(0).trigger('private-chat', 'news', { n });
  }
  await until(() => annSeen.length >= 3 && bobSeen.length >= 3, 'news after the quiet time');
  assert.deepEqual(annSeen.splice(0).map((e) => e.data.n), [2, 3, 4], 'in order');
  assert.deepEqual(ann.states, ['connected'], 'no reconnection');
  assert.deepEqual(bob.states, ['connected'], 'no reconnection');

  // Ann leaves: the server ends her session (session timeout), and Bob
  // sees her go.
  ann.disconnect();
  await until(() => bobRoom.members.count === 1, 'ann removed from the room');

  const pathPrefix = `/pusher/app/${env.key}/`;
  for (const r of requests) {
    assert.equal(r.host, env.nodes[0], 'every request to the configured host: ' + JSON.stringify(r));
    assert.ok(!r.tls);
    assert.ok(r.path.startsWith(pathPrefix) || r.path.startsWith('/apps/'), 'path ' + r.path);
  }
  const kinds = new Set(requests.map((r) => r.path.split('?')[0].split('/').pop()));
  const want = transport === 'xhr_streaming' ? 'xhr_streaming' : 'xhr';
  assert.ok(kinds.has(want) && kinds.has('xhr_send'), 'requests made: ' + [...kinds]);
});
