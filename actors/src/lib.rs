//! Keyward's actors: one per bounded context (accounts, sessions, notify), the hasher pool,
//! the avatar pipeline and stores, the signing keys, the outbox relay, and `system`, which starts and wires them.
//!
//! Refuses: HTTP types (the gateway owns them), raw SQL (storage owns it), blocking work on the
//! async runtime (argon2 runs on the hasher pool), and global registries: every address is
//! passed in at start.

pub mod access;
pub mod accounts;
pub mod avatars;
pub mod backup;
/// `keyward admin …`: the accounts context's commands for operators.
pub use accounts::cli as admin;
pub mod bus;
pub mod caches;
mod edge;
pub mod error;
pub mod federation;
pub mod hasher;
pub mod keys;
pub mod metrics;
pub mod mfa;
pub mod notify;
pub mod outbox;
pub mod profiles;
pub mod retention;
mod sealed;
pub mod sessions;
pub mod system;
#[cfg(test)]
mod testing;
pub mod tokens;

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Where time comes from, so tests can move it without sleeping.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Errors of node start-up and of the admin commands (not of requests).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Storage(#[from] keyward_storage::StorageError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("signing keys: {0}")]
    Keys(String),
    #[error("mail: {0}")]
    Mail(String),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// For `map_err`: an I/O failure on `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
        move |source| StartError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
