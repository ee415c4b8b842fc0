// The Node server library against the server: trigger with socket_id,
// triggerBatch, get, authorizeChannel (private, presence),
// authenticateUser + sendToUser, terminateUserConnections, whisper; and its
// webhook().isValid() on every webhook the server sends.
import assert from 'node:assert/strict';
import http from 'node:http';
import { sdk, client, connected, subscribed, record, marker, sync, until, main } from './lib.mjs';

main(async () => {
  // The app's webhook endpoint.
  const hooks = [];
  let invalid = 0;
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const wh = sdk(0).webhook({ headers: req.headers, rawBody: body });
      if (wh.isValid()) hooks.push(...wh.getEvents());
      else invalid++;
      res.end();
    });
  });
  await new Promise((r) => receiver.listen(Number(process.env.WEBHOOK_PORT), '127.0.0.1', r));

  const api = sdk(0);
  const x = client(0, { user_id: 'x' });
  const y = client(1, { user_id: 'y' });
  await Promise.all([connected(x), connected(y)]);

  // trigger, with socket_id exclusion across nodes.
  const xs = record(await subscribed(x, 'private-orders'));
  const ys = record(await subscribed(y, 'private-orders'));
  await api.trigger('private-orders', 'shipped', { id: 1 }, { socket_id: y.connection.socket_id });
  const [beforeX, beforeY] = await marker('private-orders', [xs, ys]);
  assert.deepEqual(beforeX, [{ event: 'shipped', data: { id: 1 } }]);
  assert.deepEqual(beforeY, [], 'excluded by socket_id');

  // triggerBatch.
  await api.triggerBatch([
    { channel: 'private-orders', name: 'a', data: { n: 1 } },
    { channel: 'private-orders', name: 'b', data: 'two' },
  ]);
  const [bx] = await marker('private-orders', [xs, ys]);
  assert.deepEqual(bx.map((e) => [e.event, e.data]), [['a', { n: 1 }], ['b', 'two']]);

  // Presence, and get of channels and users.
  const px = record(await subscribed(x, 'presence-team'));
  const py = record(await subscribed(y, 'presence-team'), 'client-typing');
  const got = await (await api.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
  assert.deepEqual(got, { channels: { 'presence-team': { user_count: 2 } } });
  const users = await (await api.get({ path: '/channels/presence-team/users' })).json();
  assert.deepEqual(users, { users: [{ id: 'x' }, { id: 'y' }] });
  const info = await (await api.get({ path: '/channels/private-orders', params: { info: 'subscription_count' } })).json();
  assert.deepEqual(info, { occupied: true, subscription_count: 2 });

  // whisper: to the other member, with user_id, not back to the sender.
  x.channel('presence-team').trigger('client-typing', { typing: true });
  await sync(x);
  const [wx, wy] = await marker('presence-team', [px, py]);
  assert.deepEqual(wx, [], 'not echoed');
  assert.deepEqual(wy, [{ event: 'client-typing', data: { typing: true }, user_id: 'x' }]);

  // A client event on a public channel is refused.
  const errors = [];
  x.connection.bind('error', (e) => errors.push(e));
  await subscribed(x, 'news');
  x.channel('news').trigger('client-nope', {});
  await until(() => errors.length > 0, 'refusal of a client event on a public channel');
  assert.equal(errors[0].data.code, 4009);

  // authenticateUser, sendToUser, terminateUserConnections.
  let hello = null;
  y.user.bind('hello', (d) => (hello = d));
  y.signin();
  await until(() => y.user.user_data, 'sign-in');
  await until(() => y.user.serverToUserChannel && y.user.serverToUserChannel.subscribed, "the user's channel");
  await api.sendToUser('y', 'hello', { to: 'y' });
  await until(() => hello, 'sendToUser');
  assert.deepEqual(hello, { to: 'y' });
  const closes = [];
  y.connection.bind('error', (e) => closes.push(e));
  await api.terminateUserConnections('y');
  await until(() => y.connection.state === 'disconnected', 'termination');
  assert.ok(closes.some((e) => e.error && e.error.data && e.error.data.code === 4009), JSON.stringify(closes));

  // Webhooks, from whichever node sends them: every one valid, and the
  // channel's life told once.
  x.disconnect();
  const hook = (what, f) => until(() => hooks.some(f), what + ' webhook');
  await hook('channel_vacated', (h) => h.name === 'channel_vacated' && h.channel === 'private-orders');
  await hook('member_added', (h) => h.name === 'member_added' && h.user_id === 'y');
  await hook('client_event', (h) => h.name === 'client_event' && h.event === 'client-typing' && h.user_id === 'x');
  assert.equal(invalid, 0);
  const names = hooks.filter((h) => h.channel === 'private-orders').map((h) => h.name);
  assert.deepEqual(names, ['channel_occupied', 'channel_vacated']);
  receiver.close();
});
