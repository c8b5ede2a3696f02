//! End-to-end tests: each starts a whole node and talks to it over HTTP like a client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod access;
mod accounts;
mod avatars;
mod backup;
mod caches;
mod cli;
mod distributed;
mod federation;
mod federation_kinds;
mod keys;
mod keys_vault;
mod lifecycle;
mod mfa;
mod nginx;
mod notify;
mod openapi;
mod ops;
mod passkeys;
mod profiles;
mod resilience;
mod retention;
mod security;
mod sessions;
mod sms;
mod smtp_sink;
