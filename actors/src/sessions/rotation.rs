//! Group commit of refreshes: the refreshes in flight on a node are read together (one
//! query, beside the writer, while the group before them commits) and rotated in one call
//! to the database ([`keyward_storage::Sessions::rotate_many`]) instead of a transaction
//! and two reads each. On SQLite's one writer that is what lets rotations keep
//! up when every client refreshes at once, after a deploy or an outage. The rules (rotate a
//! token once, the grace window, reuse detection) stay the handler's: it learns whether its
//! request rotated the token, exactly as from a transaction of its own.
//!
//! One task per node reads every request queued while the previous group was read, and the
//! writer commits every group read while it was busy in one transaction, so a batch is as
//! large as the load makes it and a lone refresh waits for no one.
//!
//! A rotation is written only after its access token is signed: each request about to rotate
//! is offered a [`Prospect`] as soon as its group is read, signs while the group before it
//! commits, and consents. A key service that is slow or down therefore leaves the token
//! unrotated behind its 503 (a retry works at any time, not only within the grace window),
//! and the signature's wait overlaps the database's instead of following it.
//!
//! With keys that sign in this process, a group is read and rotated in one database call
//! instead (one statement on PostgreSQL, one transaction in one hand-off to SQLite's writer),
//! and signed after it ([`Rotator::start`]): one round trip per group where the read and the
//! write took two.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyward_messages::{CommandError, UserId};
use keyward_storage::{
    ConnectionLease, RefreshTokenRecord, Rotation, SessionRecord, StorageError, Store, Succession,
    UserRecord,
};
use tokio::sync::{mpsc, oneshot};

use crate::access::decisions::Grants;
use crate::access::Decisions;
use crate::error::{chain, HandlerError};
use crate::Clock;

/// Most refreshes in one transaction.
const MOST: usize = 256;
/// Requests waiting for a batch before senders wait too.
const QUEUE: usize = 4096;
/// Groups read and waiting for the writer before the reads wait too.
const READ_AHEAD: usize = 4;

/// What a refresh found, and whether it rotated the token.
#[derive(Debug)]
pub enum Refreshed {
    /// No such token, or its session is no longer live, or its user is gone or blocked.
    Refused,
    /// This request rotated the token `at`; the session's idle expiry moved from `at`.
    /// `grants` when the token was rotated before its access token was signed (the node
    /// signs here: [`Rotator::start`]), to sign it from.
    Rotated {
        session: SessionRecord,
        user: UserRecord,
        at: DateTime<Utc>,
        grants: Option<Arc<Grants>>,
    },
    /// The token was rotated `at`, before this request (or by another request in its batch,
    /// or on another node in the meantime): the grace window or reuse detection decides.
    Earlier {
        session: SessionRecord,
        user: UserRecord,
        at: DateTime<Utc>,
    },
}

type Reply = Result<Refreshed, HandlerError>;

struct Request {
    /// SHA-256 of the presented token and of its successor.
    presented: String,
    successor: String,
    /// Taken when the group is read: a prospect sent, or dropped when there is none.
    prospect: Option<oneshot::Sender<Prospect>>,
    reply: oneshot::Sender<Reply>,
}

/// The token will be rotated in the group being read, with this session and user, once the
/// requester consents (after signing its access token with these grants' roles). Dropped
/// without consent, the token stays as it was.
#[derive(Debug)]
pub struct Prospect {
    pub session: SessionRecord,
    pub user: UserRecord,
    pub grants: Arc<Grants>,
    consent: oneshot::Sender<()>,
}

impl Prospect {
    pub fn consent(self) {
        // The group may have been answered already (the node is stopping): nothing to do.
        let _ = self.consent.send(());
    }
}

/// A refresh submitted to the next group: first, perhaps, its [`Prospect`]; then its answer.
pub struct Pending {
    prospect: oneshot::Receiver<Prospect>,
    answer: oneshot::Receiver<Reply>,
}

