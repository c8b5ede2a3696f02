//! Login: throttled per account and per client IP, the same reply and cost for unknown
//! accounts, and a session opened through the sessions context on success.

use std::sync::Arc;

use keyward_messages::commands::*;
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::mfa::LoginReply;
use keyward_messages::{codes, CommandError, LoginId, RequestMeta};
use keyward_storage::UserRecord;

use super::policy::{invalid_credentials, throttle_delay};
use super::AccountsDeps as Deps;
use crate::error::HandlerError;
use crate::sessions::Assurance;

/// The throttle keys of a login attempt: the account (its id when it exists, else the login as
/// typed, so unknown accounts throttle exactly like known ones) and the client IP.
fn throttle_keys(m: &Login, user: Option<&UserRecord>) -> (String, Option<String>) {
    let account = match (user, &m.login) {
        (Some(u), _) => account_key(u.id),
        (None, LoginId::Email(e)) => format!("login:{}", e.normalized()),
        (None, LoginId::Username(u)) => format!("login:{}", u.normalized()),
    };
    (account, m.meta.client_ip.map(|ip| format!("ip:{ip}")))
}

/// Seconds to wait when `key` is throttled under `limit`.
async fn throttled(deps: &Deps, key: &str, limit: u32) -> Result<Option<u64>, HandlerError> {
    Ok(failures_and_delay(deps, key, limit).await?.1)
}

/// Recent failures under `key`, and the wait they impose (if any).
async fn failures_and_delay(
    deps: &Deps,
    key: &str,
    limit: u32,
) -> Result<(u64, Option<u64>), HandlerError> {
    let now = (deps.clock)();
    let t = &deps.throttle;
    let (failures, latest) = deps
        .store
        .login_failures()
        .since(key, now - t.window)
        .await?;
    let delay = throttle_delay(failures, latest, limit, t.base_delay, t.window, now);
    Ok((failures, delay))
}

/// The login throttle's key of account `user`: failures of its password, second factors and
/// link proofs count together under it.
pub(crate) fn account_key(user: keyward_messages::UserId) -> String {
    format!("account:{user}")
}

/// Seconds account `user` must wait: failures of its password, second factors and link
/// proofs count together under its account key.
pub(crate) async fn account_throttled(
    store: &keyward_storage::Store,
    now: chrono::DateTime<chrono::Utc>,
    t: &super::ThrottlePolicy,
    user: keyward_messages::UserId,
) -> Result<Option<u64>, HandlerError> {
    let (failures, latest) = store
        .login_failures()
        .since(&account_key(user), now - t.window)
        .await?;
    Ok(throttle_delay(
        failures,
        latest,
        t.account_max_failures,
        t.base_delay,
        t.window,
        now,
    ))
}

/// Counts a failed proof against account `user`, with `user.login_failed`.
pub(crate) async fn count_account_failure(
    store: &keyward_storage::Store,
    outbox: &crate::outbox::OutboxWriter,
    meta: &RequestMeta,
    now: chrono::DateTime<chrono::Utc>,
    user: keyward_messages::UserId,
) -> Result<(), HandlerError> {
    let tx = store.begin().await?;
    tx.login_failures().record(&account_key(user), now).await?;
    let ev = DomainEvent::UserLoginFailed {
        user_id: user,
        ip: meta.client_ip.map(|i| i.to_string()),
        user_agent: meta.user_agent.clone(),
    };
    outbox.enqueue(&tx, meta, Outgoing::Event(ev)).await?;
    tx.commit().await?;
    outbox.wake();
    Ok(())
}

async fn login(deps: Arc<Deps>, m: Login) -> Result<LoginReply, HandlerError> {
    // Shed before any database work: under overload a refused login must cost almost nothing,
    // or it slows the logins that were admitted.
    let place = deps.hasher.reserve()?;
    let user = match &m.login {
        LoginId::Email(e) => deps.store.users().by_email(e).await,
        LoginId::Username(u) => deps.store.users().by_username(u).await,
    }?;
    let (account_key, ip_key) = throttle_keys(&m, user.as_ref());
    let ip = m.meta.client_ip.map(|i| i.to_string());

    // Throttled: the same answer whether or not the password is right, checked before it is.
    let (account_failures, mut wait) =
        failures_and_delay(&deps, &account_key, deps.throttle.account_max_failures).await?;
    if let Some(k) = &ip_key {
        let by_ip = throttled(&deps, k, deps.throttle.ip_max_failures).await?;
        wait = wait.max(by_ip);
    }
    if let Some(retry_after_secs) = wait {
        let user_id = user.as_ref().map(|u| u.id);
        note_throttled(&deps, &m.meta, user_id, &account_key, ip, retry_after_secs).await?;
        deps.wake_relay();
        tracing::info!(retry_after_secs, "login throttled");
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }

    let verified = match &user {
        Some(u) => {
            deps.hasher
                .verify_reserved(place, m.password.expose(), &u.password_hash)
                .await?
        }
        None => {
            deps.hasher.dummy_verify(place, m.password.expose()).await?;
            crate::hasher::Verified {
                matches: false,
                needs_rehash: false,
            }
        }
    };
    let user_id = user.as_ref().map(|u| u.id);
    let Some(user) = user.filter(|_| verified.matches) else {
        record_failure(&deps, &m, &account_key, ip_key.as_deref(), user_id).await?;
        return Err(HandlerError::from(invalid_credentials()));
    };
    // Only a caller who knows the password learns the account's state.
    if user.blocked {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::ACCOUNT_BLOCKED,
            detail: "this account is blocked".into(),
        }));
    }
    if !user.email_verified {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::EMAIL_NOT_VERIFIED,
            detail: "confirm your email address first; POST /v1/auth/verify-email/resend sends a new link".into(),
        }));
    }
    // A rehash the pool has no room for waits for a later login; this one goes ahead.
    let rehash = if verified.needs_rehash {
        deps.hasher.hash(m.password.expose()).await.ok()
    } else {
        None
    };
    // A user with a second factor gets a challenge instead of tokens; the failures are
    // cleared only when the second step passes.
    if let Some(challenge) = crate::mfa::challenge(&deps.store, &deps.clock, &user).await? {
        if let Some(hash) = &rehash {
            // The password was right: its new hash is kept whatever the second step does.
            deps.store
                .users()
                .set_password_hash(user.id, hash, (deps.clock)())
                .await?;
        }
        tracing::info!(user_id = %user.id, "password accepted; second factor required");
        return Ok(LoginReply::Mfa(challenge));
    }
    // The account's failures are cleared in the session's transaction, when it has any.
    let clear = (account_failures > 0).then_some(account_key.as_str());
    let pair = deps
        .sessions
        .open(&user, &m.meta, rehash, clear, Assurance::password())
        .await?;
    // The login may have cancelled a pending deletion, which the profile shows.
    deps.profiles.forget(user.id);
    tracing::info!(user_id = %user.id, session_id = %pair.session_id, "login succeeded");
    Ok(LoginReply::Tokens(pair))
}

