<?php

declare(strict_types=1);

/*
 * Publishes one Mercure update to a hub with Symfony's Mercure component, as Debian ships it
 * (php-symfony-mercure 0.6.3, php-symfony-http-client 5.4), for the end-to-end tests.
 *
 * Usage, with options:
 *   php end2end/mercure/publish.php --hub URL --topic T [--topic T2 ...] [--data D] [--private]
 *       [--id ID] [--type TYPE] [--retry MS]
 *       [--jwt TOKEN | [--secret KEY] [--publish SELECTOR ...] [--lifetime SECONDS]]
 * or with one JSON object (keys as the options; `topics` and `publish` are arrays, `private` a bool):
 *   php end2end/mercure/publish.php '{"hub": "...", "topics": ["..."], "data": "...", "private": true}'
 *
 * --hub      the hub's publish URL (default: $MERCURE_URL)
 * --jwt      a ready token; otherwise one is signed here with HS256 and --secret
 *            (default: $MERCURE_PUBLISHER_JWT_KEY), with the claim {"mercure": {"publish": [...]}}
 *            from the --publish selectors (default: ["*"]) and an `exp` --lifetime seconds ahead
 *            (default 3600, as Symfony's LcobucciFactory does; 0 for no `exp`).
 *
 * Prints the id the hub answered (its body, verbatim) and a newline, and exits 0; on failure
 * prints the exception chain, and the hub's status and body if it answered, to stderr and
 * exits 1; exits 2 on a usage error.
 *
 * Debian has no lcobucci/jwt package, so LcobucciFactory cannot be used: the token is signed
 * below and handed to the Hub through StaticTokenProvider.
 */

// Warnings must not mix with the id on stdout.
ini_set('display_errors', 'stderr');
error_reporting(E_ALL);

// Debian's autoloaders; Mercure's pulls in HttpClient's, HttpFoundation's, WebLink's and the
// contracts' itself through the include path (/usr/share/php), HttpClient's is named anyway.
require_once '/usr/share/php/Symfony/Component/HttpClient/autoload.php';
require_once '/usr/share/php/Symfony/Component/Mercure/autoload.php';

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;
use Symfony\Contracts\HttpClient\Exception\HttpExceptionInterface;

function usage(string $why): never
{
    fwrite(STDERR, "publish.php: $why\n");
    fwrite(STDERR, "usage: php publish.php --hub URL --topic T [--topic T ...] [--data D] [--private] [--id ID] [--type TYPE] [--retry MS] [--jwt TOKEN | --secret KEY [--publish SELECTOR ...] [--lifetime S]]\n");
    fwrite(STDERR, "   or: php publish.php '{\"hub\": URL, \"topics\": [...], \"data\": D, \"private\": true, ...}'\n");
    exit(2);
}

/** @return array<string, mixed> the options, with `topics` and `publish` as lists */
function parse_args(array $args): array
{
    if (count($args) === 1 && str_starts_with(ltrim($args[0]), '{')) {
        try {
            $options = json_decode($args[0], true, 16, JSON_THROW_ON_ERROR);
        } catch (JsonException $e) {
            usage('the JSON argument is not valid JSON: ' . $e->getMessage());
        }
        if (!is_array($options)) {
            usage('the JSON argument must be an object');
        }
        foreach (['topics', 'publish'] as $list) {
            if (isset($options[$list]) && is_string($options[$list])) {
                $options[$list] = [$options[$list]];
            }
        }
        if (isset($options['topic']) && !isset($options['topics'])) {
            $options['topics'] = (array) $options['topic'];
        }
        unset($options['topic']);
        return $options;
    }

    $options = ['topics' => []];
    $flags = ['private'];
    $values = ['hub', 'topic', 'data', 'id', 'type', 'retry', 'jwt', 'secret', 'publish', 'lifetime'];
    for ($i = 0; $i < count($args); $i++) {
        $arg = $args[$i];
        if (!str_starts_with($arg, '--')) {
            usage("unexpected argument: $arg");
        }
        [$name, $value] = array_pad(explode('=', substr($arg, 2), 2), 2, null);
        if (in_array($name, $flags, true)) {
            $options[$name] = $value === null ? true : !in_array(strtolower($value), ['0', 'false', 'off', 'no', ''], true);
            continue;
        }
        if (!in_array($name, $values, true)) {
            usage("unknown option: --$name");
        }
        if ($value === null) {
            if (!array_key_exists($i + 1, $args)) {
                usage("--$name needs a value");
            }
            $value = $args[++$i];
        }
        match ($name) {
            'topic' => $options['topics'][] = $value,
            'publish' => $options['publish'][] = $value,
            default => $options[$name] = $value,
        };
    }
    return $options;
}

function base64url(string $bytes): string
{
    return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
}

/** An HS256 JWT of these claims, as RFC 7519 says. */
function hs256(array $claims, string $key): string
{
    $json = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR;
    $signed = base64url(json_encode(['typ' => 'JWT', 'alg' => 'HS256'], $json))
        . '.' . base64url(json_encode($claims, $json));
    return $signed . '.' . base64url(hash_hmac('sha256', $signed, $key, true));
}

$options = parse_args(array_slice($argv, 1));

$hub = $options['hub'] ?? getenv('MERCURE_URL');
if (!is_string($hub) || $hub === '') {
    usage('no hub URL: give --hub or set MERCURE_URL');
}
$topics = $options['topics'] ?? [];
if (!is_array($topics) || $topics === [] || array_filter($topics, 'is_string') !== $topics) {
    usage('at least one --topic (a string) is needed');
}
$data = $options['data'] ?? '';
if (!is_string($data)) {
    usage('data must be a string');
}
$private = (bool) ($options['private'] ?? false);
$id = isset($options['id']) ? (string) $options['id'] : null;
$type = isset($options['type']) ? (string) $options['type'] : null;
if (isset($options['retry']) && !is_numeric($options['retry'])) {
    usage('retry must be a number of milliseconds');
}
$retry = isset($options['retry']) ? (int) $options['retry'] : null;

if (isset($options['jwt'])) {
    $jwt = (string) $options['jwt'];
} else {
    $secret = $options['secret'] ?? getenv('MERCURE_PUBLISHER_JWT_KEY');
    if (!is_string($secret) || $secret === '') {
        usage('no token: give --jwt, or --secret (or set MERCURE_PUBLISHER_JWT_KEY) to sign one');
    }
    $selectors = $options['publish'] ?? ['*'];
    if (!is_array($selectors) || array_filter($selectors, 'is_string') !== $selectors) {
        usage('publish selectors must be strings');
    }
    $claims = ['mercure' => ['publish' => array_values($selectors)]];
    $lifetime = (int) ($options['lifetime'] ?? 3600);
    if ($lifetime > 0) {
        $claims['exp'] = time() + $lifetime;
    }
    $jwt = hs256($claims, $secret);
}

try {
    $published = (new Hub($hub, new StaticTokenProvider($jwt)))
        ->publish(new Update(array_values($topics), $data, $private, $id, $type, $retry));
} catch (Throwable $e) {
    for ($cause = $e; $cause !== null; $cause = $cause->getPrevious()) {
        fwrite(STDERR, sprintf("%s: %s\n", get_class($cause), $cause->getMessage()));
        if ($cause instanceof HttpExceptionInterface) {
            $response = $cause->getResponse();
            fwrite(STDERR, sprintf("hub answered %d: %s\n", $response->getStatusCode(), $response->getContent(false)));
        }
    }
    exit(1);
}

echo $published, "\n";
exit(0);
