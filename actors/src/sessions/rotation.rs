//! Group commit of refreshes: the refreshes in flight on a node are read together (one
//! query, beside the writer, while the group before them commits) and rotated in one call
//! to the database ([`keyward_storage::Sessions::rotate_many`]) instead of a transaction
//! and two reads each. On SQLite's one writer that is what lets rotations keep
//! up when every client refreshes at once, after a deploy or an outage. The rules (rotate a
//! token once, the grace window, reuse detection) stay the handler's: it learns whether its
//! request rotated the token, exactly as from a transaction of its own.
//!
//! One task per node takes every request queued while the previous batch committed, so a
//! batch is as large as the load makes it and a lone refresh waits for no one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use keyward_messages::{CommandError, UserId};
use keyward_storage::{
    RefreshTokenRecord, Rotation, SessionRecord, StorageError, Store, UserRecord,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::{chain, HandlerError};
use crate::Clock;

/// Most refreshes in one transaction.
const MOST: usize = 256;
/// Requests waiting for a batch before senders wait too.
const QUEUE: usize = 4096;

/// What a refresh found, and whether it rotated the token.
#[derive(Debug)]
pub enum Refreshed {
    /// No such token, or its session is no longer live, or its user is gone or blocked.
    Refused,
    /// This request rotated the token `at`; the session's idle expiry moved from `at`.
    Rotated {
        session: SessionRecord,
        user: UserRecord,
        at: DateTime<Utc>,
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
    reply: oneshot::Sender<Reply>,
}

/// The handle the sessions context refreshes through.
#[derive(Clone)]
pub struct Rotator(mpsc::Sender<Request>);

impl Rotator {
    /// Starts the node's rotation task; `idle` is how far a rotation moves a session's idle
    /// expiry.
    pub fn start(store: Store, clock: Clock, idle: chrono::Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        actix_rt::spawn(run(store, clock, idle, rx));
        Self(tx)
    }

    /// Reads and rotates the token whose hash is `presented` in the next group commit, giving
    /// it the successor whose hash is `successor`.
    pub async fn refresh(&self, presented: String, successor: String) -> Reply {
        let (reply, answer) = oneshot::channel();
        let gone = || HandlerError::from(CommandError::unavailable("the node is shutting down"));
        let request = Request {
            presented,
            successor,
            reply,
        };
        self.0.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(store: Store, clock: Clock, idle: chrono::Duration, mut rx: mpsc::Receiver<Request>) {
    // One group read ahead: its reads run beside the writer while the group before it commits.
    let (read, mut readied) = mpsc::channel::<(Vec<Request>, Result<Found, StorageError>)>(1);
    let reads = store.clone();
    actix_rt::spawn(async move {
        let mut batch = Vec::with_capacity(MOST);
        while rx.recv_many(&mut batch, MOST).await > 0 {
            let found = Found::read(&reads, &batch).await;
            if read
                .send((std::mem::take(&mut batch), found))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    while let Some((batch, found)) = readied.recv().await {
        match found {
            Ok(found) => commit(&store, &clock, idle, batch, &found).await,
            // NOTE: as with a failed commit, each is tried again alone, so each gets its own
            // answer.
            Err(e) => {
                tracing::warn!(error = %chain(&e), refreshes = batch.len(), "reading a group of refreshes failed; refreshing one by one");
                for r in batch {
                    match Found::read(&store, std::slice::from_ref(&r)).await {
                        Ok(found) => commit(&store, &clock, idle, vec![r], &found).await,
                        Err(e) => {
                            let _ = r.reply.send(Err(e.into()));
                        }
                    }
                }
            }
        }
    }
}

/// A group's tokens with their sessions, and their users: read beside the writer, before the
/// group commits. A token rotated (or a session revoked) after this read is still decided
/// right: the rotation marks only tokens not rotated yet, and the gate checks a session's
/// liveness at each use of its access token.
struct Found {
    tokens: HashMap<String, (RefreshTokenRecord, SessionRecord)>,
    users: HashMap<UserId, UserRecord>,
}

impl Found {
    async fn read(store: &Store, requests: &[Request]) -> Result<Self, StorageError> {
        let hashes: Vec<String> = requests.iter().map(|r| r.presented.clone()).collect();
        let mut found = Self {
            tokens: HashMap::with_capacity(hashes.len()),
            users: HashMap::new(),
        };
        for (token, session, user) in store
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
        Ok(found)
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

async fn commit(
    store: &Store,
    clock: &Clock,
    idle: chrono::Duration,
    batch: Vec<Request>,
    found: &Found,
) {
    let now = clock();
    match group(store, &batch, found, now, idle).await {
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
            for r in batch {
                let answer = group(store, std::slice::from_ref(&r), found, now, idle).await;
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

/// One transaction for `requests`: the rotations of those that may rotate; an answer per
/// request, in order.
async fn group(
    store: &Store,
    requests: &[Request],
    found: &Found,
    now: DateTime<Utc>,
    idle: chrono::Duration,
) -> Result<Vec<Refreshed>, StorageError> {
    // The same token twice in one batch: the first request rotates it, the others find it
    // rotated (the grace path), as if they had come a moment later.
    let mut first = HashSet::new();
    let rotations: Vec<Rotation> = requests
        .iter()
        .filter_map(|r| {
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
        .map(|r| match found.usable(r, now) {
            None => Refreshed::Refused,
            Some((token, session, user)) => {
                let (session, user) = (session.clone(), user.clone());
                if marked.contains(&token.id) && answered.insert(token.id) {
                    Refreshed::Rotated {
                        session,
                        user,
                        at: now,
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
