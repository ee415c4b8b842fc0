<?php
// trigger.php sends an event to a channel through the Pusher HTTP API of a
// running ratchet-go Pusher server (go run ./examples/pusher), signed as
// Pusher's server libraries sign it. Plain php-cli with the curl extension;
// no Composer. This is what Laravel's broadcasting does for you.
//
//   php trigger.php chat message '{"text":"hello from PHP"}'
//
// Environment (the example server's development defaults):
//   PUSHER_HOST        default http://localhost:6001
//   PUSHER_APP_ID      default app-id
//   PUSHER_APP_KEY     default app-key
//   PUSHER_APP_SECRET  default app-secret
//
// Prints the server's JSON answer ({} on success) and exits 0, 1 when the
// server refused or could not be reached, 2 on wrong usage.
//
// The signature: hex HMAC-SHA256, keyed with the app secret, of
//   "POST\n/apps/<id>/events\n" + the query parameters sorted by name,
//   "name=value" joined by "&" (auth_key, auth_timestamp, auth_version=1.0,
//   body_md5 = hex MD5 of the body)
// sent as the auth_signature parameter.

declare(strict_types=1);

function fail(int $code, string $msg): void
{
    fwrite(STDERR, "trigger.php: $msg\n");
    exit($code);
}

if (!extension_loaded('curl')) {
    fail(2, 'the curl extension is missing (apt-get install -y php-curl)');
}
if ($argc !== 4) {
    fail(2, "usage: php trigger.php <channel> <event> <data>");
}
[, $channel, $event, $data] = $argv;

$host = rtrim(getenv('PUSHER_HOST') ?: 'http://localhost:6001', '/');
$appId = getenv('PUSHER_APP_ID') ?: 'app-id';
$key = getenv('PUSHER_APP_KEY') ?: 'app-key';
$secret = getenv('PUSHER_APP_SECRET') ?: 'app-secret';

// data is a string, usually JSON, as in Pusher's API.
$body = json_encode(
    ['name' => $event, 'channels' => [$channel], 'data' => $data],
    JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR
);
$path = '/apps/' . $appId . '/events';
$params = [
    'auth_key' => $key,
    'auth_timestamp' => (string) time(),
    'auth_version' => '1.0',
    'body_md5' => md5($body),
];
ksort($params);
$query = implode('&', array_map(fn ($k, $v) => "$k=$v", array_keys($params), $params));
$params['auth_signature'] = hash_hmac('sha256', "POST\n$path\n$query", $secret);

$ch = curl_init($host . $path . '?' . http_build_query($params));
curl_setopt_array($ch, [
    CURLOPT_POST => true,
    CURLOPT_POSTFIELDS => $body,
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_HTTPHEADER => ['Content-Type: application/json'],
    CURLOPT_TIMEOUT => 10,
]);
$answer = curl_exec($ch);
if ($answer === false) {
    fail(1, 'cannot reach ' . $host . ': ' . curl_error($ch));
}
$status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
echo $answer, (str_ends_with($answer, "\n") ? '' : "\n");
if ($status !== 200) {
    fail(1, "the server answered $status");
}