impl Pending {
    /// The prospect of rotating, or `None` when this request will not rotate the token (it is
    /// unknown, already rotated, or its session or user is no longer live).
    pub async fn prospect(&mut self) -> Option<Prospect> {
        (&mut self.prospect).await.ok()
    }

    pub async fn answer(self) -> Reply {
        self.answer.await.map_err(|_| gone())?
    }
}

fn gone() -> HandlerError {
    HandlerError::from(CommandError::unavailable("the node is shutting down"))
}

/// The handle the sessions context refreshes through.
#[derive(Clone)]
pub struct Rotator(mpsc::Sender<Request>);

impl Rotator {
    /// Starts the node's rotation task; `idle` is how far a rotation moves a session's idle
    /// expiry. A group's users' roles come from `decisions`.
    ///
    /// `signs_here`: the node's keys sign in this process (the local key backend), so a
    /// signature cannot wait on a key service that is down. Then a group is read and rotated
    /// in one database call and its access tokens are signed after it ([`rotate_first`]):
    /// one round trip instead of a read and a write. A signature that failed after its
    /// rotation is mended by the client's retry within the grace window (the same successor
    /// again). With Vault signing a token is rotated only once its access token is signed.
    pub fn start(
        store: Store,
        decisions: Arc<Decisions>,
        clock: Clock,
        idle: chrono::Duration,
        signs_here: bool,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let context = Context {
            store,
            decisions,
            clock,
            idle,
        };
        if signs_here {
            actix_rt::spawn(rotate_first(context, rx));
        } else {
            actix_rt::spawn(run(context, rx));
        }
        Self(tx)
    }

    /// Submits the token whose hash is `presented` to the next group commit, to be rotated to
    /// the successor whose hash is `successor` once the requester consents to the prospect.
    pub async fn submit(
        &self,
        presented: String,
        successor: String,
    ) -> Result<Pending, HandlerError> {
        let (reply, answer) = oneshot::channel();
        let (offer, prospect) = oneshot::channel();
        let request = Request {
            presented,
            successor,
            prospect: Some(offer),
            reply,
        };
        self.0.send(request).await.map_err(|_| gone())?;
        Ok(Pending { prospect, answer })
    }
}

/// A group read, with each request's consent to come (`None`: it will not rotate).
type Readied = (
    Vec<Request>,
    Result<Found, StorageError>,
    Vec<Option<oneshot::Receiver<()>>>,
);

/// What the rotation task works with.
#[derive(Clone)]
struct Context {
    store: Store,
    decisions: Arc<Decisions>,
    clock: Clock,
    /// How far a rotation moves a session's idle expiry.
    idle: chrono::Duration,
}

