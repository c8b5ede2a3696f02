//! The profile's avatar: an upload goes through the pipeline, its renditions into the store,
//! and only then does the profile point at them, in one transaction with its event. A failed
//! store write or commit leaves the profile as it was and removes what was written; the old
//! renditions are removed once nothing points at them any more.

use std::sync::Arc;

use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::profiles::*;
use keyward_messages::{codes, CommandError, UserId};
use keyward_storage::ProfileRecord;
use serde_json::{json, Map};

use super::ProfilesDeps as Deps;
use crate::avatars::AvatarError;
use crate::error::HandlerError;

/// What an avatar problem means to the caller; store and internal details go to the log only.
fn reply(e: AvatarError) -> HandlerError {
    let detail = e.to_string();
    HandlerError::from(match e {
        AvatarError::UnsupportedType { .. } | AvatarError::TypeMismatch { .. } => {
            CommandError::UnsupportedType {
                code: "unsupported_media_type",
                detail,
            }
        }
        AvatarError::TooLarge { .. } => CommandError::TooLarge {
            code: "payload_too_large",
            detail,
        },
        AvatarError::Undecodable(_)
        | AvatarError::TooManyPixels { .. }
        | AvatarError::TooSmall { .. } => CommandError::Unprocessable {
            code: "invalid_image",
            detail,
        },
        AvatarError::Busy => CommandError::Unavailable {
            code: codes::OVERLOADED,
            detail,
            retry_after_secs: 5,
        },
        AvatarError::Unavailable(cause) => {
            tracing::warn!(%cause, "the avatar store is unavailable");
            CommandError::unavailable("the avatar store is unavailable; retry shortly")
        }
        AvatarError::Internal(cause) => {
            tracing::error!(%cause, "avatar pipeline failure");
            CommandError::Internal
        }
    })
}

/// The keys a profile's `avatar` column holds, smallest first.
pub(super) fn keys_of(stored: Option<&str>) -> Vec<String> {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

pub(super) fn urls(deps: &Deps, stored: Option<&str>) -> Option<AvatarUrls> {
    let url = |k: &String| deps.avatars.public_url(k, &deps.public_url);
    match keys_of(stored).as_slice() {
        [s, m, l] => Some(AvatarUrls {
            small: url(s),
            medium: url(m),
            large: url(l),
        }),
        _ => None,
    }
}

/// Removes renditions nothing points at any more; a failure leaves an orphan, logged.
pub(super) async fn remove(deps: &Deps, keys: Vec<String>) {
    for k in keys {
        if let Err(e) = deps.avatars.delete(&k).await {
            tracing::warn!(key = %k, error = %e, "could not remove an avatar rendition; it is orphaned");
        }
    }
}

/// Points the profile at `keys` (None: no avatar) with its event; returns the old keys.
async fn point(
    deps: &Deps,
    meta: &keyward_messages::RequestMeta,
    user: UserId,
    keys: Option<Vec<String>>,
) -> Result<Vec<String>, HandlerError> {
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    tx.users().lock(user).await?;
    let mut p = tx
        .profiles()
        .get(user)
        .await?
        .unwrap_or_else(|| ProfileRecord::empty(user, deps.policy.default_visibility, now));
    let old = keys_of(p.avatar.as_deref());
    if old.is_empty() && keys.is_none() {
        tx.rollback().await?;
        return Ok(old);
    }
    p.avatar = keys.map(|k| json!(k).to_string());
    p.updated_at = now;
    tx.profiles().put(&p).await?;
    deps.index.sync(&tx, user).await?;
    let mut values = Map::new();
    if p.visibility == Visibility::Public {
        values.insert("avatar".into(), json!(urls(deps, p.avatar.as_deref())));
    }
    let ev = DomainEvent::ProfileUpdated {
        user_id: user,
        changed: vec!["avatar".into()],
        values,
    };
    deps.outbox.enqueue(&tx, meta, Outgoing::Event(ev)).await?;
    tx.commit().await?;
    deps.cache.forget(user);
    deps.outbox.wake();
    Ok(old)
}

pub(super) async fn set_avatar(deps: Arc<Deps>, m: SetAvatar) -> Result<AvatarUrls, HandlerError> {
    let processed = deps
        .pipeline
        .process(&m.content_type, m.body.into())
        .await
        .map_err(reply)?;
    let saved = deps.avatars.save(&processed).await.map_err(reply)?;
    // Smallest first, as the column keeps them.
    let mut keys: Vec<(u32, String)> = saved;
    keys.sort_by_key(|(px, _)| *px);
    let keys: Vec<String> = keys.into_iter().map(|(_, k)| k).collect();
    let stored = json!(keys).to_string();
    match point(&deps, &m.meta, m.principal.user_id, Some(keys.clone())).await {
        Ok(old) => {
            remove(&deps, old).await;
            urls(&deps, Some(&stored)).ok_or_else(|| HandlerError::from(CommandError::Internal))
        }
        Err(e) => {
            remove(&deps, keys).await;
            Err(e)
        }
    }
}

/// Sets `user`'s avatar from an image fetched elsewhere (a social login's picture).
pub(crate) async fn import(
    deps: &Deps,
    meta: &keyward_messages::RequestMeta,
    user: UserId,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(), HandlerError> {
    let processed = deps
        .pipeline
        .process(content_type, body.into())
        .await
        .map_err(reply)?;
    let saved = deps.avatars.save(&processed).await.map_err(reply)?;
    let mut keys: Vec<(u32, String)> = saved;
    keys.sort_by_key(|(px, _)| *px);
    let keys: Vec<String> = keys.into_iter().map(|(_, k)| k).collect();
    match point(deps, meta, user, Some(keys.clone())).await {
        Ok(old) => {
            remove(deps, old).await;
            Ok(())
        }
        Err(e) => {
            remove(deps, keys).await;
            Err(e)
        }
    }
}

pub(super) async fn delete_avatar(deps: Arc<Deps>, m: DeleteAvatar) -> Result<(), HandlerError> {
    let old = point(&deps, &m.meta, m.principal.user_id, None).await?;
    remove(&deps, old).await;
    Ok(())
}

pub(super) async fn get_avatar(
    deps: Arc<Deps>,
    m: GetAvatar,
) -> Result<Option<AvatarImage>, HandlerError> {
    if !crate::avatars::is_valid_key(&m.key) {
        return Ok(None);
    }
    let found = deps.avatars.get(&m.key).await.map_err(reply)?;
    Ok(found.map(|(bytes, content_type)| AvatarImage {
        bytes,
        content_type,
    }))
}

/// Readiness of the avatar store (for /readyz when avatars go to S3).
impl actix::Handler<keyward_messages::commands::CheckReady> for super::Profiles {
    type Result = actix::ResponseFuture<Result<(), CommandError>>;
    fn handle(
        &mut self,
        _: keyward_messages::commands::CheckReady,
        _: &mut actix::Context<Self>,
    ) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move {
            deps.avatars.check().await.map_err(|e| {
                tracing::warn!(error = %e, "avatar store check failed");
                CommandError::unavailable("the avatar store does not answer")
            })
        })
    }
}
