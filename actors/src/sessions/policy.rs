//! Pure rules of the sessions context: access-token claims and their validation, lifetimes.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

/// Longest bearer token looked at; anything longer is refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The claims of a Keyward access token (see DESIGN.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub sid: String,
    pub email: String,
    pub email_verified: bool,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Validation for Keyward's own access tokens: EdDSA only, issuer and audience pinned, every
/// time claim required. The `typ` header is checked separately (jsonwebtoken ignores it).
pub fn validation(issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = 5;
    v
}

/// Seconds from `now` until `t`, never negative.
pub fn secs_until(now: DateTime<Utc>, t: DateTime<Utc>) -> u64 {
    u64::try_from((t - now).num_seconds()).unwrap_or(0)
}
