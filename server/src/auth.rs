//! Who may listen and who may publish. Off by default (an open hub for development); on with
//! `--jwt-secret`, tokens are HS256 JWTs: `sub` names the subscriber, `"subscribe": [selectors]`
//! lists the topics its streams may ask for (without it, only the user's own events),
//! `"publish": true` marks a publisher of anything and `"publish": [selectors]` one of the
//! topics those match only (a `to` needs `true`). A token is valid until `exp` plus 5 s of leeway, to the millisecond: accepted
//! strictly before that instant, and a stream opened with it ends there.
//!
//! A browser's `EventSource` cannot send headers, so a stream also accepts `?token=` — or, so no
//! long-lived token sits in a URL, a one-time `?ticket=` from `POST /api/tickets`, good for one
//! stream within `--ticket-ttl` (the table of them is `tickets`).

mod tickets;

use crate::error::AppError;
use crate::hub::selector::{Selector, Selectors};
use app::event::{PublishRequest, UserName};
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tickets::{Refusal, Ticket, Tickets};

/// The instant a token or ticket stops being valid, on the wall clock (tokens say `exp` in
/// Unix seconds).
pub type Deadline = SystemTime;

/// The shortest `--jwt-secret` accepted: an HS256 key is only as strong as it is long, and a
/// short one is found offline from any single token.
pub const MIN_SECRET_BYTES: usize = 32;
/// How long after `exp` a token still counts (the crate's default is 60 s).
const LEEWAY: Duration = Duration::from_secs(5);
/// The latest `exp` accepted, 9999-12-31T23:59:59Z: a later one is a forgery or a bug, and
/// would overflow the time arithmetic of the stream it opens.
pub const MAX_EXP: u64 = 253_402_300_799;
/// Outstanding tickets are capped so a token holder cannot grow the table without bound.
const MAX_TICKETS: usize = 100_000;
/// Unredeemed tickets one user may hold: past it, 429 for that user only.
const MAX_TICKETS_PER_USER: usize = 16;

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user a subscriber token streams for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// What the bearer may publish (and whether it may list users and topics).
    #[serde(default, skip_serializing_if = "PublishRight::is_none")]
    pub publish: PublishRight,
    /// The topic selectors a subscriber's streams may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
}

/// The `publish` claim: `true` (anything), `false` (nothing), or the selectors of the topics the
/// bearer may publish to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PublishRight {
    Any(bool),
    Topics(Vec<String>),
}

impl Default for PublishRight {
    fn default() -> Self {
        PublishRight::Any(false)
    }
}

impl From<bool> for PublishRight {
    fn from(any: bool) -> Self {
        PublishRight::Any(any)
    }
}

impl PublishRight {
    fn is_none(&self) -> bool {
        *self == PublishRight::Any(false)
    }
}

/// What an admitted publisher may publish.
#[derive(Debug)]
pub enum Publisher {
    /// Anything: auth is off, or the token says `"publish": true`.
    Anything,
    /// Events about topics these selectors match, and to no user.
    Topics(Vec<Selector>),
}

impl Publisher {
    /// 403 for an event this publisher may not publish, naming what is refused.
    pub fn check(&self, request: &PublishRequest) -> Result<(), AppError> {
        let Publisher::Topics(allowed) = self else { return Ok(()) };
        if !request.to.is_nobody() {
            return Err(AppError::Forbidden("publishing to users (`to`) needs `\"publish\": true`".into()));
        }
        match request.topics.iter().find(|topic| !allowed.iter().any(|s| s.matches(topic))) {
            Some(topic) => Err(AppError::Forbidden(format!("this token may not publish to the topic {topic:?}"))),
            None => Ok(()),
        }
    }
}

/// Parses the selectors of a claim; a bad one makes the token unusable (403 naming it).
fn claimed(cache: &Selectors, selectors: &[String], claim: &str) -> Result<Vec<Selector>, AppError> {
    selectors
        .iter()
        .map(|s| cache.parse(s).map_err(|e| AppError::Forbidden(format!("the token's `{claim}` claim: {e}"))))
        .collect()
}

