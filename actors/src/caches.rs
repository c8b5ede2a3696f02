//! What a node keeps in memory between requests is owned by the contexts (the sessions
//! context's gate, the accounts context's profiles); this is the one place bus messages reach
//! them. Each cache says what a message means to it through [`NodeCache`].

use std::sync::Arc;

use keyward_messages::events::Envelope;

/// A node-local cache that bus messages invalidate.
pub trait NodeCache: Send + Sync {
    /// Applies one message that may change what it holds.
    fn apply(&self, env: &Envelope);
    /// Messages may have been missed (the broadcast link was down): forget every belief a
    /// message could have ended.
    fn forget_beliefs(&self);
}

/// Every cache of a node, as the bus sees them.
#[derive(Clone, Default)]
pub struct NodeCaches(Vec<Arc<dyn NodeCache>>);

/// The message types that change what a node may hold in memory: they also go to
/// `keyward.broadcast`, and the in-process bus hands them to [`NodeCaches::apply`].
pub const INVALIDATING: [&str; 5] = [
    "session.revoked",
    "user.email_verified",
    "user.password_changed",
    "profile.updated",
    "user.deleted",
];

pub fn is_invalidating(kind: &str) -> bool {
    INVALIDATING.contains(&kind)
}

impl NodeCaches {
    pub fn new(caches: Vec<Arc<dyn NodeCache>>) -> Self {
        Self(caches)
    }

    /// Applies one message from the bus; others are ignored.
    pub fn apply(&self, env: &Envelope) {
        if !is_invalidating(&env.kind) {
            return;
        }
        for c in &self.0 {
            c.apply(env);
        }
    }

    /// See [`NodeCache::forget_beliefs`].
    pub fn forget_beliefs(&self) {
        for c in &self.0 {
            c.forget_beliefs();
        }
    }
}
