// listen subscribes pusher-js to CHANNELS on the server at BASE (http://host:port),
// authorized through the server's own /broadcasting/auth endpoint as a
// browser would be, prints "ready", then prints each event it gets as a
// JSON line {channel, event, data}, and exits after COUNT of them.
// TRANSPORT (default ws) is the one pusher-js may use: ws, xhr_streaming or
// xhr_polling (its HTTP fallback, at the same host).
import PusherJS from 'pusher-js';
import { until } from './lib.mjs';

const base = new URL(process.env.BASE);
const count = Number(process.env.COUNT);
const pusher = new PusherJS(process.env.KEY, {
  cluster: 'mt1',
  wsHost: base.hostname,
  wsPort: Number(base.port),
  httpHost: base.hostname,
  httpPort: Number(base.port),
  forceTLS: false,
  enabledTransports: [process.env.TRANSPORT || 'ws'],
  disableStats: true,
  channelAuthorization: { endpoint: base.origin + '/broadcasting/auth', params: { name: 'node' } },
});
let seen = 0;
const channels = process.env.CHANNELS.split(',').map((name) => {
  const ch = pusher.subscribe(name);
  ch.bind_global((event, data) => {
    if (event.startsWith('pusher:')) return;
    console.log(JSON.stringify({ channel: name, event, data }));
    if (++seen === count) {
      pusher.disconnect();
      setTimeout(() => process.exit(0), 50);
    }
  });
  ch.bind('pusher:subscription_error', (e) => {
    console.error('subscription error', name, JSON.stringify(e));
    process.exit(1);
  });
  return ch;
});
await until(() => channels.every((c) => c.subscribed), 'subscriptions');
console.log('ready');
