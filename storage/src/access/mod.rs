//! The access context's storage: role definitions, which users hold which roles
//! (`user_roles`), and service clients. One repository, [`Access`].
//!
//! Owns: the rows, and a grant or revoke reporting whether it changed anything. Refuses:
//! deciding who may change what (the access actor does), and what a permission means.

mod entities;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use keyward_messages::UserId;

pub use repo::Access;

/// One role as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRecord {
    pub name: String,
    pub description: String,
    /// Sorted, without repeats.
    pub permissions: Vec<String>,
    /// `builtin`, `config` or `api`.
    pub source: String,
    pub updated_at: DateTime<Utc>,
}

/// One service client as stored. The secret is kept only as a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    /// PHC string of the secret.
    pub secret_hash: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
}
