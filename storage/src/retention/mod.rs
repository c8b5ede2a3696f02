//! Retention: deleting, in bounded batches, rows that have done their work. One repository,
//! [`Retention`] (`store.retention()`, `tx.retention()`), and the migration that lets the
//! audit log's oldest lines go.
//!
//! Owns: which rows are old enough to go (published outbox rows, processed inbox records,
//! ended sessions with their refresh tokens, used or expired email tokens, failed logins, and
//! audit lines), deleting at most a batch of them per statement, and the lock that lets one
//! purger at a time run on PostgreSQL. Refuses: the schedule, the periods and the metrics (the
//! actors' purger decides them), and ever touching an unpublished outbox row, a session that
//! has not ended, or an email token that can still be used.

pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

pub use repo::Retention;
