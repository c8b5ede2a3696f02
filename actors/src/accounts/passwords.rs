//! Forgotten, reset and changed passwords: each ends the sessions it must and mails a notice.

use std::sync::Arc;

use keyward_messages::commands::*;
use keyward_messages::events::{DomainEvent, EmailTemplate, Outgoing, RevokeReason};
use keyward_messages::{codes, CommandError, FieldError, RequestMeta};
use keyward_storage::{TokenPurpose, Tx, UserRecord};
use secrecy::ExposeSecret;

use super::registration::{email_job, issue_email_token};
use super::AccountsDeps as Deps;
use crate::error::HandlerError;
use crate::tokens::sha256_hex;

pub(super) async fn forgot(deps: Arc<Deps>, m: ForgotPassword) -> Result<(), HandlerError> {
    super::registration::mail_budget(&deps, &m.meta, &m.email).await?;
    if let Some(user) = deps.store.users().by_email(&m.email).await? {
        let tx = deps.store.begin().await?;
        issue_email_token(
            &deps,
            &tx,
            &m.meta,
            &user,
            TokenPurpose::ResetPassword,
            None,
        )
        .await?;
        tx.commit().await?;
        deps.wake_relay();
    }
    Ok(())
}

fn policy_context(user: &UserRecord) -> Vec<&str> {
    let mut c = vec![user.email.as_str()];
    if let Some((local, _)) = user.email.as_str().rsplit_once('@') {
        c.push(local);
    }
    if let Some(u) = &user.username {
        c.push(u.as_str());
    }
    c
}

pub(super) async fn reset_password(deps: Arc<Deps>, m: ResetPassword) -> Result<(), HandlerError> {
    let now = (deps.clock)();
    let hash_of_token = sha256_hex(m.token.expose_secret());
    let invalid = || {
        CommandError::invalid_token("the reset link is invalid, used or expired; ask for a new one")
    };
    // Policy and hashing happen before the transaction: argon2 must not hold a connection
    // (SQLite has one). A rejected password leaves the link usable.
    let user_id = deps
        .store
        .users()
        .email_token_user(TokenPurpose::ResetPassword, &hash_of_token, now)
        .await?
        .ok_or_else(invalid)?;
    let user = deps
        .store
        .users()
        .by_id(user_id)
        .await?
        .ok_or_else(invalid)?;
    deps.password_policy
        .check("password", m.password.expose(), &policy_context(&user))
        .map_err(|e| CommandError::invalid(vec![e]))?;
    let hash = deps.hasher.hash(m.password.expose()).await?;

    let tx = deps.store.begin().await?;
    // Consuming is conditional: of two requests with one link, only one gets here.
    if tx
        .users()
        .consume_email_token(TokenPurpose::ResetPassword, &hash_of_token, now)
        .await?
        .map(|t| t.user_id)
        != Some(user_id)
    {
        return Err(HandlerError::from(invalid()));
    }
    tx.users().set_password_hash(user_id, &hash, now).await?;
    // A password from an email link proves the mailbox, nothing more: with it, an email code
    // is not a second kind of proof.
    tx.users().set_password_via_reset(user_id, true).await?;
    // Proving control of the mailbox also verifies it, and ends the registrations still
    // waiting for their links: this password wins.
    if !user.email_verified {
        tx.users().set_email_verified(user_id, now).await?;
        deps.index.sync(&tx, user_id).await?;
        tx.users()
            .delete_email_tokens(user_id, TokenPurpose::VerifyEmail, None)
            .await?;
    }
    tx.users()
        .invalidate_email_tokens(user_id, TokenPurpose::ResetPassword, now)
        .await?;
    tx.login_failures()
        .clear(&super::account_key(user_id))
        .await?;
    let ended = end_sessions_after_password(
        &deps,
        &tx,
        &m.meta,
        &user,
        None,
        "reset",
        RevokeReason::PasswordReset,
    )
    .await?;
    tx.commit().await?;
    deps.sessions.ended(&ended);
    deps.profiles.forget(user_id);
    deps.wake_relay();
    tracing::info!(user_id = %user_id, "password reset");
    Ok(())
}

/// After a password change or reset: ends the user's sessions (all but `keep`) and writes
/// `user.password_changed`, one `session.revoked` per ended session, and the notice email.
/// Returns the ended sessions.
async fn end_sessions_after_password(
    deps: &Deps,
    tx: &Tx,
    meta: &RequestMeta,
    user: &UserRecord,
    keep: Option<keyward_messages::SessionId>,
    via: &str,
    reason: RevokeReason,
) -> Result<Vec<keyward_messages::SessionId>, HandlerError> {
    let ev = DomainEvent::UserPasswordChanged {
        user_id: user.id,
        via: via.to_owned(),
    };
    deps.outbox.enqueue(tx, meta, Outgoing::Event(ev)).await?;
    let ended = deps
        .sessions
        .ender()
        .end_all(tx, (deps.clock)(), meta, user.id, keep, reason)
        .await?;
    let notice = email_job(
        user.email.as_str(),
        EmailTemplate::PasswordChanged,
        Locale::parse(&user.locale),
        None,
    );
    deps.outbox.enqueue(tx, meta, notice).await?;
    Ok(ended)
}

pub(super) async fn change_password(
    deps: Arc<Deps>,
    m: ChangePassword,
) -> Result<(), HandlerError> {
    let p = m.principal;
    crate::mfa::require_aal2(&deps.store, &p).await?;
    let user = deps.store.users().by_id(p.user_id).await?.ok_or_else(|| {
        CommandError::unauthenticated(codes::UNAUTHENTICATED, "the account no longer exists")
    })?;
    let v = deps
        .hasher
        .verify(m.current_password.expose(), &user.password_hash)
        .await?;
    if !v.matches {
        return Err(HandlerError::from(CommandError::invalid(vec![
            FieldError::new(
                "current_password",
                "incorrect",
                "the current password is incorrect",
            ),
        ])));
    }
    deps.password_policy
        .check(
            "new_password",
            m.new_password.expose(),
            &policy_context(&user),
        )
        .map_err(|e| CommandError::invalid(vec![e]))?;
    let hash = deps.hasher.hash(m.new_password.expose()).await?;
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    tx.users().set_password_hash(user.id, &hash, now).await?;
    tx.users().set_password_via_reset(user.id, false).await?;
    let ended = end_sessions_after_password(
        &deps,
        &tx,
        &m.meta,
        &user,
        Some(p.session_id),
        "change",
        RevokeReason::PasswordChanged,
    )
    .await?;
    tx.commit().await?;
    deps.sessions.ended(&ended);
    deps.wake_relay();
    tracing::info!(user_id = %user.id, "password changed");
    Ok(())
}
