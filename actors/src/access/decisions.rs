//! What a node remembers to answer permission questions without a database read: each role's
//! permissions, and each user's roles and whether they may act at all (verified, not
//! blocked). Both are forgotten when a message says they changed: `role.granted`,
//! `role.revoked`, `role.updated`, `user.blocked`, `user.unblocked`, `user.email_verified`,
//! `user.password_changed` (a reset verifies the email) and `user.deleted` reach every node
//! through `keyward.broadcast` and the outbox feed (`caches::follow_outbox`), so a revoke is
//! refused everywhere within a second.
//!
//! While the feed is current (it caught up within [`crate::caches::FEED_BOUND`]) every change
//! Keyward made more than that ago has been applied, so what is remembered is believed without
//! a database read however long ago it was read, as the session gate and the profile cache do.
//! While the feed lags (the database is slow or down), a belief lapses `BELIEVED_FOR` (and a
//! spread) after its read, which bounds how long a lost message could leave it wrong.
//!
//! A read that raced an invalidation must not put the old answer back: every invalidation
//! bumps an epoch, and a load only stores what it read when no invalidation happened since it
//! started.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use keyward_messages::access::Caller;
use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
use keyward_messages::UserId;
use keyward_storage::{ClientRecord, StorageError, Store, UserRecord};
use quick_cache::sync::Cache;

/// How long a user's grants are believed after their read while the outbox feed lags: every
/// change Keyward makes is a message, so only a lost one (or a change made behind Keyward's
/// back, SQL by hand) waits this long.
const BELIEVED_FOR: Duration = Duration::from_secs(60);

/// One user's standing.
#[derive(Debug)]
pub struct Grants {
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Verified and not blocked; false also for an unknown user.
    pub active: bool,
    lapses_at: Instant,
}

/// Looked up for each of a user's roles on every check: hashed with quick_cache's fast
/// hasher, not SipHash (role names are the operator's, not an attacker's).
type RoleMap = HashMap<String, Arc<BTreeSet<String>>, quick_cache::DefaultHashBuilder>;

/// A service client's standing: its scopes and secret hash, or none when it does not exist.
#[derive(Debug)]
pub struct ClientStanding {
    pub client: Option<ClientRecord>,
    lapses_at: Instant,
}

pub struct Decisions {
    roles: RwLock<Arc<RoleMap>>,
    clients: Cache<String, Arc<ClientStanding>>,
    roles_stale: AtomicBool,
    users: Cache<UserId, Arc<Grants>>,
    epoch: AtomicU64,
    believed_for: Duration,
    feed_bound: Duration,
    feed: crate::caches::FeedMark,
}

impl Decisions {
    /// `users`: users remembered at once (`KEYWARD_CACHE__USERS`); beyond it the least used
    /// are read again.
    pub fn new(users: usize) -> Self {
        Self::with_bounds(users, BELIEVED_FOR, crate::caches::FEED_BOUND)
    }

    fn with_bounds(users: usize, believed_for: Duration, feed_bound: Duration) -> Self {
        Self {
            roles: RwLock::new(Arc::new(RoleMap::default())),
            roles_stale: AtomicBool::new(true),
            users: Cache::new(users),
            clients: Cache::new(1024),
            epoch: AtomicU64::new(0),
            believed_for,
            feed_bound,
            feed: crate::caches::FeedMark::default(),
        }
    }

    /// When a belief read now lapses should the feed lag: `believed_for` plus up to half of it
    /// again, so entries read together (a node's first minute) are not all read again together.
    fn lapse(&self) -> Instant {
        use rand::Rng;
        let half = u64::try_from(self.believed_for.as_millis() / 2).unwrap_or(u64::MAX);
        let spread = rand::thread_rng().gen_range(0..half.max(1));
        Instant::now() + self.believed_for + Duration::from_millis(spread)
    }

    /// Whether a belief that lapses at `lapses_at` holds now.
    fn believed(&self, lapses_at: Instant) -> bool {
        Instant::now() < lapses_at || self.feed.current_within(self.feed_bound)
    }

