//! Mercure's tokens: JWS signed with the publisher's or the subscriber's key (HS256/384/512
//! with a secret, RS*/PS* with an RSA public key, ES256/384 with an EC one, EdDSA with an
//! Ed25519 one, all PEM), carrying the `mercure` claim: `publish` and `subscribe` selector
//! lists and a `payload`. `exp` is optional, as in Mercure; when present the stream ends there.
//!
//! A request carries its token in `Authorization: Bearer`, else in the `authorization` query
//! parameter, else in the `mercureAuthorization` cookie (the spec's order: the first one present
//! is the one used, the others are ignored).

use crate::auth::{Deadline, MIN_SECRET_BYTES};
use crate::error::AppError;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cookie a browser carries its token in.
pub const COOKIE: &str = "mercureAuthorization";
/// Leeway on `exp`, as Tidings' own tokens have.
const LEEWAY: Duration = Duration::from_secs(5);

/// A verifying key and the one algorithm it accepts.
#[derive(Clone)]
pub struct Key {
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("algorithm", &self.validation.algorithms).finish_non_exhaustive()
    }
}

impl Key {
    /// `alg` defaults to HS256, as in Mercure. The error says what is wrong with the key.
    pub fn new(key: &str, alg: Option<&str>) -> Result<Key, String> {
        let name = alg.unwrap_or("HS256");
        let algorithm = Algorithm::from_str(name).map_err(|_| format!("the algorithm {name:?} is not one Tidings knows (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"))?;
        let pem = |what: &str, parsed: jsonwebtoken::errors::Result<DecodingKey>| {
            parsed.map_err(|e| format!("{name} needs the {what} public key in PEM (-----BEGIN PUBLIC KEY-----): {e}"))
        };
        let decoding = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                if key.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "the secret is {} bytes long; it must be at least {MIN_SECRET_BYTES} bytes, or tokens can be forged by guessing it",
                        key.len()
                    ));
                }
                DecodingKey::from_secret(key.as_bytes())
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => pem("RSA", DecodingKey::from_rsa_pem(key.as_bytes()))?,
            Algorithm::ES256 | Algorithm::ES384 => pem("EC", DecodingKey::from_ec_pem(key.as_bytes()))?,
            Algorithm::EdDSA => pem("Ed25519", DecodingKey::from_ed_pem(key.as_bytes()))?,
            other => return Err(format!("the algorithm {other:?} is not supported")),
        };
        let mut validation = Validation::new(algorithm);
        // `exp` is optional in Mercure; it is checked here, to the millisecond, when present.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_exp = false;
        validation.validate_aud = false;
        Ok(Key { decoding, validation })
    }

    /// The token's claims, if its signature and expiry check out (401 saying why, if not).
    pub fn verify(&self, token: &str) -> Result<Token, AppError> {
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                AppError::Unauthorized(
                    match e.kind() {
                        ErrorKind::InvalidSignature => "the token's signature does not match",
                        ErrorKind::InvalidAlgorithm => "the token is not signed with the algorithm the hub expects",
                        _ => "the token is malformed",
                    }
                    .into(),
                )
            })?;
        let expires = match claims.exp {
            None => None,
            Some(exp) => {
                let at = UNIX_EPOCH
                    .checked_add(Duration::from_secs(exp))
                    .and_then(|t| t.checked_add(LEEWAY))
                    .filter(|_| exp <= crate::auth::MAX_EXP)
                    .ok_or_else(|| AppError::Unauthorized("the token's `exp` is past the year 9999".into()))?;
                if SystemTime::now() >= at {
                    return Err(AppError::Unauthorized("the token has expired".into()));
                }
                Some(at)
            }
        };
        Ok(Token { mercure: claims.mercure.unwrap_or_default(), expires })
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    mercure: Option<Mercure>,
}

/// The `mercure` claim.
#[derive(Debug, Default, Deserialize)]
pub struct Mercure {
    /// Selectors of the topics the bearer may publish to; absent or empty: none.
    #[serde(default)]
    pub publish: Option<Vec<String>>,
    /// Selectors of the topics whose private updates the bearer may receive.
    #[serde(default)]
    pub subscribe: Option<Vec<String>>,
    /// Attached to the bearer's subscriptions.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// A verified token.
#[derive(Debug)]
pub struct Token {
    pub mercure: Mercure,
    pub expires: Option<Deadline>,
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Query,
    Cookie,
}

/// The token a request carries, in the spec's order of precedence, and where it was.
pub fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<(String, Source)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| (token.trim().to_owned(), Source::Header));
    }
    if let Some(token) = query {
        return Some((token.to_owned(), Source::Query));
    }
    cookie(headers, COOKIE).map(|token| (token.to_owned(), Source::Cookie))
}

/// The `authorization` parameter of a query, decoded.
pub fn query_authorization(query: Option<&str>) -> Option<String> {
    crate::query::pairs(query?)
        .find(|(name, _)| crate::query::component(name).is_ok_and(|n| n == "authorization"))
        .and_then(|(_, value)| crate::query::component(value).ok())
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

    /// The token Mercure's conformance suite publishes with: no `exp`, publish and subscribe `*`.
    const CONFORMANCE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g";

    fn sign(claims: serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
    }

    /// A token without `exp` is valid; one with an `exp` past is not; a wrong key or algorithm
    /// is a 401.
    #[test]
    fn tokens_verify_as_mercure_does() {
        let key = Key::new(SECRET, None).unwrap();
        let token = key.verify(CONFORMANCE).unwrap();
        assert_eq!(token.mercure.publish.as_deref(), Some(&["*".to_owned()][..]));
        assert_eq!(token.expires, None);
        let secret = EncodingKey::from_secret(SECRET.as_bytes());
        let expired = sign(serde_json::json!({"exp": 1, "mercure": {}}), Algorithm::HS256, &secret);
        assert_eq!(key.verify(&expired).unwrap_err().status(), 401);
        let other = Key::new("another-secret-of-at-least-32-bytes!", None).unwrap();
        assert_eq!(other.verify(CONFORMANCE).unwrap_err().status(), 401);
        let hs512 = sign(serde_json::json!({"mercure": {}}), Algorithm::HS512, &secret);
        assert_eq!(key.verify(&hs512).unwrap_err().status(), 401, "only the configured algorithm");
    }

    /// An Ed25519 public key in PEM verifies tokens signed with its private key.
    #[test]
    fn public_keys_in_pem_verify() {
        // A fixed Ed25519 key pair made for this test.
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEr41tirgZgipM0ZX9wNB3R8O6BwJCtTnLIovTcZCo6h\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAd3gmu/UMCXYdRFr79FQUWFW8be19ZJM7ZupHK9kn3Dk=\n-----END PUBLIC KEY-----\n";
        let key = Key::new(public, Some("EdDSA")).unwrap();
        let signing = EncodingKey::from_ed_pem(private.as_bytes()).unwrap();
        let token = sign(serde_json::json!({"mercure": {"subscribe": ["a"]}}), Algorithm::EdDSA, &signing);
        assert_eq!(key.verify(&token).unwrap().mercure.subscribe, Some(vec!["a".to_owned()]));
    }

    /// The header wins over the query, the query over the cookie.
    #[test]
    fn the_first_source_present_is_used() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; mercureAuthorization=from-cookie".parse().unwrap());
        assert_eq!(presented(&headers, None), Some(("from-cookie".into(), Source::Cookie)));
        assert_eq!(presented(&headers, Some("q")), Some(("q".into(), Source::Query)));
        headers.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(presented(&headers, Some("q")), Some(("h".into(), Source::Header)));
    }
}
