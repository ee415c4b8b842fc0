<?php
// publish-redis.php pushes a message to WebSocket clients by publishing it
// straight into Redis, for servers whose Hub uses the broker/redis Broker
// (scale-out). It speaks Redis's protocol over a plain socket: php-cli
// only, no extension, no Composer. With phpredis it is one line:
//   $redis->publish('ratchet:news', 'hello from PHP');
//
//   php publish-redis.php news "hello from PHP"
//
// Environment:
//   RATCHET_REDIS_ADDR    default 127.0.0.1:6379
//   RATCHET_REDIS_PREFIX  default ratchet: (the broker's WithPrefix)
//
// A text message is its raw payload on the channel prefix+topic. A binary
// one is the JSON envelope {"ratchet":1,"type":"binary","data":"<base64>"}.
// Prints how many nodes (Redis subscribers) received it.

declare(strict_types=1);

if ($argc !== 3) {
    fwrite(STDERR, "usage: php publish-redis.php TOPIC MESSAGE\n");
    exit(2);
}
[$topic, $message] = [$argv[1], $argv[2]];
$addr = getenv('RATCHET_REDIS_ADDR') ?: '127.0.0.1:6379';
$prefix = getenv('RATCHET_REDIS_PREFIX');
if ($prefix === false) {
    $prefix = 'ratchet:';
}

$sock = @stream_socket_client('tcp://' . $addr, $errno, $errstr, 5);
if ($sock === false) {
    fwrite(STDERR, "publish-redis.php: cannot reach Redis at $addr: $errstr\n");
    exit(1);
}
stream_set_timeout($sock, 5);

// RESP: an array of bulk strings.
$command = ['PUBLISH', $prefix . $topic, $message];
$request = '*' . count($command) . "\r\n";
foreach ($command as $part) {
    $request .= '$' . strlen($part) . "\r\n" . $part . "\r\n";
}
fwrite($sock, $request);
$reply = fgets($sock);
fclose($sock);

if ($reply === false || $reply[0] !== ':') {
    fwrite(STDERR, 'publish-redis.php: Redis answered ' . var_export($reply, true) . "\n");
    exit(1);
}
echo 'received by ' . (int) substr($reply, 1) . " node(s)\n";