    /// `user`'s roles and standing, from memory or the database.
    pub async fn grants(&self, store: &Store, user: UserId) -> Result<Arc<Grants>, StorageError> {
        if let Some(g) = self.users.get(&user) {
            if self.believed(g.lapses_at) {
                return Ok(g);
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let record = store.reads().users().by_id(user).await?;
        let roles = match &record {
            Some(_) => store.reads().users().roles_of(user).await?,
            None => Vec::new(),
        };
        let g = Arc::new(Grants {
            roles,
            active: record.is_some_and(|u| u.email_verified && !u.blocked),
            lapses_at: self.lapse(),
        });
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.users.insert(user, g.clone());
        }
        Ok(g)
    }

    /// Marks the start of a read of users whose grants [`Decisions::grants_of`] may then
    /// remember.
    pub fn mark(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The grants of `users`, whose records were read since `mark`: from memory where
    /// believed, the others' roles in one query for them all, and remembered unless an
    /// invalidation came since `mark`. What a group of refreshes on a node that does not know
    /// its users yet (after a deploy) reads instead of two reads per user.
    pub async fn grants_of<'u>(
        &self,
        store: &Store,
        users: impl IntoIterator<Item = &'u UserRecord>,
        mark: u64,
    ) -> Result<HashMap<UserId, Arc<Grants>>, StorageError> {
        let mut grants = HashMap::new();
        let mut unknown = Vec::new();
        for u in users {
            match self.users.get(&u.id).filter(|g| self.believed(g.lapses_at)) {
                Some(g) => {
                    grants.insert(u.id, g);
                }
                None => unknown.push(u),
            }
        }
        if unknown.is_empty() {
            return Ok(grants);
        }
        let ids: Vec<UserId> = unknown.iter().map(|u| u.id).collect();
        let mut roles: HashMap<UserId, Vec<String>> = HashMap::new();
        for (user, role) in store.reads().users().roles_of_many(&ids).await? {
            roles.entry(user).or_default().push(role);
        }
        let remember = self.epoch.load(Ordering::Acquire) == mark;
        for u in unknown {
            let g = Arc::new(Grants {
                roles: roles.remove(&u.id).unwrap_or_default(),
                active: u.email_verified && !u.blocked,
                lapses_at: self.lapse(),
            });
            if remember {
                self.users.insert(u.id, g.clone());
            }
            grants.insert(u.id, g);
        }
        Ok(grants)
    }

    /// Every role's permissions in memory, unless a change made them stale.
    fn fresh_roles(&self) -> Option<RwLockReadGuard<'_, Arc<RoleMap>>> {
        if self.roles_stale.load(Ordering::Acquire) {
            return None;
        }
        self.roles.read().ok()
    }

    /// Every role's permissions, from memory or (after a change) the database.
    pub async fn roles(&self, store: &Store) -> Result<Arc<RoleMap>, StorageError> {
        if let Some(map) = self.fresh_roles() {
            return Ok(map.clone());
        }
        self.roles_stale.store(false, Ordering::Release);
        let map: RoleMap = store
            .access()
            .roles()
            .await
            .inspect_err(|_| self.roles_stale.store(true, Ordering::Release))?
            .into_iter()
            .map(|r| (r.name, Arc::new(r.permissions.into_iter().collect())))
            .collect();
        let map = Arc::new(map);
        if let Ok(mut slot) = self.roles.write() {
            *slot = map.clone();
        }
        Ok(map)
    }

    /// The permissions `user` holds now: none unless they may act.
    pub async fn permissions(
        &self,
        store: &Store,
        user: UserId,
    ) -> Result<BTreeSet<String>, StorageError> {
        let g = self.grants(store, user).await?;
        if !g.active {
            return Ok(BTreeSet::new());
        }
        let roles = self.roles(store).await?;
        Ok(g.roles
            .iter()
            .filter_map(|r| roles.get(r))
            .flat_map(|p| p.iter().cloned())
            .collect())
    }

    /// Whether `user` holds `permission` now.
    pub async fn allows(
        &self,
        store: &Store,
        user: UserId,
        permission: &str,
    ) -> Result<bool, StorageError> {
        let g = self.grants(store, user).await?;
        if !g.active {
            return Ok(false);
        }
        let holds = |roles: &RoleMap| {
            g.roles
                .iter()
                .any(|r| roles.get(r).is_some_and(|p| p.contains(permission)))
        };
        // NOTE: read under the lock, not from a clone of the map's Arc: every check on every
        // worker would write the one counter.
        if let Some(map) = self.fresh_roles() {
            return Ok(holds(&map));
        }
        Ok(holds(&*self.roles(store).await?))
    }

    /// What `caller` may do now: a user's permissions from live grants; a client's token
    /// scopes, which authenticating it already cut to the scopes the client still holds.
    pub async fn caller_permissions(
        &self,
        store: &Store,
        caller: &Caller,
    ) -> Result<BTreeSet<String>, StorageError> {
        match caller {
            Caller::User(p) => self.permissions(store, p.user_id).await,
            Caller::Client(c) => Ok(c.scopes.iter().cloned().collect()),
        }
    }

