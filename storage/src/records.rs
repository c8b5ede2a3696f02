//! Plain records that cross the storage boundary.

use chrono::{DateTime, Utc};
use keyward_messages::{SessionId, UserId};
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: UserId,
    pub email: String,
    pub username: Option<String>,
    /// PHC string; never leaves the accounts context.
    pub password_hash: String,
    pub email_verified: bool,
    pub locale: String,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
}

/// A user to create. `email_normalized`/`username_normalized` are the uniqueness keys.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: UserId,
    pub email: String,
    pub email_normalized: String,
    pub username: Option<String>,
    pub username_normalized: Option<String>,
    pub password_hash: String,
    pub email_verified: bool,
    pub locale: String,
    pub now: DateTime<Utc>,
}

/// What a one-time email token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// What one registration asked for, carried by its verify-email token. An unverified account
/// belongs to nobody yet: whichever registration's link is used (proving the mailbox) sets the
/// account's password and username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// PHC string; never leaves the accounts context.
    pub password_hash: String,
    pub username: Option<String>,
    pub username_normalized: Option<String>,
}

/// A one-time token; only its SHA-256 is stored.
#[derive(Clone, Debug)]
pub struct NewEmailToken {
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    pub token_hash: String,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Verify-email tokens only: the registration this link completes.
    pub registration: Option<Registration>,
}

/// A one-time token just used up.
#[derive(Clone, Debug)]
pub struct UsedEmailToken {
    pub id: Uuid,
    pub user_id: UserId,
    pub registration: Option<Registration>,
}

/// Why the canonical-email migration left an account as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailConflictReason {
    /// Two or more accounts have addresses with one canonical form (one mailbox).
    Collision,
    /// The stored address is not one Keyward accepts any more (it cannot be delivered to).
    Undeliverable,
}

impl EmailConflictReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collision => "collision",
            Self::Undeliverable => "undeliverable",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "collision" => Some(Self::Collision),
            "undeliverable" => Some(Self::Undeliverable),
            _ => None,
        }
    }
}

/// An account the canonical-email migration could not move to its canonical address, and
/// that still has the address it had then (an operator has not resolved it yet).
#[derive(Clone, Debug)]
pub struct EmailConflictRecord {
    pub user_id: UserId,
    /// The address as stored.
    pub email: String,
    /// Its canonical form; None when it no longer parses.
    pub canonical: Option<String>,
    pub reason: EmailConflictReason,
    pub recorded_at: DateTime<Utc>,
    pub blocked: bool,
    pub email_verified: bool,
}

#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl SessionRecord {
    /// Live: not revoked, and neither the idle nor the absolute lifetime has passed.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.expires_at
    }
}

/// One refresh token of a session's family; only its SHA-256 is stored.
#[derive(Clone, Debug)]
pub struct RefreshTokenRecord {
    pub id: Uuid,
    pub session_id: SessionId,
    pub created_at: DateTime<Utc>,
    /// When its successor was issued; a rotated token presented again is reuse (after grace).
    pub rotated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    /// Base64url raw public key (the JWK `x`).
    pub public_key: String,
    /// Private key encrypted under the master key (format owned by the keys module).
    pub private_key_enc: String,
    pub created_at: DateTime<Utc>,
    /// When it stopped signing; it stays published until its last token expires.
    pub retired_at: Option<DateTime<Utc>>,
}

/// A message waiting in (or delivered from) the outbox.
#[derive(Clone, Debug)]
pub struct OutboxRecord {
    pub id: Uuid,
    pub message_type: String,
    /// The JSON envelope, exactly as it will be published.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// One line of the audit log: a security-relevant event and who caused it.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    /// The event type, e.g. `user.login_failed`.
    pub kind: String,
    pub user_id: Option<UserId>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// JSON with what else the event is about (never a secret).
    pub details: String,
}
