//! Keyward's storage: forward-only migrations, and one folder per context (accounts,
//! sessions, profiles, access, notify, keys, bus, audit, throttle) holding its sea-orm entities and ONE repository that
//! takes and returns value types. SQLite and PostgreSQL run the same code.
//!
//! Every repository works over the pool or over a transaction ([`Store`] and [`Tx`] hand
//! them out: `store.users().by_email(&email)`, `tx.sessions().insert(&session)`), so each
//! query is written once, and state and its outbox messages commit together.
//!
//! Owns: SQL, transactions, mapping database errors (a unique violation becomes
//! `StorageError::Conflict`). Refuses: HTTP, AMQP, business rules, and handing sea-orm types to
//! callers: reads return the plain records of each context, never `Model`s or `DbErr`.

mod access;
mod accounts;
mod audit;
mod bus;
mod error;
mod federation;
mod keys;
mod lists;
mod mfa;
mod migrations;
mod notify;
mod profiles;
mod retention;
pub mod search;
mod sessions;
mod store;
#[cfg(test)]
mod testing;
mod throttle;

pub use access::{Access, ClientRecord, RoleRecord};
pub use accounts::{
    EmailConflictReason, EmailConflictRecord, NewEmailToken, NewUser, Registration, TokenPurpose,
    UsedEmailToken, UserFilter, UserRecord, UserStatusFilter, Users,
};
pub use audit::{Audit, AuditFilter, AuditRecord};
pub use bus::{Outbox, OutboxRecord};
pub use error::{Result, StorageError};
pub use federation::{Federation, FlowRecord, IdentityRecord, LinkProofRecord, OAuthCodeRecord};
pub use keys::{SigningKeyRecord, SigningKeys};
pub use mfa::{CeremonyRecord, ChallengeRecord, CodeRecord, FactorRecord, Mfa};
pub use notify::{
    DeliveryFilter, DeliveryRecord, InboxRecord, Notices, Preferences, PushSubscriptionRecord,
    ScheduledRecord, SendRecord, TemplateRecord,
};
pub use profiles::{PhoneCodeRecord, ProfileRecord, Profiles};
pub use retention::Retention;
pub use sessions::{
    ConnectionLease, Presented, RefreshTokenRecord, Rotation, SessionRecord, Sessions, Succession,
};
pub use store::{migration_names, sqlite_file, Reads, Store, Tx};
pub use throttle::LoginFailures;
