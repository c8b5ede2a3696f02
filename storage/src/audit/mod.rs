//! The audit log's storage: one line per security-relevant event, appended in the
//! transaction of the change it records. One repository, [`Audit`].
//!
//! Owns: appending lines and reading them back. Refuses: changing or deleting a line (the
//! table's triggers refuse it too), and deciding which events are audited (the actors do).

mod entities;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use keyward_messages::UserId;

pub use repo::{Audit, AuditFilter};

/// One line of the audit log: a security-relevant event and who caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    /// The event type, e.g. `user.login_failed`.
    pub kind: String,
    pub user_id: Option<UserId>,
    /// Who did it, when it was not the user themself: the administrator of an admin action.
    pub actor_id: Option<UserId>,
    /// The service client that did it, for an admin action through a client's token.
    pub actor_client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// JSON with what else the event is about (never a secret).
    pub details: String,
}
