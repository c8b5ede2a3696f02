//! The mfa context's storage: each user's second factors (TOTP secrets sealed by the caller,
//! SMS phones, email, passkeys), the hashes of their recovery codes, and the pending
//! challenges of a login that passed its first factor. One repository, [`Mfa`].
//!
//! Owns: the rows, a TOTP factor's last accepted time step (advanced only forwards, so a code
//! is accepted once), a recovery code used once, a challenge's wrong tries. Refuses: sealing
//! secrets, computing or comparing codes, and what counts as aal2 (the mfa actor decides).

mod entities;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use uuid::Uuid;

pub use repo::Mfa;

/// One second factor of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactorRecord {
    pub id: Uuid,
    pub user_id: UserId,
    /// `totp`, `sms`, `email` or `passkey`.
    pub kind: String,
    pub label: Option<String>,
    /// The factor's secret as the caller stored it (a TOTP secret is sealed).
    pub secret: Option<String>,
    /// None until the user proved it (a TOTP factor by its first code).
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last TOTP time step accepted.
    pub last_step: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A login that passed its first factor and waits for a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: Uuid,
    /// SHA-256 of the `mfa_token` the client holds.
    pub token_hash: String,
    pub user_id: UserId,
    /// The methods already passed, e.g. `["pwd"]`.
    pub amr: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Wrong codes so far.
    pub attempts: i32,
}

/// The code last sent for an SMS or email factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub factor_id: Uuid,
    pub user_id: UserId,
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    pub attempts: i32,
    pub sent_at: DateTime<Utc>,
}

/// A WebAuthn ceremony waiting for the browser's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyRecord {
    pub id: Uuid,
    /// The challenge, base64url as the browser echoes it in `clientDataJSON`.
    pub challenge: String,
    /// `register`, `login` (passwordless), or `factor:<mfa challenge id>` / `step-up:<session
    /// id>` for a passkey as a second factor.
    pub purpose: String,
    /// The user it is for; None for a passwordless login (the credential names the user).
    pub user_id: Option<UserId>,
    /// The relying party library's state, as JSON.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
