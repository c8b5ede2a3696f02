//! Erasure: once a self-deletion's grace period has passed, the account's personal data is
//! deleted (user row, roles, tokens, sessions, profile, settings) and `user.deleted` goes out,
//! in one transaction per account. One eraser runs per node; on PostgreSQL the user-row lock
//! and the re-check inside the transaction make two nodes erase an account once.
//!
//! Kept: the audit log (append-only, the security record; its lines name the account by id)
//! and the username hold of a rename, which expires on its own.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::{RequestMeta, UserId};

use super::ProfilesDeps as Deps;
use crate::error::HandlerError;

/// Accounts erased per pass at most; the rest wait for the next tick.
const BATCH: u64 = 50;

pub struct Eraser {
    deps: Arc<Deps>,
    every: Duration,
}

impl Eraser {
    pub fn new(deps: Arc<Deps>, every: Duration) -> Self {
        Self { deps, every }
    }
}

impl Actor for Eraser {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |this, ctx| {
            let deps = this.deps.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = erase_due(&deps).await {
                        tracing::warn!(error = %crate::error::chain(&e), "erasing deleted accounts failed; retrying on the next tick");
                    }
                }
                .into_actor(this),
            );
        });
    }
}

impl Supervised for Eraser {}

/// Erases every account whose deletion is due; returns how many it erased.
pub async fn erase_due(deps: &Deps) -> Result<usize, HandlerError> {
    let now = (deps.clock)();
    let due = deps.store.profiles().deletions_due(now, BATCH).await?;
    let mut erased = 0;
    for user in due {
        if erase(deps, user).await? {
            erased += 1;
        }
    }
    Ok(erased)
}

async fn erase(deps: &Deps, user: UserId) -> Result<bool, HandlerError> {
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    tx.users().lock(user).await?;
    // A login may have cancelled it, or another node erased it, since the list was read.
    let still_due = tx
        .profiles()
        .get(user)
        .await?
        .and_then(|p| p.deletion_due_at)
        .is_some_and(|due| due <= now);
    let Some(profile) = tx.profiles().get(user).await?.filter(|_| still_due) else {
        tx.rollback().await?;
        return Ok(false);
    };
    erase_in(deps, &tx, &RequestMeta::default(), user).await?;
    tx.commit().await?;
    after_erase(deps, user, profile.avatar.as_deref()).await;
    tracing::info!(user_id = %user, "account erased");
    Ok(true)
}

/// Deletes `user`'s personal data inside `tx`, with `user.deleted`; the caller locked the
/// user row and, once committed, calls [`after_erase`].
pub(crate) async fn erase_in(
    deps: &Deps,
    tx: &keyward_storage::Tx,
    meta: &RequestMeta,
    user: UserId,
) -> Result<(), HandlerError> {
    tx.sessions().erase_all_of(user).await?;
    tx.users().erase(user).await?;
    tx.profiles().erase(user).await?;
    tx.notices().erase_user(user).await?;
    tx.mfa().erase_user(user).await?;
    tx.federation().erase_user(user).await?;
    deps.index.sync(tx, user).await?;
    let ev = DomainEvent::UserDeleted { user_id: user };
    deps.outbox.enqueue(tx, meta, Outgoing::Event(ev)).await?;
    Ok(())
}

/// After an erasure committed: the avatar files go, caches forget, the outbox wakes.
pub(crate) async fn after_erase(deps: &Deps, user: UserId, avatar: Option<&str>) {
    super::avatar::remove(deps, super::avatar::keys_of(avatar)).await;
    deps.cache.forget(user);
    deps.outbox.wake();
}
