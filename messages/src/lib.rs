//! The shared vocabulary of Keyward: validated value types, the commands and queries the
//! gateway sends to context actors (with their replies), domain events, email jobs and the
//! event envelope that crosses process boundaries.
//!
//! Refuses: any I/O. Nothing here talks to a database, a socket or a clock of its own; a value
//! that exists has already been validated, so handlers never re-check shapes.

pub mod access;
pub mod access_token;
pub mod commands;
pub mod error;
pub mod events;
pub mod federation;
pub mod mfa;
pub mod notify;
pub mod password_policy;
pub mod profiles;
pub mod values;

pub use error::{codes, CommandError, FieldError};
pub use values::{BlockReason, Email, LoginId, Password, RequestMeta, SessionId, UserId, Username};
