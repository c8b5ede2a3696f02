//! End-to-end tests: each starts a whole node and talks to it over HTTP like a client.

mod helpers;

mod accounts;
mod cli;
mod lifecycle;
mod ops;
mod resilience;
mod sessions;
mod tokens;
