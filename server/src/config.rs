//! Every setting of the hub, read once at start-up: a `tidings` flag, each with a `TIDINGS_*`
//! environment twin. Durations are written `300ms`, `2s`, `1h`; `0` turns a timer off.

use clap::{Parser, Subcommand, ValueEnum};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// A Server-Sent Events hub: streams per user with replay by Last-Event-ID, a publish API and a
/// live console at `/`.
#[derive(Parser, Debug, Clone)]
#[command(name = "tidings", version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Turns authentication on: tokens are HS256 JWTs signed with this secret (at least 32 bytes).
    #[arg(long, env = "TIDINGS_JWT_SECRET", hide_env_values = true, global = true, value_parser = SecretParser)]
    pub jwt_secret: Option<String>,

    /// How long a one-time stream ticket stays valid.
    #[arg(long, env = "TIDINGS_TICKET_TTL", default_value = "30s", value_parser = parse_duration)]
    pub ticket_ttl: Duration,

    /// Address to listen on.
    #[arg(long, env = "TIDINGS_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// How many events (across all users) are kept for replay.
    #[arg(long, env = "TIDINGS_HISTORY", default_value_t = 10_000)]
    pub history: usize,

    /// How many bytes the events kept for replay may take (frames, recipients and bookkeeping);
    /// whichever of this and --history is reached first evicts the oldest.
    #[arg(long, env = "TIDINGS_HISTORY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub history_bytes: usize,

    /// Kept events older than this are evicted (0 = kept by --history and --history-bytes only);
    /// a client resuming from an id evicted by age gets the `gap` event.
    #[arg(long, env = "TIDINGS_HISTORY_TTL", default_value = "0s", value_parser = parse_duration)]
    pub history_ttl: Duration,

    /// Reconnection delay sent to clients as `retry:`.
    #[arg(long, env = "TIDINGS_RETRY", default_value = "3s", value_parser = parse_duration)]
    pub retry: Duration,

    /// A comment is written after this much silence, so proxies keep the stream open (0 = off).
    #[arg(long, env = "TIDINGS_KEEP_ALIVE", default_value = "15s", value_parser = parse_duration)]
    pub keep_alive: Duration,

    /// A stream ends after this long; browsers reconnect and replay (0 = never).
    #[arg(long, env = "TIDINGS_STREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub stream_timeout: Duration,

    /// Every this long one connected user, chosen at random, gets `{"time": ...}` (0 = off).
    #[arg(long, env = "TIDINGS_TICK_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub tick_interval: Duration,

    /// Streams one user may hold at once; past it, 429.
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_USER", default_value_t = 16)]
    pub max_connections_per_user: usize,

    /// Streams the hub holds at once; past it, 503. Default: what the file-descriptor limit allows,
    /// less the request connections and a few descriptors for the hub itself.
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// A write to a connection that makes no progress for this long ends it (a reader that
    /// stopped reading).
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_limit)]
    pub write_timeout: Duration,

    /// Longest a TLS handshake or a request head may take to arrive, on a new connection or
    /// between requests on a kept-alive one.
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_limit)]
    pub header_timeout: Duration,

    /// A connection with no request in flight (and no stream) closes after this long (0 = never).
    #[arg(long, env = "TIDINGS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Connections that are not streams (publishers, the console, /healthz), at most; at the
    /// cap the one idle longest is closed for a newcomer. Default: a sixteenth of the
    /// descriptor limit (16 to 1,024), kept back from streams.
    #[arg(long, env = "TIDINGS_MAX_REQUEST_CONNECTIONS")]
    pub max_request_connections: Option<usize>,

    /// Largest event data, in bytes as sent; past it, 413.
    #[arg(long, env = "TIDINGS_MAX_DATA", default_value_t = 64 * 1024)]
    pub max_data: usize,

    /// Bytes that may wait for one slow subscriber; past it, that stream is closed.
    #[arg(long, env = "TIDINGS_MAX_QUEUE", default_value_t = 1024 * 1024)]
    pub max_queue: usize,

    /// Origins allowed by CORS, comma-separated (default: any origin).
    #[arg(long, env = "TIDINGS_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,

    /// Keep the history in a database file in this directory, so it survives restarts.
    #[arg(long, env = "TIDINGS_DATA_DIR", conflicts_with = "redis_url")]
    pub data_dir: Option<PathBuf>,

    /// Join a cluster: keep the history in this Redis (redis://host:port) shared by every node.
    #[arg(long, env = "TIDINGS_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Folder of the console's built files (HTML, WASM, JS, CSS).
    #[arg(long, env = "TIDINGS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Certificate chain (PEM): serve HTTPS, with HTTP/2 and HTTP/1.1 (needs --tls-key).
    #[arg(long, env = "TIDINGS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "TIDINGS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mercure: the key publishers' tokens are verified with (a secret of 32 bytes or more for
    /// HS*, a PEM public key for RS*, PS*, ES*, EdDSA). Setting it turns `/.well-known/mercure` on.
    #[arg(long, env = "MERCURE_PUBLISHER_JWT_KEY", hide_env_values = true)]
    pub mercure_publisher_jwt_key: Option<String>,

    /// Mercure: the algorithm of publishers' tokens (default HS256).
    #[arg(long, env = "MERCURE_PUBLISHER_JWT_ALG")]
    pub mercure_publisher_jwt_alg: Option<String>,

    /// Mercure: the key subscribers' tokens are verified with (default: the publisher key).
    #[arg(long, env = "MERCURE_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    pub mercure_subscriber_jwt_key: Option<String>,

    /// Mercure: the algorithm of subscribers' tokens (default HS256).
    #[arg(long, env = "MERCURE_SUBSCRIBER_JWT_ALG")]
    pub mercure_subscriber_jwt_alg: Option<String>,

    /// Mercure's Caddyfile directives, one per line: `anonymous`, `cors_origins ...`,
    /// `publish_origins ...`, `heartbeat 40s`.
    #[arg(long, env = "MERCURE_EXTRA_DIRECTIVES")]
    pub mercure_extra_directives: Option<String>,

    /// Log lines as text or as JSON objects; filter them with RUST_LOG.
    #[arg(long, env = "TIDINGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Prints a token signed with --jwt-secret (or TIDINGS_JWT_SECRET).
    Token {
        /// The user the token streams for (its `sub`).
        #[arg(long)]
        user: Option<String>,
        /// Lets the token publish anything and list users and topics.
        #[arg(long)]
        publish: bool,
        /// Lets the token publish to the topics this selector matches (repeatable; no `to`).
        #[arg(long, conflicts_with = "publish")]
        publish_topic: Vec<String>,
        /// Lets the token's streams ask for topics this selector matches (repeatable).
        #[arg(long)]
        subscribe: Vec<String>,
        /// How long the token is valid (it must expire by the year 9999).
        #[arg(long, default_value = "1h", value_parser = parse_token_ttl)]
        ttl: Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses `300ms`, `2s`, `1h`, `1m 30s`; a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (write durations like 300ms, 2s, 1h)"))
}

