//! The accounts context: registration, email verification, login, password change and reset,
//! and the caller's own profile.
//!
//! Owns: users, password hashes (through the hasher pool), one-time email tokens, the decision
//! of which email to send. Refuses: revealing whether an email has an account (register,
//! resend and forgot answer the same either way; an unknown login costs a dummy verify), and
//! writing any state without its event in the same transaction.

pub(crate) mod blocking;
mod handlers;
pub mod policy;
pub mod profiles;

use std::sync::Arc;

use actix::prelude::*;

use crate::edge::Restart;
use crate::system::Deps;

pub struct Accounts {
    pub(crate) deps: Arc<Deps>,
}

impl Accounts {
    pub fn new(deps: Arc<Deps>) -> Self {
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