/// Signs `claims` with `secret` (for `tidings token` and tests).
pub fn issue_token(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The `exp` of a token valid for `ttl` from now; `Err` (saying why) past [`MAX_EXP`].
pub fn expiry_in(ttl: Duration) -> Result<u64, String> {
    unix_now()
        .checked_add(ttl.as_secs())
        .filter(|exp| *exp <= MAX_EXP)
        .ok_or_else(|| "is too long: the token would expire after the year 9999".to_owned())
}

/// When a token with this `exp` stops being valid: `exp` plus the leeway. `None` past
/// [`MAX_EXP`].
fn deadline(exp: u64) -> Option<Deadline> {
    if exp > MAX_EXP {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))?.checked_add(LEEWAY)
}

/// The hub's access policy: open, or checked against a secret.
#[derive(Clone)]
pub struct Auth {
    keys: Option<Arc<Keys>>,
}

struct Keys {
    /// The claims' templates, compiled once.
    selectors: Selectors,
    decoding: DecodingKey,
    validation: Validation,
    // A std mutex: held to insert or remove an entry (and pop the expired ones before it).
    tickets: Mutex<Tickets>,
}

/// Whom a stream is for, and when it must end (when its credential stops being valid).
#[derive(Debug, PartialEq, Eq)]
pub struct Listener {
    /// `None`: an anonymous stream (topics only, auth off).
    pub user: Option<UserName>,
    pub expires: Option<Deadline>,
    /// The topics whose private events the credential allows (its `subscribe` claim).
    pub authorized: Arc<[Selector]>,
}

impl Listener {
    /// The instant on tokio's clock at which the stream must end, if it must.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        on_tokio_clock(self.expires?)
    }
}

/// A credential's deadline on tokio's clock, which streams are timed by.
pub fn on_tokio_clock(at: Deadline) -> Option<tokio::time::Instant> {
    instant_of(at, SystemTime::now(), tokio::time::Instant::now())
}

