// Laravel Echo on a presence channel across two nodes: a user with two tabs
// on node 1 joins once and leaves once for an observer on node 0, and
// .here() lists distinct users.
import assert from 'node:assert/strict';
import { echo, until, marker, main, clients } from './lib.mjs';

main(async () => {
  const observer = echo(0, { user_id: 'obs', user_info: { name: 'Observer' } });
  let here = null;
  const joining = [];
  const leaving = [];
  const seen = [];
  observer
    .join('room')
    .here((users) => (here = users))
    .joining((u) => joining.push(u))
    .leaving((u) => leaving.push(u))
    .listen('.marker', (d) => seen.push({ event: 'marker', data: d }));
  await until(() => here, 'here() of the observer');
  assert.deepEqual(here, [{ name: 'Observer' }]);

  const tabs = [];
  for (let i = 0; i < 2; i++) {
    const tab = echo(1, { user_id: 'u', user_info: { name: 'You' } });
    let tabHere = null;
    tab.join('room').here((users) => (tabHere = users));
    await until(() => tabHere, 'here() of tab ' + i);
    assert.equal(tabHere.length, 2, 'distinct users in here(): ' + JSON.stringify(tabHere));
    tabs.push(tab);
  }
  await marker('presence-room', [seen]);
  assert.deepEqual(joining, [{ name: 'You' }], 'one joining for two tabs');

  tabs[0].disconnect();
  await marker('presence-room', [seen]);
  assert.deepEqual(leaving, [], 'a tab is still open');
  tabs[1].disconnect();
  await until(() => leaving.length > 0, 'leaving');
  await marker('presence-room', [seen]);
  assert.deepEqual(leaving, [{ name: 'You' }], 'one leaving for two tabs');
  assert.equal(clients.length, 3);
});
