//! The profiles context: what users show of themselves and to whom, their settings, their own
//! history and export, and self-service deletion.
//!
//! Owns: profile rows (display name, bio, avatar, time zone, country, phone, visibility,
//! declared attributes), renames and the 30-day hold on a given-up username, the settings
//! object, the profile cache, pending deletions and the erasure that ends them. Refuses:
//! showing a profile to a caller its visibility excludes (that answers exactly like an unknown
//! id), attributes outside their declaration, writing state without its event, and passwords
//! and sessions beyond checking the one and ending the others through their contexts' handles.

pub(crate) mod avatar;
mod cache;
pub mod erasure;
mod handlers;
pub mod index;
mod phone;
pub mod policy;

use std::sync::Arc;

use actix::prelude::*;
use chrono::Duration;
use keyward_config::AttributeSettings;
use keyward_messages::profiles::Visibility;
use keyward_storage::Store;

use crate::edge::Restart;
use crate::hasher::HasherPool;
use crate::metrics::Metrics;
use crate::outbox::OutboxWriter;
use crate::sessions::SessionsHandle;
use crate::Clock;

pub use cache::{ProfileCache, PROFILE_RECHECK};
pub use index::ProfileIndex;

/// How long a username given up by a rename stays its former owner's.
pub const RENAME_HOLD: Duration = Duration::days(30);

/// The profile rules resolved from settings.
#[derive(Clone, Debug)]
pub struct ProfilePolicy {
    pub attributes: Vec<AttributeSettings>,
    pub default_visibility: Visibility,
    pub deletion_grace: Duration,
}

/// What the profiles context works with.
pub struct ProfilesDeps {
    pub store: Store,
    pub clock: Clock,
    pub outbox: OutboxWriter,
    pub cache: Arc<ProfileCache>,
    /// Checks the password of a self-deletion.
    pub hasher: HasherPool,
    /// Ends every session of a user who deletes their account.
    pub sessions: SessionsHandle,
    pub policy: ProfilePolicy,
    pub index: ProfileIndex,
    /// Who may see or change other users' profiles (`users:read`, `users:write`).
    pub access: crate::access::AccessHandle,
    pub avatars: crate::avatars::AvatarStore,
    pub pipeline: crate::avatars::AvatarPipeline,
    /// Base of avatar URLs, without a trailing slash.
    pub public_url: String,
    /// Keys the hashes of phone verification codes (derived from the master key).
    pub code_key: [u8; 32],
    /// What codes by SMS may cost per account, IP and number.
    pub sms_budget: crate::notify::sms::SmsBudget,
    pub metrics: Metrics,
}

pub struct Profiles {
    pub(crate) deps: Arc<ProfilesDeps>,
}

impl Profiles {
    pub fn new(deps: Arc<ProfilesDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Profiles {
    type Context = Context<Self>;
}

impl Supervised for Profiles {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("profiles actor restarting");
    }
}

impl Handler<Restart> for Profiles {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
