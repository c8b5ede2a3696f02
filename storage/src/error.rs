//! `StorageError`: what can go wrong in storage, by what the caller can do about it. Every
//! variant that wraps a cause keeps it as its `source`, so the log shows the whole chain.

use std::error::Error;

use keyward_messages::FieldError;

/// What can go wrong in storage, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A uniqueness rule was broken; `what` names the field ("email", "username", …).
    #[error("{what} already exists")]
    Conflict { what: String },
    /// The database could not be reached or refused the statement.
    #[error("database error")]
    Backend(#[source] sea_orm::DbErr),
    /// A stored value no longer parses (or a value cannot be stored): `what` names the table,
    /// the row and the column, e.g. `users 0190… email`; `source` says why.
    #[error("corrupt stored data: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

impl StorageError {
    pub(crate) fn corrupt(what: String, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Corrupt {
            what,
            source: source.into(),
        }
    }
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

/// Why a stored value is refused: the source of a [`StorageError::Corrupt`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadValue {
    /// The value type's own parser refused it.
    #[error("{}: {}", .0.code, .0.message)]
    Invalid(FieldError),
    /// Not one of the values this column may hold.
    #[error("unknown value {0:?}")]
    Unknown(String),
    /// A JSON column that does not hold a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
}

/// Parses a stored value with its value type's parser; a refusal is `Corrupt`, naming the
/// table, the row and the column.
pub(crate) fn parse_stored<T>(
    table: &str,
    id: impl std::fmt::Display,
    column: &str,
    parsed: Result<T, FieldError>,
) -> Result<T> {
    parsed
        .map_err(|e| StorageError::corrupt(format!("{table} {id} {column}"), BadValue::Invalid(e)))
}
