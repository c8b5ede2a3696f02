//! The accounts context's storage: users (one per canonical mailbox, with an optional
//! username), their roles, their one-time email tokens (verify-email links carrying the
//! registration they complete, password-reset links), and the report of accounts the
//! canonical-email migration left as they were. One repository, [`Users`].
//!
//! Owns: the uniqueness of an email and of a username (a second one is
//! `StorageError::Conflict`), parsing stored addresses and usernames back into `Email` and
//! `Username`, and using a one-time token up exactly once. Refuses: sessions (the sessions
//! context ends them), password hashing and policy, and deciding who owns an address.

mod conflicts;
mod email_tokens;
pub(crate) mod entities;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use keyward_messages::{Email, UserId, Username};
use uuid::Uuid;

pub(crate) use repo::user_record;
pub use repo::{UserFilter, UserStatusFilter, Users};

#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: UserId,
    pub email: Email,
    pub username: Option<Username>,
    /// PHC string; never leaves the accounts context.
    pub password_hash: String,
    pub email_verified: bool,
    pub locale: String,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    /// The password was last set through an email link (a reset or an invitation), so it
    /// proves no more than the mailbox does.
    pub password_via_reset: bool,
}

/// A user to create. Its email and username are unique case-insensitively (their normalized
/// forms are the keys).
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub username: Option<Username>,
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
    pub username: Option<Username>,
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
// NOTE: plain strings, not `Email`: this report exists for the addresses that are not in
// canonical form, and an undeliverable one does not parse at all.
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
