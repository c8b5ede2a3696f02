//! The bus's storage: the transactional outbox (every event and email job is written in the
//! transaction of the change it reports, and the relay publishes it afterwards) and the inbox
//! (which messages a consumer already processed). One repository, [`Outbox`].
//!
//! Owns: commit order, claiming rows so that one relay publishes each (PostgreSQL), marking
//! them published, counting failed attempts and the backlog, and de-duplicating deliveries per
//! consumer. Refuses: decoding or publishing messages, AMQP, and retry timing (the relay's).

mod entities;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use repo::Outbox;

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
