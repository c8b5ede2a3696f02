//! sea-orm entities. Private to the crate: repositories return value types, never `Model`s.

pub mod audit;
pub mod email_canonical_conflict;
pub mod email_token;
pub mod inbox;
pub mod login_failure;
pub mod outbox;
pub mod refresh_token;
pub mod session;
pub mod signing_key;
pub mod user;
pub mod user_role;
