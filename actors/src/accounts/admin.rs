//! The management API's account actions: inviting a user (an account whose password its owner
//! sets through an emailed link) and ending every session of a user.

use std::sync::Arc;

use keyward_messages::access::{AdminUser, Caller, ForceLogout, InviteUser, UserStatus};
use keyward_messages::events::RevokeReason;
use keyward_messages::CommandError;
use keyward_storage::{StorageError, TokenPurpose};

use super::registration::{issue_token_mail, registered, unverified_account, username_taken};
use super::AccountsDeps as Deps;
use crate::error::HandlerError;
use crate::tokens::random_token;

pub(super) async fn invite_user(deps: Arc<Deps>, m: InviteUser) -> Result<AdminUser, HandlerError> {
    let actor = m.principal.user_id;
    deps.access.require(actor, "users:write").await?;
    let roles: Vec<String> = m.roles.iter().map(|r| r.as_str().to_owned()).collect();
    deps.access
        .may_grant(&Caller::User(m.principal.clone()), &roles)
        .await?;
    if deps.store.users().by_email(&m.email).await?.is_some() {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "email_taken",
            detail: "an account with this email address exists".into(),
            field: Some("email".into()),
        }));
    }
    // NOTE: nobody knows this password; the invitation link replaces it.
    let password_hash = deps.hasher.hash(&random_token()).await?;
    let now = (deps.clock)();
    let (user, record) =
        unverified_account(&m.email, m.username.clone(), password_hash, m.locale, now);
    let meta = m.meta.acting(actor);
    let tx = deps.store.begin().await?;
    match tx.users().insert(user).await {
        Ok(()) => {}
        Err(StorageError::Conflict { what }) if what == "username" => {
            return Err(HandlerError::from(username_taken()))
        }
        Err(StorageError::Conflict { .. }) => {
            return Err(HandlerError::from(CommandError::Conflict {
                code: "email_taken",
                detail: "an account with this email address exists".into(),
                field: Some("email".into()),
            }))
        }
        Err(e) => return Err(e.into()),
    }
    deps.outbox
        .enqueue(&tx, &meta, registered(&record, m.locale))
        .await?;
    deps.outbox
        .audit(
            &tx,
            &meta,
            "user.invited",
            Some(record.id),
            serde_json::json!({"roles": roles}),
        )
        .await?;
    crate::access::grant_roles(&tx, now, &meta, record.id, &roles, Some(actor)).await?;
    issue_token_mail(
        &deps,
        &tx,
        &meta,
        &record,
        TokenPurpose::ResetPassword,
        None,
        true,
    )
    .await?;
    tx.commit().await?;
    deps.outbox.wake();
    tracing::info!(user_id = %record.id, by = %actor, "account invited");
    Ok(AdminUser {
        id: record.id,
        email: record.email.as_str().to_owned(),
        username: record.username.as_ref().map(|u| u.as_str().to_owned()),
        status: UserStatus::Unverified,
        roles,
        created_at: now,
        last_login_at: None,
    })
}

pub(super) async fn force_logout(deps: Arc<Deps>, m: ForceLogout) -> Result<(), HandlerError> {
    let actor = &m.caller;
    deps.access.require_caller(actor, "users:block").await?;
    if deps.store.users().by_id(m.user_id).await?.is_none() {
        return Err(HandlerError::from(
            keyward_messages::access::user_not_found(),
        ));
    }
    let now = (deps.clock)();
    let meta = m.meta.acting_as(actor);
    let tx = deps.store.begin().await?;
    let ended = deps
        .sessions
        .ender()
        .end_all(
            &tx,
            now,
            &meta,
            m.user_id,
            None,
            RevokeReason::RevokedByAdmin,
        )
        .await?;
    tx.commit().await?;
    deps.sessions.ended(&ended);
    deps.outbox.wake();
    tracing::info!(user_id = %m.user_id, by = ?actor.user_id(), by_client = ?actor.client_id(), sessions = ended.len(), "every session ended by an administrator");
    Ok(())
}