/// Checks `--jwt-secret`: anyone who guesses the secret can sign tokens, and a short one (an
/// empty one above all) is guessed offline from any token. Its error never repeats the secret.
#[derive(Clone)]
struct SecretParser;

impl clap::builder::TypedValueParser for SecretParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |why: String| {
            let message = format!("--jwt-secret (or TIDINGS_JWT_SECRET) {why}\n");
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd)
        };
        let secret = value.to_str().ok_or_else(|| refuse("must be UTF-8".into()))?;
        if secret.len() < crate::auth::MIN_SECRET_BYTES {
            return Err(refuse(format!(
                "is {} bytes long; it must be at least {} bytes, or tokens can be forged by guessing it \
                 (make one with `openssl rand -hex 32`)",
                secret.len(),
                crate::auth::MIN_SECRET_BYTES
            )));
        }
        Ok(secret.to_owned())
    }
}

/// `tidings token --ttl`: a duration after which the token still expires by the year 9999.
fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    crate::auth::expiry_in(ttl)?;
    Ok(ttl)
}

/// A duration that bounds what a client may hold: never `0`, which would mean no time at all.
fn parse_limit(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("this limit cannot be turned off; give a duration like 30s".into()),
        d => Ok(d),
    }
}

/// `Some(d)` for a timer that is on, `None` for `0`.
pub fn timer(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented duration forms parse, and `0` means off.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert_eq!(timer(Duration::ZERO), None);
    }

    /// Defaults match the documented ones, and the environment twin is read.
    #[test]
    fn defaults_and_env() {
        let config = Config::parse_from(["tidings"]);
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.history, 10_000);
        assert_eq!(config.history_bytes, 64 * 1024 * 1024);
        assert_eq!(config.history_ttl, Duration::ZERO);
        assert_eq!(config.retry, Duration::from_secs(3));
        assert_eq!(config.keep_alive, Duration::from_secs(15));
        assert_eq!(config.stream_timeout, Duration::from_secs(60));
        assert_eq!(config.tick_interval, Duration::from_secs(2));
        assert_eq!(config.max_connections_per_user, 16);
        assert_eq!(config.max_data, 65_536);
        assert_eq!(config.max_queue, 1_048_576);
        assert_eq!(config.write_timeout, Duration::from_secs(30));
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert!(Config::try_parse_from(["tidings", "--write-timeout", "0"]).is_err(), "a limit cannot be 0");
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_request_connections, None);
        let config = Config::parse_from(["tidings", "--history", "5", "--cors-origin", "http://a,http://b"]);
        assert_eq!(config.history, 5);
        assert_eq!(Config::parse_from(["tidings", "--history-bytes", "4096"]).history_bytes, 4096);
        assert_eq!(config.cors_origin, ["http://a", "http://b"]);
    }

    /// `tidings token --ttl` refuses a lifetime whose `exp` would be past the year 9999 (or
    /// overflow), with a CLI error instead of a panic or a wrapped-around token.
    #[test]
    fn absurd_token_lifetimes_are_refused() {
        let secret = "thirty-two-bytes-of-a-secret-xyz";
        for ttl in ["100000y", "18446744073709551615s"] {
            let error = Config::try_parse_from(["tidings", "token", "--jwt-secret", secret, "--ttl", ttl]).unwrap_err();
            assert!(error.to_string().contains("year 9999"), "{error}");
        }
        let config = Config::parse_from(["tidings", "token", "--jwt-secret", secret, "--ttl", "30d"]);
        assert!(matches!(config.command, Some(Command::Token { ttl, .. }) if ttl == Duration::from_secs(30 * 86_400)));
    }

    /// A secret shorter than 32 bytes (an empty one too) is refused, for the hub and for
    /// `tidings token`, with a message that says why and does not repeat the secret.
    #[test]
    fn short_secrets_are_refused() {
        for argv in [
            vec!["tidings", "--jwt-secret", ""],
            vec!["tidings", "--jwt-secret", "thirty-one-bytes-of-a-secret-xx"],
            vec!["tidings", "token", "--user", "a", "--jwt-secret", "thirty-one-bytes-of-a-secret-xx"],
        ] {
            let error = Config::try_parse_from(&argv).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue, "{argv:?}");
            let message = error.to_string();
            assert!(message.contains("at least 32 bytes"), "{message}");
            assert!(!message.contains("thirty-one"), "the secret is not repeated: {message}");
        }
        let secret = "thirty-two-bytes-of-a-secret-xyz";
        let config = Config::parse_from(["tidings", "--jwt-secret", secret]);
        assert_eq!(config.jwt_secret.as_deref(), Some(secret));
    }
}
