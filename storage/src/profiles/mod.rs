//! The profiles context's storage: what a user shows of themselves (display name, bio, avatar,
//! time zone, country, phone, visibility, product attributes), the settings object the product
//! keeps for them, usernames held back after a rename, and scheduled self-deletions. One
//! repository, [`Profiles`].
//!
//! Owns: those rows, and erasing them. Refuses: the username and locale themselves (they live
//! on the user row, which accounts owns; a rename goes through `Users::set_username` in the same
//! transaction), validation (values arrive parsed), and deciding who may see what.

mod entities;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use keyward_messages::profiles::Visibility;
use keyward_messages::UserId;
use serde_json::{Map, Value};

pub use repo::Profiles;

/// A phone number waiting for the code sent to it by SMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneCodeRecord {
    pub user_id: UserId,
    pub phone: String,
    /// A keyed hash of the code (the code itself is only in the SMS).
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    /// Wrong codes tried so far.
    pub attempts: i32,
    pub sent_at: DateTime<Utc>,
}

/// One profile as stored. A user without a row has the defaults ([`ProfileRecord::empty`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRecord {
    pub user_id: UserId,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    /// The stored avatar's id (its renditions' keys derive from it), if any.
    pub avatar: Option<String>,
    pub timezone: Option<String>,
    pub country: Option<String>,
    /// E.164; private.
    pub phone: Option<String>,
    pub phone_verified: bool,
    pub visibility: Visibility,
    /// Product attributes declared in config, by name.
    pub attributes: Map<String, Value>,
    /// When a self-deletion will erase the account, if one is pending.
    pub deletion_due_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl ProfileRecord {
    pub fn empty(user_id: UserId, visibility: Visibility, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            display_name: None,
            bio: None,
            avatar: None,
            timezone: None,
            country: None,
            phone: None,
            phone_verified: false,
            visibility,
            attributes: Map::new(),
            deletion_due_at: None,
            updated_at: now,
        }
    }
}
