//! The sessions context's storage: login sessions (their idle and absolute lifetimes and
//! their revocation) and each session's family of refresh tokens. One repository,
//! [`Sessions`].
//!
//! Owns: which sessions are live at a given time, revoking a session once (a second
//! revocation reports that nothing changed), and rotating a refresh token once. Refuses: users
//! and their tokens (accounts), minting or hashing tokens, and the grace and reuse rules (the
//! sessions actor decides those from what is stored here).

mod entities;
mod repo;
#[cfg(test)]
mod tests;

use crate::UserRecord;
use chrono::{DateTime, Utc};
use keyward_messages::{SessionId, UserId};
use uuid::Uuid;

pub use repo::{ConnectionLease, Sessions};

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
    /// How the user proved who they are at login (`pwd`, `otp`, `hwk`, …).
    pub amr: Vec<String>,
    /// `aal1`, or `aal2` after two factors of different kinds.
    pub acr: String,
}

impl SessionRecord {
    /// Live: not revoked, and neither the idle nor the absolute lifetime has passed.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.expires_at
    }
}

/// One rotation of a group commit ([`Sessions::rotate_many`]).
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The refresh token presented.
    pub token_id: Uuid,
    pub session_id: SessionId,
    /// SHA-256 of its successor.
    pub successor_hash: String,
}

/// One rotation of [`Sessions::rotate_presented`]: the token is named by its hash, its holder
/// not known yet.
#[derive(Clone, Debug)]
pub struct Succession {
    /// SHA-256 of the token presented.
    pub presented_hash: String,
    /// SHA-256 of its successor.
    pub successor_hash: String,
}

/// A presented token as [`Sessions::rotate_presented`] found it, before its own writes.
#[derive(Clone, Debug)]
pub struct Presented {
    pub token: RefreshTokenRecord,
    pub session: SessionRecord,
    /// `None` when the account is gone.
    pub user: Option<UserRecord>,
    /// This call rotated it.
    pub marked: bool,
}

/// One refresh token of a session's family; only its SHA-256 is stored.
#[derive(Clone, Debug)]
pub struct RefreshTokenRecord {
    pub id: Uuid,
    pub session_id: SessionId,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    /// When its successor was issued; a rotated token presented again is reuse (after grace).
    pub rotated_at: Option<DateTime<Utc>>,
}
