//! Commands (imperative) and queries the gateway sends to the context actors, with their
//! replies. Every field is already valid; every message answers `Result<_, CommandError>`.
//!
//! Who handles what: `accounts` handles registration, verification, login and passwords;
//! `sessions` handles refresh, logout, session listing/revocation, bearer authentication and
//! the published signing keys.

use std::net::IpAddr;

use actix::Message;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use crate::error::CommandError;
use crate::values::{Email, LoginId, Password, RequestMeta, SessionId, UserId, Username};

/// The language of a user's emails, picked from `Accept-Language` at registration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    Ru,
}

impl Locale {
    /// The first supported language in an `Accept-Language` header, English otherwise.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let Some(h) = header else { return Self::En };
        for part in h.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("ru") {
                return Self::Ru;
            }
            if tag.starts_with("en") {
                return Self::En;
            }
        }
        Self::En
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Ru => "ru",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("ru") {
            Self::Ru
        } else {
            Self::En
        }
    }
}

pub use crate::access::ADMIN_ROLE;

/// An authenticated caller, produced by [`Authenticate`] from a bearer access token whose
/// session is still live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
    /// Shared with the token the gate remembers: a request copies no role name.
    pub roles: std::sync::Arc<[String]>,
    /// The token's `acr` is `aal2`: two factors of different kinds, at login or by step-up.
    pub aal2: bool,
}

/// The reply to a login or a refresh.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A JWT (typ `at+jwt`, EdDSA); verify it through `/.well-known/jwks.json`.
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; rotated on every use.
    pub refresh_token: String,
    /// Seconds until the refresh token expires if unused.
    pub refresh_expires_in: u64,
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
}

/// One session as its owner sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: SessionId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub ip: Option<IpAddr>,
    /// The session of the token that asked.
    pub current: bool,
}

/// Reply of a successful email verification.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EmailVerified {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub email: String,
    pub email_verified: bool,
}

// ---- accounts ----

/// Gateway → accounts. Creates an unverified account and queues the verification email; for
/// an address that already has an account it queues a notice instead and answers the same,
/// so registration does not reveal who has an account. A taken username is a 409.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Register {
    pub meta: RequestMeta,
    pub email: Email,
    pub password: Password,
    pub username: Option<Username>,
    pub locale: Locale,
}

/// Gateway → accounts. Consumes a one-time verification token.
#[derive(Debug, Message)]
#[rtype(result = "Result<EmailVerified, CommandError>")]
pub struct VerifyEmail {
    pub meta: RequestMeta,
    pub token: SecretString,
}

/// Gateway → accounts. Queues a new verification email when the address belongs to an
/// unverified account; answers Ok in every case.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct ResendVerification {
    pub meta: RequestMeta,
    pub email: Email,
}

/// Gateway → accounts. Checks the password (a dummy verify for unknown logins) and opens a
/// session.
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::mfa::LoginReply, CommandError>")]
pub struct Login {
    pub meta: RequestMeta,
    pub login: LoginId,
    pub password: Password,
}

/// Gateway → accounts. Queues a reset email when the address has an account; Ok always.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct ForgotPassword {
    pub meta: RequestMeta,
    pub email: Email,
}

/// Gateway → accounts. Consumes a reset token, sets the password, ends every session.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct ResetPassword {
    pub meta: RequestMeta,
    pub token: SecretString,
    pub password: Password,
}

/// Gateway → accounts. Checks the current password, sets the new one and ends every other
/// session of the user.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct ChangePassword {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub current_password: Password,
    pub new_password: Password,
}

/// Gateway → accounts. An administrator blocks (ending every session) or unblocks an account.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct SetBlocked {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: crate::access::Caller,
    pub user_id: UserId,
    pub blocked: bool,
    pub reason: Option<crate::BlockReason>,
}

pub use crate::profiles::{GetMe, UserView};

// ---- sessions ----

/// Gateway → sessions. Verifies a bearer access token (signature, typ, iss, aud, time) and
/// that its session is still live.
#[derive(Debug, Message)]
#[rtype(result = "Result<Principal, CommandError>")]
pub struct Authenticate {
    pub meta: RequestMeta,
    pub token: SecretString,
}

/// Gateway → sessions. Rotates a refresh token (see DESIGN.md: grace window, reuse detection).
#[derive(Debug, Message)]
#[rtype(result = "Result<TokenPair, CommandError>")]
pub struct Refresh {
    pub meta: RequestMeta,
    pub refresh_token: SecretString,
}

/// Gateway → sessions. Ends the caller's current session.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Logout {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → sessions. The caller's live sessions, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<SessionView>, CommandError>")]
pub struct ListSessions {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → sessions. Ends one of the caller's sessions (404 when it is not theirs or not
/// live).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct RevokeSession {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub session_id: SessionId,
}

/// Gateway → sessions. Ends every session of the caller except the current one.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct RevokeOtherSessions {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → sessions. The JWKS document of every key whose tokens may still be live.
#[derive(Debug, Message)]
#[rtype(result = "Result<serde_json::Value, CommandError>")]
pub struct GetJwks;

/// Management → any context. Whether its backends answer (for /readyz).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct CheckReady;
