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
    // NOTE: times are checked by `times_ok` against the node's clock, not the library's.
    v.validate_exp = false;
    v.validate_nbf = false;
    v
}

/// Clock skew tolerated between nodes, in seconds.
pub const LEEWAY_SECS: i64 = 5;

/// exp and nbf hold at `now` (with leeway).
pub fn times_ok(c: &AccessClaims, now: DateTime<Utc>) -> bool {
    let t = now.timestamp();
    t < c.exp + LEEWAY_SECS && c.nbf <= t + LEEWAY_SECS
}

/// Seconds from `now` until `t`, never negative.
pub fn secs_until(now: DateTime<Utc>, t: DateTime<Utc>) -> u64 {
    u64::try_from((t - now).num_seconds()).unwrap_or(0)
}
