//! Profiles (`GET /v1/users/me`) a node read recently, so a repeat needs no database read.
//!
//! A profile changes only through a handful of writes (the email becoming verified, a password
//! reset, a profile edit, an erasure); each forgets the user's entry after its commit on the
//! node that made it, and every node forgets it on the event (`user.email_verified`,
//! `user.password_changed`, `profile.updated`, `user.deleted`) from the bus and from the
//! outbox feed. While the feed is current (it caught up within
//! [`crate::caches::FEED_BOUND`]) an entry is believed; otherwise it is re-read after
//! [`PROFILE_RECHECK`], which bounds staleness should every message be lost.
//!
//! A read that raced a change must not store what it read: every forget bumps an epoch, and a
//! reader stores only if the epoch it saw before reading is still current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_messages::profiles::UserView;
use keyward_messages::UserId;
use quick_cache::sync::Cache;

/// How long a profile is served from memory before it is read again.
pub const PROFILE_RECHECK: Duration = Duration::from_secs(30);

pub struct ProfileCache {
    entries: Cache<UserId, (Arc<UserView>, Instant)>,
    epoch: AtomicU64,
    recheck: Duration,
    feed: crate::caches::FeedMark,
}

impl ProfileCache {
    /// `capacity`: profiles remembered at once (`KEYWARD_CACHE__PROFILES`), about 800 B each.
    pub fn new(recheck: Duration, capacity: usize) -> Self {
        Self {
            entries: Cache::new(capacity),
            epoch: AtomicU64::new(0),
            recheck,
            feed: crate::caches::FeedMark::default(),
        }
    }

    pub fn get(&self, user: UserId) -> Option<Arc<UserView>> {
        match self.entries.get(&user) {
            Some((view, recheck_at))
                if Instant::now() < recheck_at
                    || self.feed.current_within(crate::caches::FEED_BOUND) =>
            {
                Some(view)
            }
            _ => None,
        }
    }

    /// Taken before reading a profile from the database; pass it to [`put`](Self::put).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Stores `view` unless something was forgotten since `epoch` was taken.
    pub fn put(&self, epoch: u64, view: Arc<UserView>) {
        let (id, recheck_at) = (view.id, Instant::now() + self.recheck);
        self.entries.insert(id, (view, recheck_at));
        // NOTE: checked after the insert, so a forget that lands between the two still
        // removes what was inserted.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.entries.remove(&id);
        }
    }

    pub fn forget(&self, user: UserId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(&user);
    }

    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

/// A change to a user's account (`user.email_verified`, `user.password_changed`) forgets their
/// profile; a revoked session changes no profile.
impl crate::caches::NodeCache for ProfileCache {
    fn apply(&self, env: &keyward_messages::events::Envelope) {
        use keyward_messages::events::{DomainEvent, Outgoing};
        match env.decode() {
            Ok(Outgoing::Event(DomainEvent::SessionRevoked { .. })) => {}
            Ok(Outgoing::Event(
                DomainEvent::RoleUpdated { .. } | DomainEvent::ClientUpdated { .. },
            )) => {}
            Ok(Outgoing::Event(ev)) => {
                if let Some(user) = ev.user_id() {
                    self.forget(user);
                }
            }
            _ => {}
        }
    }

    fn forget_beliefs(&self) {
        self.forget_all();
    }

    fn caught_up(&self, poll_started: Instant) {
        self.feed.caught_up(poll_started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn view(verified: bool) -> Arc<UserView> {
        Arc::new(UserView {
            id: UserId(Uuid::from_u128(7)),
            email: "a@example.com".into(),
            email_verified: verified,
            username: None,
            roles: Vec::new(),
            created_at: chrono::Utc::now(),
            display_name: None,
            bio: None,
            avatar: None,
            locale: Default::default(),
            timezone: None,
            country: None,
            phone: None,
            phone_verified: false,
            visibility: keyward_messages::profiles::Visibility::Users,
            attributes: Default::default(),
            updated_at: chrono::Utc::now(),
            deletion_scheduled_for: None,
        })
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let cache = ProfileCache::new(Duration::from_secs(60), 1024);
        let before = cache.epoch();
        let stale = view(false);
        cache.forget(stale.id); // the change commits while the read is under way
        cache.put(before, stale.clone());
        assert!(cache.get(stale.id).is_none());
        let now = cache.epoch();
        cache.put(now, view(true));
        assert!(cache.get(stale.id).is_some_and(|v| v.email_verified));
    }

    #[test]
    fn an_entry_lapses_after_the_recheck() {
        let cache = ProfileCache::new(Duration::ZERO, 1024);
        let v = view(true);
        cache.put(cache.epoch(), v.clone());
        assert!(cache.get(v.id).is_none());
    }
}
