//! The sessions context: issues access/refresh token pairs, rotates refresh tokens, lists and
//! revokes sessions, authenticates bearer tokens, publishes the JWKS.
//!
//! Owns: session rows and refresh-token families, access-token claims. Refuses: passwords
//! (accounts checks them before asking for a session) and trusting an access token whose
//! session has ended.

pub mod gate;
mod handlers;
pub(crate) mod issue;
pub mod policy;

use std::sync::Arc;

use actix::prelude::*;

use crate::edge::Restart;
use crate::system::Deps;

pub(crate) use handlers::reason_str;
pub use policy::AccessClaims;

pub struct Sessions {
    pub(crate) deps: Arc<Deps>,
}

impl Sessions {
    pub fn new(deps: Arc<Deps>) -> Self {
        Self { deps }
    }
}

impl Actor for Sessions {
    type Context = Context<Self>;
}

impl Supervised for Sessions {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("sessions actor restarting");
    }
}

impl Handler<Restart> for Sessions {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
