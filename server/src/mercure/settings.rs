//! How a Mercure hub is configured, read the way the Mercure hub reads it: the keys and
//! algorithms from `MERCURE_PUBLISHER_JWT_KEY` / `_ALG` and `MERCURE_SUBSCRIBER_JWT_KEY` /
//! `_ALG` (the subscriber key defaults to the publisher's), and the rest from the Caddyfile
//! directives in `MERCURE_EXTRA_DIRECTIVES`, one per line: `anonymous`, `cors_origins`,
//! `publish_origins`, `heartbeat`, `publisher_jwt`, `subscriber_jwt`, `subscriptions`.
//! Directives that only tune the Go hub's own machinery are accepted and ignored (with a
//! warning); one that changes who may do what and is not supported stops the start.

use super::jwt::Key;
use std::time::Duration;

/// Which origins a list directive allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origins {
    /// The directive is absent.
    #[default]
    None,
    /// `*`.
    Any,
    List(Vec<String>),
}

impl Origins {
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Origins::None => false,
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// The Mercure endpoint's settings, checked at start-up.
#[derive(Clone)]
pub struct MercureSettings {
    pub publisher: Key,
    pub subscriber: Key,
    /// Subscribers without a token are served (public updates only).
    pub anonymous: bool,
    pub cors_origins: Origins,
    /// Origins a cookie-authorized publish may come from.
    pub publish_origins: Origins,
    /// The comment sent on an idle stream this often (`heartbeat`; Tidings' `--keep-alive`
    /// without it).
    pub heartbeat: Option<Duration>,
    /// Subscriptions are announced and listed (`subscriptions`).
    pub subscriptions: bool,
}

/// The environment a Mercure hub is configured with.
#[derive(Debug, Default, Clone)]
pub struct MercureEnv {
    pub publisher_key: Option<String>,
    pub publisher_alg: Option<String>,
    pub subscriber_key: Option<String>,
    pub subscriber_alg: Option<String>,
    pub directives: Option<String>,
}

impl MercureSettings {
    /// `Ok(None)`: Mercure is off (no key anywhere). `Err` names what is wrong.
    pub fn from_env(env: &MercureEnv) -> Result<Option<MercureSettings>, String> {
        let mut publisher = env.publisher_key.clone().map(|k| (k, env.publisher_alg.clone()));
        let mut subscriber = env.subscriber_key.clone().map(|k| (k, env.subscriber_alg.clone()));
        let mut settings = Directives::default();
        for line in env.directives.as_deref().unwrap_or("").lines() {
            let words = words(line)?;
            let Some((name, args)) = words.split_first() else { continue };
            match (name.as_str(), args) {
                ("anonymous", []) => settings.anonymous = true,
                ("subscriptions", []) => settings.subscriptions = true,
                ("cors_origins", origins) if !origins.is_empty() => settings.cors = origins_of(origins),
                ("publish_origins", origins) if !origins.is_empty() => settings.publish = origins_of(origins),
                ("heartbeat", [every]) => {
                    settings.heartbeat = Some(go_duration(every).map_err(|e| format!("`heartbeat {every}`: {e}"))?)
                }
                ("publisher_jwt", [key, rest @ ..]) if rest.len() <= 1 => {
                    publisher = Some((key.clone(), rest.first().cloned()))
                }
                ("subscriber_jwt", [key, rest @ ..]) if rest.len() <= 1 => {
                    subscriber = Some((key.clone(), rest.first().cloned()))
                }
                (
                    "publisher_jwks_url" | "subscriber_jwks_url" | "transport" | "transport_url" | "protocol_version_compatibility",
                    _,
                ) => {
                    return Err(format!(
                        "the Mercure directive `{name}` is not supported by Tidings (see the README's \"Coming from Mercure\")"
                    ))
                }
                ("write_timeout" | "dispatch_timeout" | "ui" | "demo" | "cookie_name" | "lru_cache" | "topic_selector_cache", _) => {
                    tracing::warn!(directive = %name, "Mercure directive ignored: Tidings has its own limits for it")
                }
                _ => return Err(format!("the Mercure directive {line:?} is not understood")),
            }
        }
        let Some((key, alg)) = publisher else {
            if subscriber.is_some() || env.directives.as_deref().is_some_and(|d| !d.trim().is_empty()) {
                return Err("Mercure needs a publisher key: set MERCURE_PUBLISHER_JWT_KEY".into());
            }
            return Ok(None);
        };
        let publisher = Key::new(&key, alg.as_deref()).map_err(|e| format!("MERCURE_PUBLISHER_JWT_KEY: {e}"))?;
        let subscriber = match subscriber {
            Some((key, alg)) => {
                Key::new(&key, alg.as_deref()).map_err(|e| format!("MERCURE_SUBSCRIBER_JWT_KEY: {e}"))?
            }
            None => publisher.clone(),
        };
        Ok(Some(MercureSettings {
            publisher,
            subscriber,
            anonymous: settings.anonymous,
            cors_origins: settings.cors,
            publish_origins: settings.publish,
            heartbeat: settings.heartbeat,
            subscriptions: settings.subscriptions,
        }))
    }
}

#[derive(Default)]
struct Directives {
    anonymous: bool,
    cors: Origins,
    publish: Origins,
    heartbeat: Option<Duration>,
    subscriptions: bool,
}

fn origins_of(list: &[String]) -> Origins {
    if list.iter().any(|o| o == "*") {
        Origins::Any
    } else {
        Origins::List(list.to_vec())
    }
}

/// A Caddyfile line's words: split on whitespace, `"..."` and `` `...` `` quoting kept whole.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let mut word = String::new();
        if c == '"' || c == '`' {
            chars.next();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some('\\') if c == '"' => word.extend(chars.next()),
                    Some(other) => word.push(other),
                    None => return Err(format!("the Mercure directive {line:?} has an unclosed quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek().filter(|c| !c.is_whitespace()) {
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// A Go duration (`40s`, `1m30s`, `500ms`, `0`), as the Mercure hub writes them.
fn go_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let digits =
            rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or("a number needs a unit (ms, s, m, h)")?;
        let number: f64 = rest[..digits].parse().map_err(|_| "not a duration")?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let unit = match &rest[digits..digits + unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += Duration::try_from_secs_f64(number * unit).map_err(|e| e.to_string())?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

    fn env(directives: &str) -> MercureEnv {
        MercureEnv { publisher_key: Some(SECRET.into()), directives: Some(directives.into()), ..MercureEnv::default() }
    }

    /// The directives a Symfony setup writes are read; the subscriber key defaults to the
    /// publisher's; no key at all means Mercure is off.
    #[test]
    fn directives_are_read() {
        let settings = MercureSettings::from_env(&env(
            "anonymous\ncors_origins https://a.example \"https://b.example\"\npublish_origins *\nheartbeat 1m30s\nsubscriptions",
        ))
        .unwrap()
        .unwrap();
        assert!(settings.anonymous);
        assert_eq!(settings.cors_origins, Origins::List(vec!["https://a.example".into(), "https://b.example".into()]));
        assert_eq!(settings.publish_origins, Origins::Any);
        assert_eq!(settings.heartbeat, Some(Duration::from_secs(90)));
        assert!(settings.subscriptions);
        let plain = MercureSettings::from_env(&env("")).unwrap().unwrap();
        assert!(!plain.anonymous && plain.cors_origins == Origins::None && !plain.subscriptions);
        assert!(MercureSettings::from_env(&MercureEnv::default()).unwrap().is_none());
    }

    /// A bad key, algorithm or directive stops the start with a message naming it.
    #[test]
    fn bad_settings_are_named() {
        let error = |env: MercureEnv| MercureSettings::from_env(&env).err().unwrap_or_default();
        assert!(error(env("transport bolt")).contains("`transport` is not supported"));
        assert!(error(env("subscriptions now")).contains("not understood"));
        assert!(error(env("heartbeat soon")).contains("heartbeat soon"));
        assert!(error(env("frobnicate")).contains("not understood"));
        let short = MercureEnv { publisher_key: Some("short".into()), ..MercureEnv::default() };
        assert!(error(short).contains("MERCURE_PUBLISHER_JWT_KEY"));
        let alg = MercureEnv { publisher_alg: Some("HS999".into()), ..env("") };
        assert!(error(alg).contains("HS999"));
        let pem = MercureEnv { publisher_alg: Some("RS256".into()), ..env("") };
        assert!(error(pem).contains("PEM"));
        let orphan = MercureEnv { directives: Some("anonymous".into()), ..MercureEnv::default() };
        assert!(error(orphan).contains("MERCURE_PUBLISHER_JWT_KEY"));
    }
}
