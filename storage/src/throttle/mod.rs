//! The login throttle's storage: failed logins under a key (`account:<id>`, `login:<as
//! typed>`, `ip:<address>`), counted over a window. One repository, [`LoginFailures`].
//!
//! Owns: recording, counting and forgetting failures. Refuses: the limits, the delays and the
//! choice of keys (the accounts context's policy).

mod entities;
mod repo;
#[cfg(test)]
mod tests;

pub use repo::LoginFailures;