    /// Whether `caller` may do what `permission` allows now.
    pub async fn caller_allows(
        &self,
        store: &Store,
        caller: &Caller,
        permission: &str,
    ) -> Result<bool, StorageError> {
        match caller {
            Caller::User(p) => self.allows(store, p.user_id, permission).await,
            Caller::Client(c) => Ok(c.scopes.iter().any(|s| s == permission)),
        }
    }

    /// A client as stored (none when it does not exist), from memory or the database.
    pub async fn client(
        &self,
        store: &Store,
        id: &str,
    ) -> Result<Arc<ClientStanding>, StorageError> {
        if let Some(c) = self.clients.get(id) {
            if self.believed(c.lapses_at) {
                return Ok(c);
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let c = Arc::new(ClientStanding {
            client: store.access().client(id).await?,
            lapses_at: self.lapse(),
        });
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.clients.insert(id.to_owned(), c.clone());
        }
        Ok(c)
    }

    /// A client was deleted or its secret replaced.
    pub fn forget_client(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.clients.remove(id);
    }

    /// `user`'s grants or standing changed.
    pub fn forget(&self, user: UserId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.users.remove(&user);
    }

    /// A role's definition changed.
    pub fn forget_roles(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.roles_stale.store(true, Ordering::Release);
    }
}

impl crate::caches::NodeCache for Decisions {
    fn apply(&self, env: &Envelope) {
        match env.decode() {
            Ok(Outgoing::Event(DomainEvent::RoleUpdated { .. })) => self.forget_roles(),
            Ok(Outgoing::Event(DomainEvent::ClientUpdated { client_id, .. })) => {
                self.forget_client(&client_id)
            }
            Ok(Outgoing::Event(
                DomainEvent::RoleGranted { user_id, .. }
                | DomainEvent::RoleRevoked { user_id, .. }
                | DomainEvent::UserBlocked { user_id, .. }
                | DomainEvent::UserUnblocked { user_id, .. }
                | DomainEvent::UserEmailVerified { user_id, .. }
                | DomainEvent::UserPasswordChanged { user_id, .. }
                | DomainEvent::UserDeleted { user_id },
            )) => self.forget(user_id),
            _ => {}
        }
    }

    fn forget_beliefs(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.users.clear();
        self.clients.clear();
        self.roles_stale.store(true, Ordering::Release);
    }

    fn caught_up(&self, poll_started: Instant) {
        self.feed.caught_up(poll_started);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::caches::NodeCache;
    use crate::testing::store_with_user;

    #[tokio::test]
    async fn a_current_feed_keeps_grants_believed_and_a_lagging_one_lets_them_lapse() {
        let bound = Duration::from_millis(60);
        let decisions = Decisions::with_bounds(1024, bound, bound);
        let (store, user) = store_with_user().await;
        let active = async |d: &Decisions| d.grants(&store, user).await.unwrap().active;
        assert!(active(&decisions).await);
        // Blocked behind Keyward's back: no message says so.
        store
            .users()
            .set_blocked(user, true, chrono::Utc::now())
            .await
            .unwrap();
        tokio::time::sleep(bound * 2).await;
        // The read is past its lapse and the feed caught up just now: every change Keyward
        // made has been applied, so the belief holds without a read.
        decisions.caught_up(Instant::now());
        assert!(active(&decisions).await);
        // The feed stopped catching up (the database is slow or gone): the belief lapses and
        // the database is asked again.
        tokio::time::sleep(bound * 2).await;
        assert!(!active(&decisions).await);
    }

    #[tokio::test]
    async fn a_password_reset_forgets_the_users_grants() {
        let decisions = Decisions::new(1024);
        let (store, user) = store_with_user().await;
        decisions.caught_up(Instant::now());
        assert!(decisions.grants(&store, user).await.unwrap().active);
        store
            .users()
            .set_blocked(user, true, chrono::Utc::now())
            .await
            .unwrap();
        let ev = Outgoing::Event(DomainEvent::UserPasswordChanged {
            user_id: user,
            via: "reset".into(),
        });
        decisions.apply(&Envelope::new(
            uuid::Uuid::now_v7(),
            chrono::Utc::now(),
            None,
            &ev,
        ));
        assert!(!decisions.grants(&store, user).await.unwrap().active);
    }
}
