//! The accounts context: registration, email verification, login, password change and reset,
//! and blocking.
//!
//! Owns: users, password hashes (through the hasher pool), one-time email tokens, the decision
//! of which email to send, failed-login throttling. Refuses: revealing
//! whether an email has an account (register, resend and forgot answer the same either way; an
//! unknown login costs a dummy verify), writing any state without its event in the same
//! transaction, and session rows (it asks the sessions context, through the handle it gets at
//! start, to open or end them).

mod admin;
pub(crate) mod blocking;
pub(crate) mod budget;
pub mod cli;
mod handlers;
mod login;
pub(crate) use login::{account_key, account_throttled, count_account_failure};
mod passwords;
pub mod policy;
mod registration;

use std::sync::Arc;

use actix::prelude::*;
use chrono::Duration;
use keyward_messages::password_policy::PasswordPolicy;

use crate::edge::Restart;
use crate::hasher::HasherPool;
use crate::metrics::Metrics;
use crate::outbox::OutboxWriter;
use crate::profiles::ProfileCache;
use crate::sessions::SessionsHandle;
use crate::Clock;
use keyward_storage::Store;

/// Failed-login throttling, resolved from settings.
#[derive(Clone, Debug)]
pub struct ThrottlePolicy {
    pub account_max_failures: u32,
    pub ip_max_failures: u32,
    pub window: Duration,
    pub base_delay: Duration,
    /// Mail-sending requests per target address, and per client IP, per hour.
    pub mail_per_address: u32,
    pub mail_per_ip: u32,
    /// Sign-ins begun without an account (passkey login options, social login starts) per
    /// client IP per hour.
    pub ceremonies_per_ip: u32,
}

/// What the accounts context works with. Shared by every accounts actor, immutable after start.
pub struct AccountsDeps {
    pub store: Store,
    pub hasher: HasherPool,
    pub clock: Clock,
    /// Base of links in emails, without a trailing slash.
    pub public_url: String,
    pub verification_ttl: Duration,
    pub reset_ttl: Duration,
    pub throttle: ThrottlePolicy,
    pub password_policy: PasswordPolicy,
    pub outbox: OutboxWriter,
    pub profiles: Arc<ProfileCache>,
    /// Keeps the search index in step with verification and blocking.
    pub index: crate::profiles::ProfileIndex,
    pub sessions: SessionsHandle,
    /// Default roles at registration; who may block (`users:block`).
    pub access: crate::access::AccessHandle,
    pub metrics: Metrics,
    pub danger_test_panic_on_register: Option<String>,
}

impl AccountsDeps {
    fn wake_relay(&self) {
        self.outbox.wake();
    }
}

pub struct Accounts {
    pub(crate) deps: Arc<AccountsDeps>,
}

impl Accounts {
    pub fn new(deps: Arc<AccountsDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Accounts {
    type Context = Context<Self>;
}

impl Supervised for Accounts {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("accounts actor restarting");
    }
}

impl Handler<Restart> for Accounts {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