/// Counts a failed login under both keys, with `user.login_failed` (and `user.throttled` when
/// this failure reaches the limit) for an existing account, in one transaction.
async fn record_failure(
    deps: &Deps,
    m: &Login,
    account_key: &str,
    ip_key: Option<&str>,
    user_id: Option<keyward_messages::UserId>,
) -> Result<(), HandlerError> {
    let now = (deps.clock)();
    let ip = m.meta.client_ip.map(|i| i.to_string());
    let tx = deps.store.begin().await?;
    tx.login_failures().record(account_key, now).await?;
    if let Some(k) = ip_key {
        tx.login_failures().record(k, now).await?;
    }
    let ev = DomainEvent::UserLoginFailed {
        // No account, no user id: a nil one of the same length for the decoy.
        user_id: user_id.unwrap_or(keyward_messages::UserId(uuid::Uuid::nil())),
        ip: ip.clone(),
        user_agent: m.meta.user_agent.clone(),
    };
    match user_id {
        Some(_) => {
            // The event's audit line is written with it.
            deps.outbox
                .enqueue(&tx, &m.meta, Outgoing::Event(ev))
                .await?
        }
        None => {
            // No account, so no event; the attempt still belongs in the audit log. The event's
            // row is written as a decoy, never sent, so that both failures write the same rows.
            let details = serde_json::json!({ "login": account_key.trim_start_matches("login:") });
            deps.outbox
                .audit(&tx, &m.meta, "user.login_failed", None, details)
                .await?;
            deps.outbox
                .enqueue_decoy(&tx, &m.meta, Outgoing::Event(ev))
                .await?
        }
    }
    tx.commit().await?;
    // NOTE: known and unknown logins take the same steps here, so timing does not tell them
    // apart; only a known account's event is sent.
    if let Some(retry_after_secs) =
        throttled(deps, account_key, deps.throttle.account_max_failures).await?
    {
        note_throttled(deps, &m.meta, user_id, account_key, ip, retry_after_secs).await?;
        deps.wake_relay();
    }
    // NOTE: not woken: `user.login_failed` goes out at the relay's next tick (within half a
    // second). Waking it now would run its reads and publish beside this reply, which a
    // failure for an unknown account (no event) does not have: a timing tell.
    tracing::info!(user_id = ?user_id, "login failed");
    Ok(())
}

/// Records that a login is throttled: `user.throttled` (and its audit line) for an existing
/// account, an audit line naming the login as typed for an unknown one.
async fn note_throttled(
    deps: &Deps,
    meta: &RequestMeta,
    user_id: Option<keyward_messages::UserId>,
    account_key: &str,
    ip: Option<String>,
    retry_after_secs: u64,
) -> Result<(), HandlerError> {
    let tx = deps.store.begin().await?;
    match user_id {
        Some(user_id) => {
            let ev = DomainEvent::UserThrottled {
                user_id,
                ip,
                retry_after_secs,
            };
            deps.outbox.enqueue(&tx, meta, Outgoing::Event(ev)).await?;
        }
        None => {
            let details = serde_json::json!({
                "login": account_key.trim_start_matches("login:"),
                "retry_after_secs": retry_after_secs,
            });
            deps.outbox
                .audit(&tx, meta, "user.throttled", None, details)
                .await?;
        }
    }
    Ok(tx.commit().await?)
}

/// Login, counted by outcome.
pub(super) async fn login_counted(deps: Arc<Deps>, m: Login) -> Result<LoginReply, HandlerError> {
    let answer = login(deps.clone(), m)
        .await
        .map_err(HandlerError::into_reply);
    let outcome = super::policy::login_outcome(answer.as_ref().map(|_| ()));
    deps.metrics.logins.with_label_values(&[outcome]).inc();
    Ok(answer?)
}
