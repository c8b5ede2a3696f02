//! The security suite. Each test name starts with the OWASP ASVS 5.0.0 requirement it checks
//! (`asvs_v9_1_2_…` is v5.0.0-9.1.2); SECURITY.md maps every requirement to its tests.
//! Run it alone with `cargo test --test api security::`.

pub(crate) mod audit;
mod edge;
mod email_identity;
mod enumeration;
mod hygiene;
mod sessions;
mod throttling;
mod tokens;
