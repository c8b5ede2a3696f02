//! The access-token contract (DESIGN.md, "Tokens and secrets") and its verification, as pure
//! functions: the sessions context calls [`verify`] with the node's keys and clock, and the
//! fuzz targets call it with arbitrary input.
//!
//! Refuses (RFC 8725): any algorithm but EdDSA (so `none` and HS256 keyed with the public key
//! fail), any header but `alg`, `typ` and `kid` (so `jku`, `x5u`, `jwk`, `x5c` and `crit` fail:
//! keys come only from the node's own key ring), a `typ` other than `at+jwt`, an unknown `kid`,
//! a wrong issuer or audience, a token outside its `nbf`..`exp` span, and tokens over
//! [`MAX_TOKEN_BYTES`], which are refused unparsed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Longest bearer token looked at.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// The longest access token Keyward issues: `roles` is cut to stay under it.
pub const MAX_ISSUED_BYTES: usize = 1024;
/// Clock skew tolerated between nodes, in seconds.
pub const LEEWAY_SECS: i64 = 5;
/// The `typ` header of an access token (RFC 9068).
pub const TYP: &str = "at+jwt";
const HEADER_FIELDS: [&str; 3] = ["alg", "typ", "kid"];

/// The claims of a Keyward access token.
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
    /// True when `roles` was cut to keep the token under [`MAX_ISSUED_BYTES`]: ask the check
    /// API (or `/v1/users/me/permissions`) instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub roles_truncated: bool,
    /// How the user proved who they are (RFC 8176 values: `pwd`, `otp`, `sms`, `hwk`, …).
    #[serde(default)]
    pub amr: Vec<String>,
    /// `aal1`, or `aal2` after two factors of different kinds (NIST SP 800-63B).
    #[serde(default = "aal1")]
    pub acr: String,
}

fn aal1() -> String {
    AAL1.to_owned()
}

/// One factor's assurance level.
pub const AAL1: &str = "aal1";
/// Two factors of different kinds.
pub const AAL2: &str = "aal2";

/// The claims of a service client's access token (the client_credentials grant): `sub` and
/// `client_id` are the client's id, `scope` its granted permissions, space-separated. It has
/// no `sid` or `email`, so it never passes for a user's token, nor a user's for it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
}

/// The time claims every Keyward token has.
pub trait Timed {
    fn exp(&self) -> i64;
    fn nbf(&self) -> i64;
}

impl Timed for AccessClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
    fn nbf(&self) -> i64 {
        self.nbf
    }
}

impl Timed for ClientClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
    fn nbf(&self) -> i64 {
        self.nbf
    }
}

/// Why a token was refused. Only logged at debug level: the client always gets one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Oversized,
    Malformed,
    /// A header other than alg, typ and kid (jku, x5u, jwk, x5c, crit, …).
    ForeignHeader,
    WrongTyp,
    WrongAlg,
    NoKid,
    UnknownKid,
    /// Bad signature, or a claim missing, mistyped, or with the wrong iss or aud.
    SignatureOrClaims,
    Expired,
    NotYetValid,
}

/// Verifies `token` against the keys `key_for(kid)` knows, `issuer`, `audience` and the time
/// `now` (Unix seconds).
pub fn verify(
    token: &str,
    key_for: impl Fn(&str) -> Option<DecodingKey>,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<AccessClaims, Refusal> {
    verify_as(token, key_for, issuer, audience, now)
}

/// [`verify`] for a service client's token.
pub fn verify_client(
    token: &str,
    key_for: impl Fn(&str) -> Option<DecodingKey>,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<ClientClaims, Refusal> {
    verify_as(token, key_for, issuer, audience, now)
}

fn verify_as<C: serde::de::DeserializeOwned + Timed>(
    token: &str,
    key_for: impl Fn(&str) -> Option<DecodingKey>,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<C, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Oversized);
    }
    let kid = check_header(token)?;
    let key = key_for(&kid).ok_or(Refusal::UnknownKid)?;
    let data = jsonwebtoken::decode::<C>(token, &key, &validation(issuer, audience))
        .map_err(|_| Refusal::SignatureOrClaims)?;
    check_times(&data.claims, now)?;
    Ok(data.claims)
}

