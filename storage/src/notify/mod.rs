//! The notify context's storage: stored templates, the delivery log (one row per recipient and
//! channel), the in-app inbox, each user's preferences, and the idempotency record of every
//! send request. One repository, [`Notices`].
//!
//! Owns: the rows, cursor pages over them, and a send request's ids kept under its
//! idempotency key. Refuses: rendering, deciding who gets what, and what a status means.

mod entities;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use uuid::Uuid;

pub use repo::{Notices, Preferences};

/// One stored template of (key, channel, locale).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRecord {
    pub key: String,
    pub channel: String,
    pub locale: String,
    /// The channel's parts (`subject`, `text`, `html`; `title`, `body`; `text`) as MiniJinja
    /// sources.
    pub parts: BTreeMap<String, String>,
    /// The variables the template may use, sorted.
    pub variables: Vec<String>,
    /// `shipped` (seeded, replaced by newer shipped versions) or `api` (edited; kept).
    pub source: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<UserId>,
}

/// One row of the delivery log: a notification to one user over one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// UUID v7: the log's order.
    pub id: Uuid,
    /// The notification (one per recipient of a request) this delivery belongs to.
    pub notification_id: Uuid,
    pub user_id: UserId,
    pub channel: String,
    pub category: String,
    pub template: String,
    /// `queued`, `scheduled`, `sent`, `failed`, `dead`, `skipped` or `cancelled`.
    pub status: String,
    pub attempts: i32,
    /// What the provider (or Keyward, for a skip) answered last.
    pub answer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One item of a user's in-app inbox. Its id is the notification's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxRecord {
    pub id: Uuid,
    pub user_id: UserId,
    pub category: String,
    pub title: String,
    pub body: String,
    pub action_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A send request as remembered under its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRecord {
    /// Who sent it (`client:<id>` or `user:<uuid>`): keys are per caller.
    pub caller: String,
    pub idempotency_key: String,
    /// A digest of the request, so a different request under the same key is refused.
    pub fingerprint: String,
    /// One notification id per recipient, in the request's order.
    pub ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A notification to one user that waits for its time. Its deliveries (one per channel) are
/// in the log as `scheduled` meanwhile.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledRecord {
    pub notification_id: Uuid,
    pub user_id: UserId,
    pub due_at: DateTime<Utc>,
    pub template: String,
    pub category: String,
    pub variables: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// A browser's Web Push subscription (RFC 8030), as `PushSubscription.toJSON()` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSubscriptionRecord {
    pub id: Uuid,
    pub user_id: UserId,
    /// The push service's URL for this browser; unique.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's 16-byte auth secret, base64url.
    pub auth: String,
    pub created_at: DateTime<Utc>,
}

/// Which deliveries the admin log shows.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub user_id: Option<UserId>,
    pub status: Option<String>,
    /// Rows older than this id (the previous page's last).
    pub before: Option<Uuid>,
    pub limit: u64,
}
