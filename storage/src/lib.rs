//! Keyward's storage: sea-orm entities, forward-only migrations, and one unit-of-work API
//! that the context actors use. SQLite and PostgreSQL run the same code.
//!
//! Owns: SQL, transactions, mapping database errors (a unique violation becomes
//! `StorageError::Conflict`). Refuses: HTTP, AMQP, business rules, and handing sea-orm types to
//! callers: reads return the plain records below, writes go through [`Tx`] so that state and
//! its outbox messages commit together.

mod entities;
mod migrations;
mod records;
mod store;

pub use records::*;
pub use store::{Store, Tx};

/// What can go wrong in storage, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A uniqueness rule was broken; `what` names the field ("email", "username", …).
    #[error("{what} already exists")]
    Conflict { what: String },
    /// The database could not be reached or refused the statement.
    #[error("database error")]
    Backend(#[source] sea_orm::DbErr),
    /// A stored value no longer parses (e.g. a corrupted JSON payload).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl From<sea_orm::DbErr> for StorageError {
    fn from(e: sea_orm::DbErr) -> Self {
        if let Some(sea_orm::SqlErr::UniqueConstraintViolation(msg)) = e.sql_err() {
            let what = if msg.contains("email") {
                "email"
            } else if msg.contains("username") {
                "username"
            } else {
                "record"
            };
            return StorageError::Conflict { what: what.into() };
        }
        StorageError::Backend(e)
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
