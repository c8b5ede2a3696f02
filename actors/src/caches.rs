//! What a node keeps in memory between requests, and the one place bus messages reach it:
//! the session gate (verified tokens, live and ended sessions) and recently read profiles.

use std::time::Duration;

use keyward_messages::events::{DomainEvent, Envelope, Outgoing};

use crate::accounts::profiles::{ProfileCache, PROFILE_RECHECK};
use crate::sessions::gate::SessionGate;

pub struct NodeCaches {
    pub sessions: SessionGate,
    pub profiles: ProfileCache,
}

/// The message types that change what a node may hold in memory: they also go to
/// `keyward.broadcast`, and the in-process bus hands them to [`NodeCaches::apply`].
pub const INVALIDATING: [&str; 3] = [
    "session.revoked",
    "user.email_verified",
    "user.password_changed",
];

pub fn is_invalidating(kind: &str) -> bool {
    INVALIDATING.contains(&kind)
}

impl NodeCaches {
    /// `session_recheck`: how long a session read as live is believed.
    pub fn new(session_recheck: Duration) -> Self {
        Self {
            sessions: SessionGate::new(session_recheck),
            profiles: ProfileCache::new(PROFILE_RECHECK),
        }
    }

    /// Applies one message from the bus; others are ignored.
    pub fn apply(&self, env: &Envelope) {
        if !is_invalidating(&env.kind) {
            return;
        }
        match env.decode() {
            Ok(Outgoing::Event(DomainEvent::SessionRevoked { session_id, .. })) => {
                self.sessions.ended(session_id);
            }
            Ok(Outgoing::Event(ev)) => self.profiles.forget(ev.user_id()),
            _ => {}
        }
    }

    /// For when messages may have been missed (the broadcast link was down): forget every
    /// belief that a message could have ended. Ended sessions stay ended.
    pub fn forget_beliefs(&self) {
        self.sessions.forget_live();
        self.profiles.forget_all();
    }
}