async fn run(cx: Context, mut rx: mpsc::Receiver<Request>) {
    // Groups are read ahead, beside the writer, while the group before them commits.
    let (read, mut readied) = mpsc::channel::<Readied>(READ_AHEAD);
    let reader = cx.clone();
    actix_rt::spawn(async move {
        let mut batch = Vec::with_capacity(MOST);
        while rx.recv_many(&mut batch, MOST).await > 0 {
            let found = Found::read(&reader, &batch).await;
            let consents = match &found {
                Ok(found) => offer(&mut batch, found, (reader.clock)()),
                Err(_) => Vec::new(),
            };
            if read
                .send((std::mem::take(&mut batch), found, consents))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut carried: Option<Readied> = None;
    loop {
        let (mut batch, found, mut consents) = match carried.take() {
            Some(r) => r,
            None => match readied.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut found = match found {
            Ok(found) => found,
            // NOTE: as with a failed commit, each is tried again alone, so each gets its own
            // answer.
            Err(e) => {
                tracing::warn!(error = %chain(&e), refreshes = batch.len(), "reading a group of refreshes failed; refreshing one by one");
                one_by_one(&cx, batch).await;
                continue;
            }
        };
        // NOTE: every group read while this one waited for the writer commits with it. With
        // groups read ahead, the clients in flight are spread over several small groups, and
        // each commit has a cost of its own beside its rows' (a round trip, a WAL flush, on
        // SQLite a hand-off to the writer's thread): fewer, larger commits.
        while let Ok(next) = readied.try_recv() {
            match next {
                (more, Ok(more_found), more_consents) if batch.len() + more.len() <= MOST => {
                    batch.extend(more);
                    consents.extend(more_consents);
                    found.merge(more_found);
                }
                other => {
                    carried = Some(other);
                    break;
                }
            }
        }
        let consented = gather(consents).await;
        commit(&cx, batch, &consented, &found).await;
    }
}

/// How long a lane of [`rotate_first`] keeps SQLite's writer from one group to the next
/// while more are queued: every other write of the node waits for it meanwhile.
const LEASE_MOST: std::time::Duration = std::time::Duration::from_millis(4);

/// Rotates each group of requests in one database call, then answers them (keys signing in
/// this process: [`Rotator::start`]). A group takes every request queued while the groups
/// before it were in flight: a lane per connection kept for rotations
/// (`Store::rotation_connections`), one on SQLite, whose one writer takes one group at a
/// time; on PostgreSQL a group's round trip overlaps the next's.
async fn rotate_first(cx: Context, rx: mpsc::Receiver<Request>) {
    let (lanes, one_writer) = (cx.store.rotation_connections(), !cx.store.is_postgres());
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 1..lanes {
        actix_rt::spawn(lane(cx.clone(), rx.clone(), one_writer));
    }
    lane(cx, rx, one_writer).await;
}

/// One lane of [`rotate_first`]: it keeps its connection from one group to the next
/// ([`ConnectionLease`]). A PostgreSQL connection kept for rotations stays with its lane;
/// SQLite's one writer goes back to the node's other writes as soon as nothing is queued, or
/// after [`LEASE_MOST`].
async fn lane(cx: Context, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>, one_writer: bool) {
    let mut lease = ConnectionLease::default();
    let mut batch = Vec::with_capacity(MOST);
    loop {
        {
            let mut rx = rx.lock().await;
            if one_writer
                && (rx.is_empty() || lease.held_for().is_some_and(|held| held >= LEASE_MOST))
            {
                lease.release();
            }
            if rx.recv_many(&mut batch, MOST).await == 0 {
                return;
            }
        }
        rotate_group(&cx, std::mem::take(&mut batch), &mut lease).await;
    }
}

/// One group of [`rotate_first`]: rotated in one database call, each request answered with
/// its token's holder (and grants, when it rotated).
async fn rotate_group(cx: &Context, batch: Vec<Request>, lease: &mut ConnectionLease) {
    let now = (cx.clock)();
    let mark = cx.decisions.mark();
    // The same token twice in one group: the first request rotates it, the others find it
    // rotated (the grace path), as if they had come a moment later.
    let mut first = HashSet::new();
    let successions: Vec<Succession> = batch
        .iter()
        .filter(|r| first.insert(r.presented.as_str()))
        .map(|r| Succession {
            presented_hash: r.presented.clone(),
            successor_hash: r.successor.clone(),
        })
        .collect();
    let rotated = cx
        .store
        .rotations()
        .rotate_presented(lease, &successions, now, now + cx.idle)
        .await;
    let found = match rotated {
        Ok(found) => found,
        // NOTE: one refresh the database refuses must not fail the others: each is tried
        // again alone.
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %chain(&e), refreshes = batch.len(), "a group of refreshes failed; refreshing one by one");
            for r in batch {
                Box::pin(rotate_group(cx, vec![r], lease)).await;
            }
            return;
        }
        Err(e) => {
            if let Some(r) = batch.into_iter().next() {
                let _ = r.reply.send(Err(e.into()));
            }
            return;
        }
    };
    let marked_users = found
        .iter()
        .filter(|p| p.marked)
        .filter_map(|p| p.user.as_ref());
    // NOTE: the tokens are rotated already; without grants their requests fail, and each
    // client's retry within the grace window gets the same successor.
    let grants = cx
        .decisions
        .grants_of(&cx.store, marked_users, mark)
        .await
        .map_err(|e| tracing::warn!(error = %chain(&e), "reading a rotated group's grants failed"))
        .ok();
    let mut found: HashMap<String, _> = found
        .into_iter()
        .map(|p| (p.token.token_hash.clone(), p))
        .collect();
    for r in batch {
        let answer = match found.get_mut(&r.presented) {
            None => Ok(Refreshed::Refused),
            Some(p) => {
                let user = p.user.clone().filter(|u| !u.blocked);
                match user {
                    Some(user) if p.session.is_live(now) => {
                        let session = p.session.clone();
                        if std::mem::take(&mut p.marked) {
                            match grants.as_ref().and_then(|g| g.get(&user.id)) {
                                Some(g) => Ok(Refreshed::Rotated {
                                    session,
                                    user,
                                    at: now,
                                    grants: Some(g.clone()),
                                }),
                                None => Err(HandlerError::from(CommandError::unavailable(
                                    "the database is unavailable; retry shortly",
                                ))),
                            }
                        } else {
                            Ok(Refreshed::Earlier {
                                session,
                                user,
                                at: p.token.rotated_at.unwrap_or(now),
                            })
                        }
                    }
                    _ => Ok(Refreshed::Refused),
                }
            }
        };
        let _ = r.reply.send(answer);
    }
}

/// Reads and commits each request alone, so that each gets its own answer.
async fn one_by_one(cx: &Context, batch: Vec<Request>) {
    for r in batch {
        let mut one = vec![r];
        match Found::read(cx, &one).await {
            Ok(found) => {
                let consented = gather(offer(&mut one, &found, (cx.clock)())).await;
                commit(cx, one, &consented, &found).await
            }
            Err(e) => {
                if let Some(r) = one.pop() {
                    let _ = r.reply.send(Err(e.into()));
                }
            }
        }
    }
}

/// Offers a prospect to each request that would rotate its token at `now`; the others' offers
/// are dropped, so their requesters go straight to the answer.
fn offer(
    batch: &mut [Request],
    found: &Found,
    now: DateTime<Utc>,
) -> Vec<Option<oneshot::Receiver<()>>> {
    batch
        .iter_mut()
        .map(|r| {
            let offer = r.prospect.take()?;
            let (token, session, user) = found.usable(r, now)?;
            if token.rotated_at.is_some() {
                return None;
            }
            let grants = found.grants.get(&user.id)?.clone();
            let (consent, consented) = oneshot::channel();
            let prospect = Prospect {
                session: session.clone(),
                user: user.clone(),
                grants,
                consent,
            };
            offer.send(prospect).ok().map(|()| consented)
        })
        .collect()
}

/// Waits for every prospect's requester: consented, or gone without consenting (its
/// signature failed, or it gave up).
async fn gather(consents: Vec<Option<oneshot::Receiver<()>>>) -> Vec<bool> {
    futures::future::join_all(consents.into_iter().map(|c| async move {
        match c {
            Some(c) => c.await.is_ok(),
            None => false,
        }
    }))
    .await
}

/// A group's tokens with their sessions, and their users with their grants: read beside the
/// writer, before the group commits. A token rotated (or a session revoked) after this read
/// is still decided right: the rotation marks only tokens not rotated yet, and the gate
/// checks a session's liveness at each use of its access token.
struct Found {
    tokens: HashMap<String, (RefreshTokenRecord, SessionRecord)>,
    users: HashMap<UserId, UserRecord>,
    grants: HashMap<UserId, Arc<Grants>>,
}

impl Found {
    async fn read(cx: &Context, requests: &[Request]) -> Result<Self, StorageError> {
        let hashes: Vec<String> = requests.iter().map(|r| r.presented.clone()).collect();
        let mark = cx.decisions.mark();
        let mut found = Self {
            tokens: HashMap::with_capacity(hashes.len()),
            users: HashMap::new(),
            grants: HashMap::new(),
        };
        for (token, session, user) in cx
            .store
            .reads()
            .sessions()
            .refresh_tokens_with_holders(&hashes)
            .await?
        {
            if let Some(user) = user {
                found.users.insert(user.id, user);
            }
            found
                .tokens
                .insert(token.token_hash.clone(), (token, session));
        }
        found.grants = cx
            .decisions
            .grants_of(&cx.store, found.users.values(), mark)
            .await?;
        Ok(found)
    }

    /// Adds what a later read found: where both hold a token or a user, the later read is
    /// the fresher.
    fn merge(&mut self, later: Found) {
        self.tokens.extend(later.tokens);
        self.users.extend(later.users);
        self.grants.extend(later.grants);
    }

    /// The token `r` presented, its session and user, if it may be refreshed at `now`.
    fn usable(
        &self,
        r: &Request,
        now: DateTime<Utc>,
    ) -> Option<(&RefreshTokenRecord, &SessionRecord, &UserRecord)> {
        let (token, session) = self.tokens.get(&r.presented)?;
        let user = self.users.get(&session.user_id).filter(|u| !u.blocked)?;
        session.is_live(now).then_some((token, session, user))
    }
}

async fn commit(cx: &Context, batch: Vec<Request>, consented: &[bool], found: &Found) {
    let (store, idle, now) = (&cx.store, cx.idle, (cx.clock)());
    match group(store, &batch, consented, found, now, idle).await {
        Ok(answers) => {
            for (r, a) in batch.into_iter().zip(answers) {
                // A requester that gave up (its client went away) needs no answer.
                let _ = r.reply.send(Ok(a));
            }
        }
        // NOTE: one refresh the database refuses must not fail the others: each is tried
        // again alone.
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %chain(&e), refreshes = batch.len(), "a group commit of refreshes failed; refreshing one by one");
            for (i, r) in batch.into_iter().enumerate() {
                let consent = &consented[i..=i];
                let answer =
                    group(store, std::slice::from_ref(&r), consent, found, now, idle).await;
                let _ = r.reply.send(
                    answer
                        .map_err(HandlerError::from)
                        .and_then(|mut a| a.pop().ok_or_else(|| CommandError::Internal.into())),
                );
            }
        }
        Err(e) => {
            if let Some(r) = batch.into_iter().next() {
                let _ = r.reply.send(Err(e.into()));
            }
        }
    }
}

