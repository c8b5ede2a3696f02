//! Blocking an account: the flag, the end of every session, and the events, in one
//! transaction. Used by the admin API and by `keyward admin block-user`.

use chrono::{DateTime, Utc};
use keyward_messages::commands::SetBlocked;
use keyward_messages::events::{DomainEvent, Outgoing, RevokeReason};
use keyward_messages::{BlockReason, CommandError, RequestMeta, SessionId, UserId};
use keyward_storage::Tx;

use super::AccountsDeps as Deps;
use crate::error::HandlerError;
use crate::outbox::enqueue_at;
use crate::sessions::SessionEnder;

/// What an administrator (`by`; none for the CLI) does to an account.
pub(crate) struct BlockChange {
    pub blocked: bool,
    pub reason: Option<BlockReason>,
    pub by: Option<UserId>,
    /// The service client that did it, if one did.
    pub by_client: Option<String>,
}

/// Blocks or unblocks `user` inside `tx`. Blocking ends every session of the user
/// (`session.revoked`, reason `account_blocked`) and writes `user.blocked`; unblocking writes
/// `user.unblocked`. Returns None, writing nothing, when the flag already had that value, else
/// the sessions it ended.
pub(crate) async fn apply(
    tx: &Tx,
    now: DateTime<Utc>,
    meta: &RequestMeta,
    user: UserId,
    change: BlockChange,
    sessions: SessionEnder,
    index: &crate::profiles::ProfileIndex,
) -> Result<Option<Vec<SessionId>>, HandlerError> {
    let BlockChange {
        blocked,
        reason,
        by,
        by_client,
    } = change;
    if !tx.users().set_blocked(user, blocked, now).await? {
        return Ok(None);
    }
    index.sync(tx, user).await?;
    if !blocked {
        let ev = DomainEvent::UserUnblocked {
            user_id: user,
            by,
            by_client,
        };
        enqueue_at(tx, now, meta, Outgoing::Event(ev)).await?;
        return Ok(Some(Vec::new()));
    }
    let ev = DomainEvent::UserBlocked {
        user_id: user,
        reason: reason.map(String::from),
        by,
        by_client,
    };
    enqueue_at(tx, now, meta, Outgoing::Event(ev)).await?;
    let ended = sessions
        .end_all(tx, now, meta, user, None, RevokeReason::AccountBlocked)
        .await?;
    Ok(Some(ended))
}

/// The admin API's block and unblock. Idempotent: blocking a blocked account is a success.
pub(crate) async fn set_blocked(deps: &Deps, m: SetBlocked) -> Result<(), HandlerError> {
    // NOTE: live grants, not the token: an administrator who lost the permission must not
    // keep it until their access token expires.
    let actor = &m.caller;
    deps.access.require_caller(actor, "users:block").await?;
    if m.blocked && actor.user_id() == Some(m.user_id) {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "self_lockout",
            detail: "an administrator cannot block their own account; ask another administrator"
                .into(),
            field: None,
        }));
    }
    if deps.store.users().by_id(m.user_id).await?.is_none() {
        return Err(HandlerError::from(
            keyward_messages::access::user_not_found(),
        ));
    }
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    let changed = apply(
        &tx,
        now,
        &m.meta.acting_as(actor),
        m.user_id,
        BlockChange {
            blocked: m.blocked,
            reason: m.reason,
            by: actor.user_id(),
            by_client: actor.client_id().map(str::to_owned),
        },
        deps.sessions.ender(),
        &deps.index,
    )
    .await?;
    tx.commit().await?;
    if let Some(ended) = changed {
        deps.access.changed(m.user_id);
        deps.sessions.ended(&ended);
        deps.wake_relay();
        tracing::info!(user_id = %m.user_id, blocked = m.blocked, by = ?actor.user_id(), by_client = ?actor.client_id(), "account block flag changed");
    }
    Ok(())
}
