//! The federation context's storage: identities at social login providers linked to accounts,
//! web login flows waiting for the provider's redirect, and the one-time codes an app
//! exchanges for tokens. One repository, [`Federation`].
//!
//! Owns: an identity is one (provider, subject), linked to one account; a flow and a code are
//! taken once. Refuses: deciding whom an identity belongs to (the federation actor does).

mod entities;
pub(crate) mod migration;
pub(crate) mod migration_links;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use uuid::Uuid;

pub use repo::Federation;

/// An account's identity at a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: Uuid,
    pub user_id: UserId,
    /// The configured provider name (`acme`, `google`).
    pub provider: String,
    /// The provider's stable id of the user (`sub`).
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A web login sent to a provider, waiting for its redirect back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub id: Uuid,
    /// SHA-256 of the `state` parameter.
    pub state_hash: String,
    pub provider: String,
    /// The app's redirect URI (from the allowlist).
    pub redirect_uri: String,
    pub nonce: String,
    /// The PKCE verifier, sealed by the caller.
    pub pkce_verifier: String,
    /// For linking while signed in: the account to link to.
    pub link_user_id: Option<UserId>,
    /// The app's own `state`, given back with the code.
    pub app_state: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A one-time code an app exchanges for tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthCodeRecord {
    /// SHA-256 of the code.
    pub code_hash: String,
    pub user_id: UserId,
    pub provider: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An identity waiting to be linked to the account that has its email, until the user proves
/// that account (its password, or a code sent to its verified email). The proof is bound to
/// this identity: a code sent for one identity links no other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkProofRecord {
    pub id: Uuid,
    /// SHA-256 of the link token the app holds.
    pub token_hash: String,
    /// The account to link to.
    pub user_id: UserId,
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// The keyed hash of the last code sent, bound to this proof.
    pub code_hash: Option<String>,
    pub code_sent_at: Option<DateTime<Utc>>,
    pub codes_sent: i32,
    /// Wrong passwords and codes so far.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
