//! Group commit of refresh-token rotations: the refreshes in flight on a node share one
//! transaction of three statements ([`keyward_storage::Sessions::rotate_many`]) instead of a
//! transaction each. On SQLite's one writer that is what lets rotations keep up when every
//! client refreshes at once, after a deploy or an outage. The rules (rotate a token once, the
//! grace window, reuse detection) stay the handler's: it learns whether its request rotated
//! the token, exactly as from a transaction of its own.
//!
//! One task per node takes every request queued while the previous batch committed, so a
//! batch is as large as the load makes it and a lone refresh waits for no one.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use keyward_messages::CommandError;
use keyward_storage::{Rotation, StorageError, Store};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::{chain, HandlerError};
use crate::Clock;

/// Most rotations in one transaction.
const MOST: usize = 256;
/// Requests waiting for a batch before senders wait too.
const QUEUE: usize = 4096;

/// What a rotation's request gets back: whether it rotated the token, and when.
type Reply = Result<Option<DateTime<Utc>>, HandlerError>;

struct Request {
    rotation: Rotation,
    reply: oneshot::Sender<Reply>,
}

/// The handle the sessions context rotates through.
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

    /// Rotates in the next group commit. `Some(now)`: this request rotated the token, at
    /// `now`; `None`: it was rotated before (by another request, maybe in the same batch).
    pub async fn rotate(&self, rotation: Rotation) -> Reply {
        let (reply, answer) = oneshot::channel();
        let gone = || HandlerError::from(CommandError::unavailable("the node is shutting down"));
        self.0
            .send(Request { rotation, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(store: Store, clock: Clock, idle: chrono::Duration, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MOST);
    while rx.recv_many(&mut batch, MOST).await > 0 {
        commit(&store, &clock, idle, std::mem::take(&mut batch)).await;
    }
}

async fn commit(store: &Store, clock: &Clock, idle: chrono::Duration, batch: Vec<Request>) {
    let now = clock();
    // The same token twice in one batch: the first request rotates it, the others find it
    // rotated (the grace path), as if they had come a moment later.
    let mut seen = HashSet::with_capacity(batch.len());
    let (firsts, repeats): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|r| seen.insert(r.rotation.token_id));
    let rotations: Vec<Rotation> = firsts.iter().map(|r| r.rotation.clone()).collect();
    match rotate(store, &rotations, now, now + idle).await {
        Ok(marked) => answer(firsts, &marked, now),
        // NOTE: one rotation the database refuses must not fail the others: each is tried
        // again alone.
        Err(e) if firsts.len() > 1 => {
            tracing::warn!(error = %chain(&e), rotations = firsts.len(), "a group commit of rotations failed; rotating one by one");
            for r in firsts {
                let one = std::slice::from_ref(&r.rotation);
                match rotate(store, one, now, now + idle).await {
                    Ok(marked) => answer(vec![r], &marked, now),
                    Err(e) => {
                        let _ = r.reply.send(Err(e.into()));
                    }
                }
            }
        }
        Err(e) => {
            if let Some(r) = firsts.into_iter().next() {
                let _ = r.reply.send(Err(e.into()));
            }
        }
    }
    for r in repeats {
        let _ = r.reply.send(Ok(None));
    }
}

fn answer(requests: Vec<Request>, marked: &HashSet<Uuid>, now: DateTime<Utc>) {
    for r in requests {
        let rotated = marked.contains(&r.rotation.token_id).then_some(now);
        // A requester that gave up (its client went away) needs no answer.
        let _ = r.reply.send(Ok(rotated));
    }
}

async fn rotate(
    store: &Store,
    rotations: &[Rotation],
    now: DateTime<Utc>,
    idle_cap: DateTime<Utc>,
) -> Result<HashSet<Uuid>, StorageError> {
    let tx = store.begin().await?;
    let marked = tx.sessions().rotate_many(rotations, now, idle_cap).await?;
    tx.commit().await?;
    Ok(marked)
}
