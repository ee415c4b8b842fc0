<?php
// publish.php pushes a message into a running ratchet-go push server
// (go run ./examples/push) through its HTTP publish API, signed with the
// shared secret. Plain php-cli with the curl extension; no Composer.
//
//   php publish.php news "hello from PHP"          to the subscribers of topic news
//   php publish.php --user alice "you have mail"   to every connection of user alice
//
// Environment:
//   RATCHET_PUSH_URL     default http://localhost:8080/publish
//   RATCHET_PUSH_SECRET  default dev-secret-change-me (the server's development default)
//
// Prints the server's JSON answer, e.g. {"topic":"news","delivered":2}, and
// exits 0 on success, 1 when the server refused or could not be reached,
// 2 on wrong usage.
//
// The signature: hex HMAC-SHA256, keyed with the secret, of the Unix time in
// seconds, a dot, and the exact request body; sent as
//   X-Ratchet-Timestamp: <time>
//   X-Ratchet-Signature: sha256=<hex>

declare(strict_types=1);

function fail(int $code, string $msg): void
{
    fwrite(STDERR, "publish.php: $msg\n");
    exit($code);
}

if (!extension_loaded('curl')) {
    fail(2, 'the curl extension is missing (apt-get install -y php-curl)');
}

$args = array_slice($argv, 1);
$target = 'topic';
if (count($args) === 3 && $args[0] === '--user') {
    $target = 'user';
    array_shift($args);
}
if (count($args) !== 2) {
    fail(2, "usage: php publish.php <topic> <message>\n       php publish.php --user <user> <message>");
}
[$name, $message] = $args;

$url = getenv('RATCHET_PUSH_URL') ?: 'http://localhost:8080/publish';
$secret = getenv('RATCHET_PUSH_SECRET') ?: 'dev-secret-change-me';

// "id" makes every request unique, so sending the same message twice within
// one second is not mistaken for a replay.
$body = json_encode(
    [$target => $name, 'data' => $message, 'id' => bin2hex(random_bytes(8))],
    JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE | JSON_THROW_ON_ERROR
);
$timestamp = (string) time();
$signature = 'sha256=' . hash_hmac('sha256', $timestamp . '.' . $body, $secret);

$ch = curl_init($url);
curl_setopt_array($ch, [
    CURLOPT_POST => true,
    CURLOPT_POSTFIELDS => $body,
    CURLOPT_HTTPHEADER => [
        'Content-Type: application/json',
        'X-Ratchet-Timestamp: ' . $timestamp,
        'X-Ratchet-Signature: ' . $signature,
    ],
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_CONNECTTIMEOUT => 5,
    CURLOPT_TIMEOUT => 15,
]);
$response = curl_exec($ch);
if ($response === false) {
    fail(1, "cannot reach $url: " . curl_error($ch));
}
$status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
echo rtrim((string) $response), "\n";
if ($status !== 200) {
    fail(1, "server answered $status");
}
