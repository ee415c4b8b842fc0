// Shared by the scenarios: the servers under test, Pusher's own clients
// pointed at them, and waiting without sleeping.
import PusherJS from 'pusher-js';
import PusherSDK from 'pusher';
import Echo from 'laravel-echo';

export const env = {
  appId: process.env.APP_ID,
  key: process.env.APP_KEY,
  secret: process.env.APP_SECRET,
  nodes: (process.env.NODES || '').split(','), // host:port of each node
};

const hostPort = (i) => {
  const [host, port] = env.nodes[i].split(':');
  return { host, port: Number(port) };
};

// sdk is the Node server library talking to node i's HTTP API.
export function sdk(i = 0) {
  const { host, port } = hostPort(i);
  return new PusherSDK({ appId: env.appId, key: env.key, secret: env.secret, host, port, useTLS: false });
}

// clientOptions are pusher-js options for node i; channels and sign-ins
// are authorized as an app's endpoints would, with the server library.
export function clientOptions(i, user) {
  const { host, port } = hostPort(i);
  const auth = sdk(i);
  return {
    cluster: 'mt1',
    wsHost: host,
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) =>
        cb(null, auth.authorizeChannel(socketId, channelName, channelName.startsWith('presence-') ? user : undefined)),
    },
    userAuthentication: {
      customHandler: ({ socketId }, cb) => cb(null, auth.authenticateUser(socketId, { id: user.user_id, user_info: user.user_info })),
    },
  };
}

export const clients = [];

export function client(i, user = { user_id: 'anon' }) {
  const c = new PusherJS(env.key, clientOptions(i, user));
  clients.push(c);
  return c;
}

export function echo(i, user) {
  const e = new Echo({ broadcaster: 'pusher', key: env.key, Pusher: PusherJS, ...clientOptions(i, user) });
  clients.push(e.connector.pusher);
  return e;
}

// until resolves when cond() holds, checking on every event loop turn;
// it fails after 10 s.
export function until(cond, what) {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const check = () => {
      let v;
      try {
        v = cond();
      } catch (e) {
        reject(e);
        return;
      }
      if (v) resolve(v);
      else if (Date.now() - start > 10000) reject(new Error('timed out waiting for ' + what));
      else setTimeout(check, 5);
    };
    check();
  });
}

export const connected = (c) => until(() => c.connection.state === 'connected', 'connection');

// subscribed subscribes c to a channel and waits for the server's yes.
export async function subscribed(c, name) {
  const ch = c.subscribe(name);
  await until(() => ch.subscribed, 'subscription to ' + name);
  return ch;
}

// record keeps what a channel gets, event by event (global listeners get
// no metadata: the user_id of client events is recorded by listeners of
// the names given).
export function record(channel, ...withUser) {
  const seen = [];
  channel.bind_global((event, data) => {
    if (!event.startsWith('pusher:') && !withUser.includes(event)) seen.push({ event, data });
  });
  for (const name of withUser) {
    channel.bind(name, (data, meta) => seen.push({ event: name, data, user_id: meta.user_id }));
  }
  return seen;
}

// sync sends pusher:ping on c and waits for the pong: the server has
// handled what c sent before.
export function sync(c) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m.event === 'pusher:pong') {
        c.connection.unbind('message', onMessage);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(() => reject(new Error('no pong')), 10000);
    c.connection.bind('message', onMessage);
    c.send_event('pusher:ping', {});
  });
}

let markers = 0;

// marker triggers an event on channel through node 0 and waits until every
// recorder got it: what the servers sent them before it has arrived. It
// returns the events before the marker and forgets them.
export async function marker(channel, recorders) {
  const n = ++markers;
  await sdk(0).trigger(channel, 'marker', { n });
  const out = [];
  for (const seen of recorders) {
    await until(() => seen.some((e) => e.event === 'marker' && e.data.n === n), 'marker ' + n + ' on ' + channel);
    const i = seen.findIndex((e) => e.event === 'marker' && e.data.n === n);
    out.push(seen.splice(0, i + 1).slice(0, i));
  }
  return out;
}

// main runs a scenario and reports: "ok", or the error and exit code 1.
export function main(scenario) {
  scenario()
    .then(() => {
      for (const c of clients) c.disconnect();
      console.log('ok');
    })
    .catch((e) => {
      console.error(e && e.stack ? e.stack : e);
      process.exit(1);
    })
    .finally(() => setTimeout(() => process.exit(process.exitCode || 0), 100));
}
