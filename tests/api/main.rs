//! End-to-end tests: each starts a whole node and talks to it over HTTP like a client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod accounts;
mod audit;
mod cli;
mod distributed;
mod lifecycle;
mod ops;
mod resilience;
mod sessions;
mod throttle;
mod tokens;