/// One transaction for `requests`: the rotations of those that may rotate and consented; an
/// answer per request, in order.
async fn group(
    store: &Store,
    requests: &[Request],
    consented: &[bool],
    found: &Found,
    now: DateTime<Utc>,
    idle: chrono::Duration,
) -> Result<Vec<Refreshed>, StorageError> {
    // The same token twice in one batch: the first request rotates it, the others find it
    // rotated (the grace path), as if they had come a moment later.
    let mut first = HashSet::new();
    let rotations: Vec<Rotation> = requests
        .iter()
        .zip(consented)
        .filter(|(_, consented)| **consented)
        .filter_map(|(r, _)| {
            let (token, session, _) = found.usable(r, now)?;
            (token.rotated_at.is_none() && first.insert(token.id)).then(|| Rotation {
                token_id: token.id,
                session_id: session.id,
                successor_hash: r.successor.clone(),
            })
        })
        .collect();
    let marked = if rotations.is_empty() {
        HashSet::new()
    } else {
        store
            .sessions()
            .rotate_many(&rotations, now, now + idle)
            .await?
    };
    let mut answered = HashSet::new();
    Ok(requests
        .iter()
        .zip(consented)
        .map(|(r, consented)| match found.usable(r, now) {
            None => Refreshed::Refused,
            Some((token, session, user)) => {
                let (session, user) = (session.clone(), user.clone());
                if *consented && marked.contains(&token.id) && answered.insert(token.id) {
                    Refreshed::Rotated {
                        session,
                        user,
                        at: now,
                        grants: None,
                    }
                } else {
                    Refreshed::Earlier {
                        session,
                        user,
                        at: token.rotated_at.unwrap_or(now),
                    }
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;
    use std::time::Duration;

    use keyward_messages::SessionId;

    use super::*;

    const TOKENS: usize = 60;

    /// A user with `TOKENS` live sessions, the i-th holding the refresh token hashed `t{i}`.
    async fn store_with_tokens() -> Store {
        let (store, user) = crate::testing::store_with_user().await;
        for i in 0..TOKENS {
            session_with_token(&store, user, &format!("t{i}")).await;
        }
        store
    }

    /// A live session of `user` holding the refresh token hashed `hash`.
    async fn session_with_token(store: &Store, user: UserId, hash: &str) {
        let now = Utc::now();
        let session = SessionRecord {
            id: SessionId::new(),
            user_id: user,
            created_at: now,
            last_used_at: now,
            idle_expires_at: now + chrono::Duration::hours(1),
            expires_at: now + chrono::Duration::days(1),
            revoked_at: None,
            user_agent: None,
            ip: None,
            amr: vec!["pwd".into()],
            acr: "aal1".into(),
        };
        store.sessions().insert(&session).await.unwrap();
        store
            .sessions()
            .insert_refresh_token(session.id, hash, now)
            .await
            .unwrap();
    }

    /// Refreshes `hashes` as one group, consenting to every prospect: each one's roles.
    async fn roles_offered(rotator: &Rotator, hashes: &[String]) -> Vec<Vec<String>> {
        let mut pendings = Vec::new();
        for h in hashes {
            pendings.push(rotator.submit(h.clone(), format!("{h}+")).await.unwrap());
        }
        // A group commits once all of its prospects consented: every consent, then the answers.
        let mut roles = Vec::new();
        for pending in &mut pendings {
            let p = pending.prospect().await.expect("a prospect");
            roles.push(p.grants.roles.clone());
            p.consent();
        }
        for pending in pendings {
            assert!(matches!(
                pending.answer().await,
                Ok(Refreshed::Rotated { .. })
            ));
        }
        roles
    }

    /// A group of refreshes by users the node does not know yet (after a deploy) reads their
    /// roles at once, each user's own, and remembers them until a message says they changed.
    #[actix_rt::test]
    async fn a_group_gets_each_users_roles_and_the_node_remembers_them() {
        let (store, first) = crate::testing::store_with_user().await;
        let mut users = vec![first];
        for i in 1..20 {
            users.push(crate::testing::verified_user(&store, &format!("u{i}@example.com")).await);
        }
        // User i holds i % 3 roles: none, `a{i}`, or `a{i}` and `b{i}`.
        let held =
            |i: usize| -> Vec<String> { [format!("a{i}"), format!("b{i}")][..i % 3].to_vec() };
        for (i, user) in users.iter().enumerate() {
            for role in held(i) {
                store
                    .users()
                    .grant_role(*user, &role, Utc::now())
                    .await
                    .unwrap();
            }
            session_with_token(&store, *user, &format!("t{i}")).await;
        }
        let decisions = Arc::new(Decisions::new(1024));
        let rotator = Rotator::start(
            store.clone(),
            decisions.clone(),
            Arc::new(Utc::now),
            chrono::Duration::hours(1),
            false,
        );
        let hashes: Vec<String> = (0..users.len()).map(|i| format!("t{i}")).collect();
        let expected: Vec<Vec<String>> = (0..users.len()).map(held).collect();
        assert_eq!(roles_offered(&rotator, &hashes).await, expected);

        // A role granted to every user behind Keyward's back, and a message about user 1
        // only: the others' remembered roles stay until theirs comes.
        for user in &users {
            store
                .users()
                .grant_role(*user, "z", Utc::now())
                .await
                .unwrap();
        }
        decisions.forget(users[1]);
        let next: Vec<String> = hashes.iter().map(|h| format!("{h}+")).collect();
        let mut expected = expected;
        expected[1].push("z".into());
        assert_eq!(roles_offered(&rotator, &next).await, expected);
    }

    #[actix_rt::test]
    async fn groups_read_while_the_writer_waits_rotate_each_token_once() {
        let store = store_with_tokens().await;
        let clock: Clock = Arc::new(Utc::now);
        let decisions = Arc::new(Decisions::new(1024));
        let rotator = Rotator::start(
            store.clone(),
            decisions,
            clock,
            chrono::Duration::hours(1),
            false,
        );
        // Three waves, each read before the next is sent while nothing has consented yet, so
        // the writer waits on the first group while the others are read, and commits them
        // together. Every token is presented twice in its wave (two tabs); t0 again in the
        // last wave; t7's requests never consent; one token is unknown.
        let mut asked: Vec<(String, String, bool)> = Vec::new();
        let mut held = Vec::new();
        for wave in 0..3 {
            let mut this: Vec<(String, String, bool)> = (wave * TOKENS / 3
                ..(wave + 1) * TOKENS / 3)
                .flat_map(|i| {
                    (0..2).map(move |tab| (format!("t{i}"), format!("s{i}-{tab}"), i != 7))
                })
                .collect();
            if wave == 2 {
                this.push(("t0".into(), "s0-late".into(), true));
                this.push(("unknown".into(), "s-unknown".into(), true));
            }
            // Sent together, so that each wave is read as one group.
            let mut pendings = Vec::new();
            for (token, successor, _) in &this {
                pendings.push(
                    rotator
                        .submit(token.clone(), successor.clone())
                        .await
                        .unwrap(),
                );
            }
            for ((_, _, consent), mut pending) in this.iter().zip(pendings) {
                let prospect = pending.prospect().await;
                held.push((pending, prospect, *consent));
            }
            asked.extend(this);
        }
        let answers = tokio::time::timeout(Duration::from_secs(30), async {
            let mut answers = Vec::new();
            for (pending, prospect, consent) in held {
                let offered = prospect.is_some();
                if let Some(p) = prospect.filter(|_| consent) {
                    p.consent();
                }
                answers.push((offered, pending));
            }
            let mut out = Vec::new();
            for (offered, pending) in answers {
                out.push((offered, pending.answer().await.unwrap()));
            }
            out
        })
        .await
        .expect("every refresh is answered");

        let mut rotated_to: HashMap<String, Vec<String>> = HashMap::new();
        for ((token, successor, _), (offered, answer)) in asked.iter().zip(answers) {
            match answer {
                Refreshed::Rotated { .. } => {
                    assert!(offered, "{token} rotated without a prospect");
                    rotated_to
                        .entry(token.clone())
                        .or_default()
                        .push(successor.clone());
                }
                Refreshed::Earlier { .. } => assert_ne!(token, "unknown"),
                Refreshed::Refused => assert_eq!(token, "unknown", "{token} refused"),
            }
        }
        for i in 0..TOKENS {
            let token = format!("t{i}");
            let stored = store
                .sessions()
                .refresh_token_by_hash(&token)
                .await
                .unwrap()
                .unwrap();
            if i == 7 {
                // Never consented to: neither request rotated it.
                assert!(!rotated_to.contains_key(&token));
                assert!(stored.rotated_at.is_none());
                continue;
            }
            let successors = &rotated_to[&token];
            assert_eq!(successors.len(), 1, "{token} rotated once: {successors:?}");
            assert!(stored.rotated_at.is_some());
            for tab in ["-0", "-1", "-late"] {
                let candidate = format!("s{i}{tab}");
                let written = store
                    .sessions()
                    .refresh_token_by_hash(&candidate)
                    .await
                    .unwrap();
                assert_eq!(written.is_some(), successors[0] == candidate, "{candidate}");
            }
        }
    }
}
