//! Who may listen and who may publish. Off by default (an open hub for development); on with
//! `--jwt-secret`, tokens are HS256 JWTs: `sub` names the subscriber, `"publish": true` marks a
//! publisher, `exp` is checked with 5 s of leeway.
//!
//! A browser's `EventSource` cannot send headers, so a stream also accepts `?token=` — or, so no
//! long-lived token sits in a URL, a one-time `?ticket=` from `POST /api/tickets`, good for one
//! stream within `--ticket-ttl`.

use crate::error::AppError;
use app::event::UserName;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The shortest `--jwt-secret` accepted: an HS256 key is only as strong as it is long, and a
/// short one is found offline from any single token.
pub const MIN_SECRET_BYTES: usize = 32;
/// The most leeway `exp` gets (the crate's default is 60 s).
const LEEWAY_SECS: u64 = 5;
/// Outstanding tickets are capped so a token holder cannot grow the table without bound.
const MAX_TICKETS: usize = 100_000;

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user a subscriber token streams for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Whether the bearer may publish and list users.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish: bool,
}

/// Signs `claims` with `secret` (for `tidings token` and tests).
pub fn issue_token(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The hub's access policy: open, or checked against a secret.
#[derive(Clone)]
pub struct Auth {
    keys: Option<Arc<Keys>>,
}

struct Keys {
    decoding: DecodingKey,
    validation: Validation,
    ticket_ttl: Duration,
    // A std mutex: held only to insert or remove one entry.
    tickets: Mutex<HashMap<String, Ticket>>,
}

struct Ticket {
    user: UserName,
    /// The expiry of the token the ticket was bought with: the stream ends there too.
    token_exp: u64,
    issued: Instant,
}

/// Whom a stream is for, and when it must end (its credential's expiry).
#[derive(Debug, PartialEq, Eq)]
pub struct Listener {
    pub user: UserName,
    pub expires: Option<u64>,
}

/// How a stream request presented itself.
#[derive(Debug, Default)]
pub struct StreamCredentials<'a> {
    pub user: Option<&'a str>,
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
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        Auth {
            keys: Some(Arc::new(Keys {
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                validation,
                ticket_ttl,
                tickets: Mutex::new(HashMap::new()),
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    fn decode(keys: &Keys, token: &str) -> Result<Claims, AppError> {
        jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation).map(|data| data.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature does not match",
                ErrorKind::InvalidAlgorithm => "tokens must be signed with HS256",
                _ => "the token is malformed",
            })
        })
    }

    /// The bearer token of `Authorization: Bearer ...`, if any.
    fn bearer(headers: &HeaderMap) -> Option<&str> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Decides whom a stream is for. An open hub takes the `user` parameter (or `default_user`);
    /// with auth on, the user comes from the token or ticket and a differing `user` is 403.
    pub fn stream_listener(
        &self,
        headers: &HeaderMap,
        credentials: StreamCredentials<'_>,
        default_user: &str,
    ) -> Result<Listener, AppError> {
        let Some(keys) = &self.keys else {
            let user = UserName::new(credentials.user.unwrap_or(default_user)).map_err(AppError::BadRequest)?;
            return Ok(Listener { user, expires: None });
        };
        let (user, expires) = if let Some(ticket) = credentials.ticket {
            let ticket = Self::redeem(keys, ticket)?;
            (ticket.user, ticket.token_exp)
        } else {
            let token = credentials
                .token
                .or_else(|| Self::bearer(headers))
                .ok_or_else(|| unauthorized("a token (?token= or Authorization: Bearer) or a ?ticket= is required"))?;
            let claims = Self::decode(keys, token)?;
            let sub = claims.sub.ok_or_else(|| AppError::Forbidden("the token names no user (`sub`)".into()))?;
            let user = UserName::new(sub).map_err(|e| AppError::Forbidden(format!("the token's `sub`: {e}")))?;
            (user, claims.exp)
        };
        if let Some(asked) = credentials.user {
            if asked != user.as_str() {
                return Err(AppError::Forbidden("the credential is for another user".into()));
            }
        }
        Ok(Listener { user, expires: Some(expires) })
    }

    /// 401 without a valid bearer token, 403 for one without `"publish": true`.
    pub fn require_publisher(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let Some(keys) = &self.keys else { return Ok(()) };
        let token = Self::bearer(headers)
            .ok_or_else(|| unauthorized("a publisher token is required (Authorization: Bearer)"))?;
        if Self::decode(keys, token)?.publish {
            Ok(())
        } else {
            Err(AppError::Forbidden("this token may not publish".into()))
        }
    }

    /// Issues a one-time ticket for the user of the bearer token.
    pub fn issue_ticket(&self, headers: &HeaderMap) -> Result<String, AppError> {
        let Some(keys) = &self.keys else {
            return Err(AppError::BadRequest("authentication is off: streams need no ticket".into()));
        };
        let token = Self::bearer(headers).ok_or_else(|| unauthorized("a token is required (Authorization: Bearer)"))?;
        let claims = Self::decode(keys, token)?;
        let sub = claims.sub.ok_or_else(|| AppError::Forbidden("the token names no user (`sub`)".into()))?;
        let user = UserName::new(sub).map_err(|e| AppError::Forbidden(format!("the token's `sub`: {e}")))?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut tickets = keys.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets.retain(|_, t| t.issued.elapsed() < keys.ticket_ttl);
        if tickets.len() >= MAX_TICKETS {
            return Err(AppError::Unavailable("too many outstanding tickets; retry later".into()));
        }
        tickets.insert(ticket.clone(), Ticket { user, token_exp: claims.exp, issued: Instant::now() });
        Ok(ticket)
    }

    /// Takes a ticket out of the table: it opens one stream, once, within its lifetime.
    fn redeem(keys: &Keys, ticket: &str) -> Result<Ticket, AppError> {
        let taken = keys.tickets.lock().unwrap_or_else(|p| p.into_inner()).remove(ticket);
        match taken {
            Some(t) if t.issued.elapsed() < keys.ticket_ttl && t.token_exp + LEEWAY_SECS >= unix_now() => Ok(t),
            Some(_) => Err(unauthorized("the ticket has expired")),
            None => Err(unauthorized("the ticket is unknown or already used")),
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
        issue_token(SECRET, &Claims { sub: sub.map(Into::into), exp, publish }).unwrap()
    }

    fn status(result: Result<impl std::fmt::Debug, AppError>) -> u16 {
        result.map_or_else(|e| e.status().as_u16(), |_| 200)
    }

    /// `alg: none` and other algorithms are refused, whatever the payload says.
    #[test]
    fn only_hs256_is_accepted() {
        let auth = auth();
        let claims = Claims { sub: Some("a".into()), exp: unix_now() + 60, publish: true };
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
            StreamCredentials { user, token: None, ticket: Some(ticket) }
        }
        let listener = auth.stream_listener(&HeaderMap::new(), with(&ticket, None), "empty").unwrap();
        assert_eq!(listener.user.as_str(), "amy");
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), with(&ticket, None), "empty")), 401);
        let other = auth.issue_ticket(&bearer(&token(Some("amy"), 60, false))).unwrap();
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), with(&other, Some("bob")), "empty")), 403);
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), with("garbage", None), "empty")), 401);
    }

    /// A ticket past its lifetime is refused.
    #[test]
    fn stale_tickets_are_refused() {
        let auth = Auth::with_secret(SECRET, Duration::from_millis(1));
        let ticket = auth.issue_ticket(&bearer(&token(Some("amy"), 60, false))).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let creds = StreamCredentials { user: None, token: None, ticket: Some(&ticket) };
        assert_eq!(status(auth.stream_listener(&HeaderMap::new(), creds, "empty")), 401);
    }
}