/// `at` on the monotonic clock, given the two clocks' readings `now` and `mono_now`; an
/// instant already past is `mono_now`; `None` for one beyond what the clock can hold.
fn instant_of(at: SystemTime, now: SystemTime, mono_now: tokio::time::Instant) -> Option<tokio::time::Instant> {
    mono_now.checked_add(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// 403 unless `allowed` (a credential's selectors) allows every selector `asked` for: an exact
/// topic that one of them matches, or a pattern (`*`, a template) it holds itself or under `*`.
fn permit(allowed: &[Selector], asked: &[Selector]) -> Result<(), AppError> {
    let covered = |selector: &Selector| {
        allowed.iter().any(|a| match selector {
            Selector::Exact(topic) => a.matches(topic),
            pattern => matches!(a, Selector::All) || a == pattern,
        })
    };
    match asked.iter().find(|s| !covered(s)) {
        Some(refused) => {
            Err(AppError::Forbidden(format!("the credential does not allow the topic {:?}", refused.as_str())))
        }
        None => Ok(()),
    }
}

/// A token whose signature and expiry checked out.
#[derive(Debug)]
struct Verified {
    claims: Claims,
    expires: Deadline,
}

/// How a stream request presented itself.
#[derive(Debug, Default)]
pub struct StreamCredentials<'a> {
    pub user: Option<&'a str>,
    /// The topic selectors the stream asks for.
    pub topics: &'a [Selector],
    pub token: Option<&'a str>,
    pub ticket: Option<&'a str>,
}

fn unauthorized(why: &str) -> AppError {
    AppError::Unauthorized(why.to_owned())
}

impl Auth {
    /// An open hub.
    pub fn open() -> Auth {
        Auth { keys: None }
    }

    /// Checks tokens against `secret`.
    pub fn with_secret(secret: &str, ticket_ttl: Duration) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is required, but checked here, in milliseconds: the crate counts whole seconds.
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = false;
        Auth {
            keys: Some(Arc::new(Keys {
                selectors: Selectors::default(),
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                validation,
                tickets: Mutex::new(Tickets::new(ticket_ttl, MAX_TICKETS_PER_USER, MAX_TICKETS)),
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    fn decode(keys: &Keys, token: &str) -> Result<Verified, AppError> {
        Self::decode_at(keys, token, SystemTime::now())
    }

    /// Checks `token` as of `now`: valid strictly before its `exp` plus the leeway.
    fn decode_at(keys: &Keys, token: &str, now: SystemTime) -> Result<Verified, AppError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                unauthorized(match e.kind() {
                    ErrorKind::InvalidSignature => "the token's signature does not match",
                    ErrorKind::InvalidAlgorithm => "tokens must be signed with HS256",
                    _ => "the token is malformed",
                })
            })?;
        let expires = deadline(claims.exp).ok_or_else(|| unauthorized("the token's `exp` is past the year 9999"))?;
        if now >= expires {
            return Err(unauthorized("the token has expired"));
        }
        Ok(Verified { claims, expires })
    }

    /// The bearer token of `Authorization: Bearer ...`, if any.
    fn bearer(headers: &HeaderMap) -> Option<&str> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Decides whom a stream is for. An open hub takes the `user` parameter (or `default_user`,
    /// or nobody);
    /// with auth on, the user comes from the token or ticket and a differing `user` is 403.
    pub fn stream_listener(
        &self,
        headers: &HeaderMap,
        credentials: StreamCredentials<'_>,
        default_user: Option<&str>,
    ) -> Result<Listener, AppError> {
        let Some(keys) = &self.keys else {
            let user =
                credentials.user.or(default_user).map(UserName::new).transpose().map_err(AppError::BadRequest)?;
            return Ok(Listener { user, expires: None, authorized: Arc::default() });
        };
        let (user, expires, authorized) = if let Some(ticket) = credentials.ticket {
            let ticket = Self::redeem(keys, ticket, credentials.user, credentials.topics)?;
            let authorized = claimed(&keys.selectors, &ticket.subscribe, "subscribe")?;
            (ticket.user, ticket.expires, authorized)
        } else {
            let token = credentials
                .token
                .or_else(|| Self::bearer(headers))
                .ok_or_else(|| unauthorized("a token (?token= or Authorization: Bearer) or a ?ticket= is required"))?;
            let verified = Self::decode(keys, token)?;
            let subscribe = verified.claims.subscribe.as_deref().unwrap_or_default();
            let authorized = claimed(&keys.selectors, subscribe, "subscribe")?;
            permit(&authorized, credentials.topics)?;
            (Self::subscriber(verified.claims)?, verified.expires, authorized)
        };
        if let Some(asked) = credentials.user {
            if asked != user.as_str() {
                return Err(AppError::Forbidden("the credential is for another user".into()));
            }
        }
        Ok(Listener { user: Some(user), expires: Some(expires), authorized: authorized.into() })
    }

    /// What the bearer may publish: 401 without a valid bearer token, 403 for one without a
    /// `publish` claim (or with a bad selector in it).
    pub fn require_publisher(&self, headers: &HeaderMap) -> Result<Publisher, AppError> {
        let Some(keys) = &self.keys else { return Ok(Publisher::Anything) };
        let token = Self::bearer(headers)
            .ok_or_else(|| unauthorized("a publisher token is required (Authorization: Bearer)"))?;
        match Self::decode(keys, token)?.claims.publish {
            PublishRight::Any(true) => Ok(Publisher::Anything),
            PublishRight::Topics(selectors) => Ok(Publisher::Topics(claimed(&keys.selectors, &selectors, "publish")?)),
            PublishRight::Any(false) => Err(AppError::Forbidden("this token may not publish".into())),
        }
    }

    /// Issues a one-time ticket for the user of the bearer token.
    pub fn issue_ticket(&self, headers: &HeaderMap) -> Result<String, AppError> {
        let Some(keys) = &self.keys else {
            return Err(AppError::BadRequest("authentication is off: streams need no ticket".into()));
        };
        let token = Self::bearer(headers).ok_or_else(|| unauthorized("a token is required (Authorization: Bearer)"))?;
        let verified = Self::decode(keys, token)?;
        let subscribe = verified.claims.subscribe.clone().unwrap_or_default();
        claimed(&keys.selectors, &subscribe, "subscribe")?;
        let user = Self::subscriber(verified.claims)?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut tickets = keys.tickets.lock().unwrap_or_else(|p| p.into_inner());
        match tickets.issue(ticket.clone(), user, subscribe, verified.expires, Instant::now()) {
            Ok(()) => Ok(ticket),
            Err(Refusal::UserFull(limit)) => Err(AppError::TooManyRequests(format!(
                "this user already holds {limit} unused tickets; open a stream with one or wait until they expire"
            ))),
            Err(Refusal::TableFull) => Err(AppError::Unavailable("too many outstanding tickets; retry later".into())),
        }
    }

    /// The user a subscriber token streams for: 403 for a token that names none or an invalid one.
    fn subscriber(claims: Claims) -> Result<UserName, AppError> {
        let sub = claims.sub.ok_or_else(|| AppError::Forbidden("the token names no user (`sub`)".into()))?;
        UserName::new(sub).map_err(|e| AppError::Forbidden(format!("the token's `sub`: {e}")))
    }

    /// Takes a ticket out of the table: it opens one stream, once, within its lifetime. One
    /// presented with another user's name (`asked`) or for topics its token did not allow is
    /// refused and stays unspent.
    fn redeem(keys: &Keys, ticket: &str, asked: Option<&str>, topics: &[Selector]) -> Result<Ticket, AppError> {
        let mut tickets = keys.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = tickets.get(ticket) else {
            return Err(unauthorized("the ticket is unknown or already used"));
        };
        let live = tickets.is_fresh(held, Instant::now()) && SystemTime::now() < held.expires;
        if live && asked.is_some_and(|asked| asked != held.user.as_str()) {
            return Err(AppError::Forbidden("the credential is for another user".into()));
        }
        if live {
            permit(&claimed(&keys.selectors, &held.subscribe, "subscribe")?, topics)?;
        }
        match tickets.take(ticket) {
            Some(t) if live => Ok(t),
            _ => Err(unauthorized("the ticket has expired")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-of-thirty-two-b";

    fn auth() -> Auth {
        Auth::with_secret(SECRET, Duration::from_secs(30))
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn token(sub: Option<&str>, exp_in: i64, publish: bool) -> String {
        let exp = (unix_now() as i64 + exp_in) as u64;
        issue_token(SECRET, &Claims { sub: sub.map(Into::into), exp, publish: publish.into(), subscribe: None })
            .unwrap()
    }

    fn status(result: Result<impl std::fmt::Debug, AppError>) -> u16 {
        result.map_or_else(|e| e.status().as_u16(), |_| 200)
    }

    /// `alg: none` and other algorithms are refused, whatever the payload says.
    #[test]
    fn only_hs256_is_accepted() {
        let auth = auth();
        let claims = Claims { sub: Some("a".into()), exp: unix_now() + 60, publish: true.into(), subscribe: None };
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
                .unwrap();
        let payload = token(Some("a"), 60, true).split('.').nth(1).unwrap().to_owned();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        for bad in [hs512, none] {
            assert_eq!(status(auth.require_publisher(&bearer(&bad))), 401);
        }
    }

    /// Expiry has at most 5 s of leeway.
    #[test]
    fn expiry_leeway_is_five_seconds() {
        let auth = auth();
        assert_eq!(status(auth.require_publisher(&bearer(&token(None, -3, true)))), 200);
        assert_eq!(status(auth.require_publisher(&bearer(&token(None, -7, true)))), 401);
    }

    /// A token is valid until `exp` + 5 s, to the millisecond: accepted strictly before that
    /// instant and refused from it on; a stream opened with it is told to end at that instant.
    #[test]
    fn tokens_are_valid_until_exp_plus_leeway_to_the_millisecond() {
        let auth = auth();
        let keys = auth.keys.as_deref().unwrap();
        let exp = unix_now();
        let token =
            issue_token(SECRET, &Claims { sub: Some("amy".into()), exp, publish: false.into(), subscribe: None })
                .unwrap();
        let at = |millis: u64| UNIX_EPOCH + Duration::from_millis(exp * 1000 + millis);
        assert_eq!(Auth::decode_at(keys, &token, at(4_999)).unwrap().expires, at(5_000));
        assert_eq!(status(Auth::decode_at(keys, &token, at(5_000))), 401);

        let exp = unix_now() + 60;
        let token =
            issue_token(SECRET, &Claims { sub: Some("amy".into()), exp, publish: false.into(), subscribe: None })
                .unwrap();
        let creds = StreamCredentials { user: None, topics: &[], token: Some(&token), ticket: None };
        let listener = auth.stream_listener(&HeaderMap::new(), creds, Some("empty")).unwrap();
        assert_eq!(listener.expires, Some(UNIX_EPOCH + Duration::from_secs(exp + 5)));
        let ticket = auth.issue_ticket(&bearer(&token)).unwrap();
        let creds = StreamCredentials { user: None, topics: &[], token: None, ticket: Some(&ticket) };
        let listener = auth.stream_listener(&HeaderMap::new(), creds, Some("empty")).unwrap();
        assert_eq!(listener.expires, Some(UNIX_EPOCH + Duration::from_secs(exp + 5)), "a ticket's stream too");
    }

    /// A wall-clock deadline lands as far ahead on tokio's clock; one already past is now.
    #[test]
    fn deadlines_map_onto_the_monotonic_clock() {
        let (now, mono) = (SystemTime::now(), tokio::time::Instant::now());
        let ahead = Duration::from_millis(1_500);
        assert_eq!(instant_of(now + ahead, now, mono), Some(mono + ahead));
        assert_eq!(instant_of(now - ahead, now, mono), Some(mono));
    }

    /// A validly signed token whose `exp` is absurd (past the year 9999, up to 2^64 - 1) is 401
    /// wherever a token is read, never a panic; `tidings token` refuses such a lifetime.
    #[test]
    fn absurd_expiry_is_refused() {
        let auth = auth();
        for exp in [MAX_EXP + 1, 1 << 63, u64::MAX] {
            let token =
                issue_token(SECRET, &Claims { sub: Some("amy".into()), exp, publish: true.into(), subscribe: None })
                    .unwrap();
            assert_eq!(status(auth.require_publisher(&bearer(&token))), 401, "{exp}");
            assert_eq!(status(auth.issue_ticket(&bearer(&token))), 401, "{exp}");
            let creds = StreamCredentials { user: None, topics: &[], token: Some(&token), ticket: None };
            assert_eq!(status(auth.stream_listener(&HeaderMap::new(), creds, Some("empty"))), 401, "{exp}");
        }
        let latest =
            issue_token(SECRET, &Claims { sub: None, exp: MAX_EXP, publish: true.into(), subscribe: None }).unwrap();
        assert_eq!(status(auth.require_publisher(&bearer(&latest))), 200);
        assert!(expiry_in(Duration::from_secs(3600)).is_ok_and(|exp| exp >= unix_now() + 3600));
        assert!(expiry_in(Duration::from_secs(MAX_EXP)).is_err());
        assert!(expiry_in(Duration::MAX).is_err());
    }

    /// Publishing needs `"publish": true`: 401 without a token, 403 with a subscriber's.
    #[test]
    fn publishers_are_marked() {
        let auth = auth();
        assert_eq!(status(auth.require_publisher(&HeaderMap::new())), 401);
        assert_eq!(status(auth.require_publisher(&bearer(&token(Some("a"), 60, false)))), 403);
        assert_eq!(status(auth.require_publisher(&bearer("not.a.jwt"))), 401);
        assert_eq!(status(Auth::open().require_publisher(&HeaderMap::new())), 200);
    }

    /// A ticket opens one stream for its user; reuse, garbage and another user are refused.
    #[test]
    fn tickets_are_single_use() {
        let auth = auth();
        let ticket = auth.issue_ticket(&bearer(&token(Some("amy"), 60, false))).unwrap();
        fn with<'a>(ticket: &'a str, user: Option<&'a str>) -> StreamCredentials<'a> {
            StreamCredentials { user, topics: &[], token: None, ticket: Some(ticket) }
        }
        let listener = auth.stream_listener(&HeaderMap::new(), with(&ticket, None), Some("empty")).unwrap();
        assert_eq!(listener.user.unwrap().as_str(), "amy");
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), with(&ticket, None), Some("empty"))), 401);
        let other = auth.issue_ticket(&bearer(&token(Some("amy"), 60, false))).unwrap();
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), with(&other, Some("bob")), Some("empty"))), 403);
        let listener = auth.stream_listener(&HeaderMap::new(), with(&other, Some("amy")), Some("empty"));
        assert_eq!(listener.unwrap().user.unwrap().as_str(), "amy", "the 403 left the ticket unspent");
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), with("garbage", None), Some("empty"))), 401);
    }

    /// A ticket past its lifetime is refused.
    #[test]
    fn stale_tickets_are_refused() {
        let auth = Auth::with_secret(SECRET, Duration::ZERO);
        let ticket = auth.issue_ticket(&bearer(&token(Some("amy"), 60, false))).unwrap();
        let creds = StreamCredentials { user: None, topics: &[], token: None, ticket: Some(&ticket) };
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), creds, Some("empty"))), 401);
    }

    /// One user at its ticket cap gets 429, and another user still gets a ticket.
    #[test]
    fn one_user_cannot_take_every_ticket() {
        let auth = auth();
        let amy = bearer(&token(Some("amy"), 60, false));
        for _ in 0..MAX_TICKETS_PER_USER {
            auth.issue_ticket(&amy).unwrap();
        }
        assert_eq!(status(auth.issue_ticket(&amy)), 429);
        assert_eq!(status(auth.issue_ticket(&bearer(&token(Some("bob"), 60, false)))), 200);
    }
}