/// Whether the token's (unverified) claims name a service client: only to pick which of
/// [`verify`] and [`verify_client`] to run, never to trust anything.
pub fn names_client(token: &str) -> bool {
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    if payload.len() > MAX_TOKEN_BYTES {
        return false;
    }
    // Only the one claim is looked at; the others are skipped, not built.
    #[derive(Deserialize)]
    struct Names {
        client_id: Option<serde::de::IgnoredAny>,
    }
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|raw| serde_json::from_slice::<Names>(&raw).ok())
        .is_some_and(|claims| claims.client_id.is_some())
}

/// The time checks of [`verify`] alone: for claims verified earlier and remembered.
pub fn check_times(c: &impl Timed, now: i64) -> Result<(), Refusal> {
    if now >= c.exp().saturating_add(LEEWAY_SECS) {
        return Err(Refusal::Expired);
    }
    if c.nbf() > now.saturating_add(LEEWAY_SECS) {
        return Err(Refusal::NotYetValid);
    }
    Ok(())
}

/// The header must be exactly what Keyward signs: `{"alg":"EdDSA","typ":"at+jwt","kid":…}`.
/// Returns the kid.
fn check_header(token: &str) -> Result<String, Refusal> {
    let encoded = token.split('.').next().ok_or(Refusal::Malformed)?;
    let raw = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| Refusal::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&raw).map_err(|_| Refusal::Malformed)?;
    if header.keys().any(|k| !HEADER_FIELDS.contains(&k.as_str())) {
        return Err(Refusal::ForeignHeader);
    }
    let text = |k: &str| header.get(k).and_then(serde_json::Value::as_str);
    if !text("typ").is_some_and(|t| t.eq_ignore_ascii_case(TYP)) {
        return Err(Refusal::WrongTyp);
    }
    if text("alg") != Some("EdDSA") {
        return Err(Refusal::WrongAlg);
    }
    text("kid").map(str::to_owned).ok_or(Refusal::NoKid)
}

/// EdDSA only, issuer and audience pinned, every time claim required. Times are checked by
/// [`verify`] against the caller's clock, not the library's.
fn validation(issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn header_of(h: serde_json::Value) -> Result<String, Refusal> {
        check_header(&format!("{}.e30.sig", b64(&h)))
    }

    #[test]
    fn only_the_exact_keyward_header_passes() {
        let ok = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"});
        assert_eq!(header_of(ok).as_deref(), Ok("k1"));
        for (h, why) in [
            (
                serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}),
                Refusal::WrongAlg,
            ),
            (
                serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}),
                Refusal::WrongAlg,
            ),
            (
                serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
                Refusal::WrongTyp,
            ),
            (
                serde_json::json!({"alg": "EdDSA", "kid": "k1"}),
                Refusal::WrongTyp,
            ),
            (
                serde_json::json!({"alg": "EdDSA", "typ": "at+jwt"}),
                Refusal::NoKid,
            ),
            (
                serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "jku": "https://x"}),
                Refusal::ForeignHeader,
            ),
            (
                serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "crit": ["exp"]}),
                Refusal::ForeignHeader,
            ),
        ] {
            assert_eq!(header_of(h.clone()), Err(why), "{h}");
        }
        assert_eq!(check_header("%%%.e30.sig"), Err(Refusal::Malformed));
        assert_eq!(check_header(""), Err(Refusal::Malformed));
    }

    #[test]
    fn a_token_names_a_client_only_by_a_client_id_claim() {
        let token = |claims: serde_json::Value| format!("e30.{}.sig", b64(&claims));
        let client = serde_json::json!({"sub": "c1", "client_id": "c1", "scope": "access:check"});
        let user =
            serde_json::json!({"sub": "u1", "sid": "s1", "roles": ["a", "b"], "amr": ["pwd"]});
        assert!(names_client(&token(client)));
        assert!(!names_client(&token(user)));
        for bad in ["", "e30", "e30.%%%.sig", "e30.bm90IGpzb24.sig"] {
            assert!(!names_client(bad), "{bad}");
        }
    }

    #[test]
    fn an_oversized_token_is_refused_before_parsing() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify(&t, |_| None, "i", "a", 0), Err(Refusal::Oversized));
    }
}
