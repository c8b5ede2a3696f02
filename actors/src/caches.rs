//! What a node keeps in memory between requests is owned by the contexts (the sessions
//! context's gate, the accounts context's profiles); this is the one place bus messages reach
//! them. Each cache says what a message means to it through [`NodeCache`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyward_messages::events::Envelope;
use keyward_storage::Store;
use uuid::Uuid;

use crate::Clock;

/// A node-local cache that bus messages invalidate.
pub trait NodeCache: Send + Sync {
    /// Applies one message that may change what it holds.
    fn apply(&self, env: &Envelope);
    /// Messages may have been missed (the broadcast link was down): forget every belief a
    /// message could have ended.
    fn forget_beliefs(&self);
    /// Every invalidation committed before `poll_started` has been applied (the outbox feed
    /// caught up).
    fn caught_up(&self, _poll_started: Instant) {}
}

/// A cache that believes what it holds while the feed is current asks that it caught up within
/// this: a change any node made reaches it within a second, as a revoke must.
pub const FEED_BOUND: Duration = Duration::from_secs(1);

/// When the outbox feed last caught up, as a cache keeps it: a cache whose every change comes
/// with an invalidating message may believe what it holds for as long as the feed is current.
pub struct FeedMark {
    /// Nanoseconds from `origin` to the start of the last poll that caught up (0: never).
    at: AtomicU64,
    origin: Instant,
}

impl Default for FeedMark {
    fn default() -> Self {
        Self {
            at: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl FeedMark {
    fn nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin).as_nanos();
        // Never 0, which means "never caught up".
        u64::try_from(d).unwrap_or(u64::MAX).max(1)
    }

    /// A poll that started at `poll_started` caught up; an older one moves nothing back.
    pub fn caught_up(&self, poll_started: Instant) {
        self.at
            .fetch_max(self.nanos(poll_started), Ordering::AcqRel);
    }

    /// The feed caught up less than `bound` ago: every invalidation committed more than
    /// `bound` ago has been applied.
    pub fn current_within(&self, bound: Duration) -> bool {
        let at = self.at.load(Ordering::Acquire);
        let bound = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        at != 0 && self.nanos(Instant::now()).saturating_sub(at) < bound
    }
}

/// Every cache of a node, as the bus sees them.
#[derive(Clone, Default)]
pub struct NodeCaches(Vec<Arc<dyn NodeCache>>);

/// The message types that change what a node may hold in memory or shows live (a new in-app
/// notification, for the inbox streams): they also go to `keyward.broadcast`, and the
/// in-process bus hands them to [`NodeCaches::apply`].
pub const INVALIDATING: [&str; 13] = [
    "session.revoked",
    "user.email_verified",
    "user.password_changed",
    "profile.updated",
    "user.deleted",
    "user.blocked",
    "user.unblocked",
    "role.granted",
    "role.revoked",
    "role.updated",
    "client.updated",
    "notification.sent",
    "keys.rotated",
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

    /// See [`NodeCache::caught_up`].
    pub fn caught_up(&self, poll_started: Instant) {
        for c in &self.0 {
            c.caught_up(poll_started);
        }
    }
}

/// How far back each poll of [`follow_outbox`] reads: longer than a transaction takes from
/// writing its message to committing, plus the clock difference between nodes.
pub const FEED_WINDOW: Duration = Duration::from_secs(5);
/// Most messages one poll applies; a backlog beyond it is caught up over the next polls.
const FEED_PAGE: u64 = 5_000;

/// The backstop to `keyward.broadcast`: every `every`, applies to `caches` the invalidating
/// messages any node wrote to the outbox in the last [`FEED_WINDOW`] that this task has not
/// applied yet. One indexed read per interval whatever the number of sessions, users or
/// nodes, so a node that lost the broadcast (or a change written by another process, such as
/// the CLI) is at most `every` plus a commit behind. After each poll that read everything
/// pending, the caches hear that they caught up to its start ([`NodeCache::caught_up`]).
/// Runs until the process ends.
pub async fn follow_outbox(store: Store, caches: Arc<NodeCaches>, clock: Clock, every: Duration) {
    let window = chrono::Duration::from_std(FEED_WINDOW).unwrap_or(chrono::Duration::zero());
    let mut seen: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut since = clock() - window;
    loop {
        tokio::time::sleep(every).await;
        let poll_started = Instant::now();
        let now = clock();
        let rows = match store.outbox().recent(since, &INVALIDATING, FEED_PAGE).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "cannot read the invalidation feed; retrying");
                continue;
            }
        };
        for row in &rows {
            if seen.insert(row.id, row.created_at).is_some() {
                continue;
            }
            match serde_json::from_str::<Envelope>(&row.payload) {
                Ok(env) => caches.apply(&env),
                Err(e) => {
                    tracing::warn!(id = %row.id, error = %e, "an outbox message does not parse; skipped")
                }
            }
        }
        // A full page means more are waiting: go on from the last one read.
        since = match rows.last() {
            Some(last) if rows.len() as u64 == FEED_PAGE => last.created_at,
            _ => {
                caches.caught_up(poll_started);
                now - window
            }
        };
        seen.retain(|_, at| *at >= since);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use keyward_messages::events::{DomainEvent, Outgoing};
    use keyward_messages::UserId;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl NodeCache for Recorder {
        fn apply(&self, env: &Envelope) {
            self.0.lock().unwrap().push(env.kind.clone());
        }
        fn forget_beliefs(&self) {}
    }

    fn event(ev: DomainEvent, at: DateTime<Utc>) -> Envelope {
        Envelope::new(Uuid::now_v7(), at, None, &Outgoing::Event(ev))
    }

    /// A change written by anyone (here straight to the outbox, as another node or the CLI
    /// would) reaches the caches once, however many polls see it; other messages and rows
    /// older than the window do not.
    #[tokio::test]
    async fn the_outbox_feed_applies_each_invalidation_once() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let rec = Arc::new(Recorder::default());
        let caches = Arc::new(NodeCaches::new(vec![rec.clone()]));
        let clock: Clock = Arc::new(Utc::now);
        let feed = tokio::spawn(follow_outbox(
            store.clone(),
            caches,
            clock,
            Duration::from_millis(20),
        ));
        let user = UserId::new();
        let now = Utc::now();
        let old = now - chrono::Duration::minutes(1);
        let revoked = |at| {
            event(
                DomainEvent::RoleRevoked {
                    user_id: user,
                    role: "organizer".into(),
                    by: None,
                    by_client: None,
                },
                at,
            )
        };
        store.outbox().enqueue(&revoked(old)).await.unwrap();
        store.outbox().enqueue(&revoked(now)).await.unwrap();
        let login = DomainEvent::UserLoggedIn {
            user_id: user,
            session_id: keyward_messages::SessionId::new(),
            ip: None,
            user_agent: None,
            amr: vec!["pwd".into()],
        };
        store.outbox().enqueue(&event(login, now)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(*rec.0.lock().unwrap(), ["role.revoked"]);
        feed.abort();
    }
}
