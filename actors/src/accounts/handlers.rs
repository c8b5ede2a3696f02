//! One handler per message of the accounts context.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_messages::commands::*;
use keyward_messages::events::{DomainEvent, EmailJob, EmailTemplate, Outgoing, RevokeReason};
use keyward_messages::{codes, CommandError, FieldError, LoginId, RequestMeta};
use keyward_storage::{
    NewEmailToken, NewUser, Registration, StorageError, TokenPurpose, Tx, UserRecord,
};
use secrecy::ExposeSecret;

use super::policy::{invalid_credentials, reset_link, throttle_delay, verification_link};
use super::Accounts;
use crate::error::HandlerError;
use crate::sessions::issue::open_session;
use crate::system::Deps;
use crate::tokens::{random_token, sha256_hex};

fn email_job(to: &str, template: EmailTemplate, locale: Locale, link: Option<String>) -> Outgoing {
    let mut variables = BTreeMap::new();
    if let Some(l) = link {
        variables.insert("link".to_owned(), l);
    }
    Outgoing::Email(EmailJob {
        to: to.to_owned(),
        template,
        locale,
        variables,
    })
}

/// Writes a fresh one-time token and its email. A reset link ends the older ones; a
/// verification link does not, since each completes its own registration (the first one used
/// ends the others), so no registration can cancel another's link.
async fn issue_email_token(
    deps: &Deps,
    tx: &Tx,
    meta: &RequestMeta,
    user: &UserRecord,
    purpose: TokenPurpose,
    registration: Option<Registration>,
) -> Result<(), HandlerError> {
    let now = (deps.clock)();
    let token = random_token();
    let (ttl, template, link) = match purpose {
        TokenPurpose::VerifyEmail => (
            deps.tokens.verification_ttl,
            EmailTemplate::VerifyEmail,
            verification_link(&deps.public_url, &token),
        ),
        TokenPurpose::ResetPassword => (
            deps.tokens.reset_ttl,
            EmailTemplate::PasswordReset,
            reset_link(&deps.public_url, &token),
        ),
    };
    if purpose == TokenPurpose::ResetPassword {
        tx.users()
            .invalidate_email_tokens(user.id, purpose, now)
            .await?;
    }
    tx.users()
        .insert_email_token(NewEmailToken {
            user_id: user.id,
            purpose,
            token_hash: sha256_hex(&token),
            now,
            expires_at: now + ttl,
            registration,
        })
        .await?;
    let job = email_job(
        user.email.as_str(),
        template,
        Locale::parse(&user.locale),
        Some(link),
    );
    Ok(deps.outbox.enqueue(tx, meta, job).await?)
}

fn username_taken() -> CommandError {
    CommandError::Conflict {
        code: codes::USERNAME_TAKEN,
        detail: "this username is taken; choose another".into(),
        field: Some("username".into()),
    }
}

async fn register(deps: Arc<Deps>, m: Register) -> Result<(), HandlerError> {
    if deps.danger_test_panic_on_register.as_deref() == Some(m.email.as_str()) {
        // NOTE: a test-only fault, armed only by the test harness, proving the handler edge.
        #[allow(clippy::panic)]
        {
            panic!("danger_test_panic_on_register for this email");
        }
    }
    let mut context = vec![m.email.as_str(), m.email.local_part()];
    if let Some(u) = &m.username {
        context.push(u.as_str());
    }
    deps.password_policy
        .check("password", m.password.expose(), &context)
        .map_err(|e| CommandError::invalid(vec![e]))?;
    if let Some(u) = &m.username {
        let holder = deps.store.users().by_username(u).await?;
        // An unverified account belongs to nobody yet, so its name is free for its next
        // registration; a verified account's name is taken like any other.
        let own_unverified = |h: &UserRecord| !h.email_verified && h.email == m.email;
        if holder.is_some_and(|h| !own_unverified(&h)) {
            return Err(HandlerError::from(username_taken()));
        }
    }
    // Hash before looking the email up, so every branch costs the same.
    let registration = Registration {
        password_hash: deps.hasher.hash(m.password.expose()).await?,
        username: m.username.clone(),
    };
    let existing = deps.store.users().by_email(&m.email).await?;
    if let Some(existing) = existing {
        return register_existing(&deps, &m, &existing, registration).await;
    }
    let now = (deps.clock)();
    let user = NewUser {
        id: keyward_messages::UserId::new(),
        email: m.email.clone(),
        username: registration.username.clone(),
        password_hash: registration.password_hash.clone(),
        email_verified: false,
        locale: m.locale.as_str().to_owned(),
        now,
    };
    let record = UserRecord {
        id: user.id,
        email: user.email.clone(),
        username: user.username.clone(),
        password_hash: String::new(),
        email_verified: false,
        locale: user.locale.clone(),
        blocked: false,
        created_at: now,
    };
    let tx = deps.store.begin().await?;
    match tx.users().insert(user).await {
        Ok(()) => {}
        Err(StorageError::Conflict { what }) if what == "username" => {
            return Err(HandlerError::from(username_taken()))
        }
        // Lost a race with a registration of the same email: register with the winner's account.
        Err(StorageError::Conflict { .. }) => {
            tx.rollback().await?;
            let winner = deps.store.users().by_email(&m.email).await?;
            return match winner {
                Some(w) => register_existing(&deps, &m, &w, registration).await,
                None => Ok(()),
            };
        }
        Err(e) => return Err(e.into()),
    }
    let ev = DomainEvent::UserRegistered {
        user_id: record.id,
        email: record.email.as_str().to_owned(),
        username: record.username.as_ref().map(|u| u.as_str().to_owned()),
        locale: m.locale,
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Event(ev))
        .await?;
    issue_email_token(
        &deps,
        &tx,
        &m.meta,
        &record,
        TokenPurpose::VerifyEmail,
        Some(registration),
    )
    .await?;
    tx.commit().await?;
    deps.wake_relay();
    tracing::info!(user_id = %record.id, "account registered");
    Ok(())
}

/// A registration of an address that has an account. Verified: its owner gets a notice.
/// Unverified: the account is nobody's yet, so this registration gets a verification link of
/// its own, and whichever link the mailbox's owner uses decides the password and username.
async fn register_existing(
    deps: &Deps,
    m: &Register,
    existing: &UserRecord,
    registration: Registration,
) -> Result<(), HandlerError> {
    let tx = deps.store.begin().await?;
    if existing.email_verified {
        let notice = email_job(
            existing.email.as_str(),
            EmailTemplate::AccountExists,
            Locale::parse(&existing.locale),
            None,
        );
        deps.outbox.enqueue(&tx, &m.meta, notice).await?;
    } else {
        issue_email_token(
            deps,
            &tx,
            &m.meta,
            existing,
            TokenPurpose::VerifyEmail,
            Some(registration),
        )
        .await?;
    }
    tx.commit().await?;
    deps.wake_relay();
    Ok(())
}

async fn verify_email(deps: Arc<Deps>, m: VerifyEmail) -> Result<EmailVerified, HandlerError> {
    let now = (deps.clock)();
    let invalid = || {
        CommandError::invalid_token(
            "the verification link is invalid, used or expired; ask for a new one",
        )
    };
    let hash_of_token = sha256_hex(m.token.expose_secret());
    let tx = deps.store.begin().await?;
    // NOTE: the account first: two of its links used at once then run one after the other,
    // and the second finds itself deleted (400) instead of deadlocking with the first.
    if let Some(owner) = tx
        .users()
        .email_token_user(TokenPurpose::VerifyEmail, &hash_of_token, now)
        .await?
    {
        tx.users().lock(owner).await?;
    }
    let used = tx
        .users()
        .consume_email_token(TokenPurpose::VerifyEmail, &hash_of_token, now)
        .await?
        .ok_or_else(invalid)?;
    let user_id = used.user_id;
    let user = tx.users().by_id(user_id).await?.ok_or_else(invalid)?;
    // The link proves the mailbox: its registration becomes the account's. A verified
    // account is its owner's already; no link changes it.
    if let Some(r) = used.registration.filter(|_| !user.email_verified) {
        tx.users()
            .set_password_hash(user_id, &r.password_hash, now)
            .await?;
        let kept = tx
            .users()
            .set_username(user_id, r.username.as_ref(), now)
            .await?;
        if !kept {
            tracing::info!(user_id = %user_id, "username taken meanwhile; the account has none");
        }
    }
    tx.users().set_email_verified(user_id, now).await?;
    tx.users()
        .delete_email_tokens(user_id, TokenPurpose::VerifyEmail, Some(used.id))
        .await?;
    let ev = DomainEvent::UserEmailVerified {
        user_id,
        email: user.email.as_str().to_owned(),
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Event(ev))
        .await?;
    tx.commit().await?;
    deps.profile_changed(user_id);
    deps.wake_relay();
    Ok(EmailVerified {
        user_id,
        email: user.email.into(),
        email_verified: true,
    })
}

async fn resend(deps: Arc<Deps>, m: ResendVerification) -> Result<(), HandlerError> {
    let user = deps.store.users().by_email(&m.email).await?;
    if let Some(user) = user.filter(|u| !u.email_verified) {
        let tx = deps.store.begin().await?;
        // The new link completes the latest registration, as its own link would.
        let registration = tx.users().latest_registration(user.id).await?;
        issue_email_token(
            &deps,
            &tx,
            &m.meta,
            &user,
            TokenPurpose::VerifyEmail,
            registration,
        )
        .await?;
        tx.commit().await?;
        deps.wake_relay();
    }
    Ok(())
}

async fn forgot(deps: Arc<Deps>, m: ForgotPassword) -> Result<(), HandlerError> {
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

/// The throttle keys of a login attempt: the account (its id when it exists, else the login as
/// typed, so unknown accounts throttle exactly like known ones) and the client IP.
fn throttle_keys(m: &Login, user: Option<&UserRecord>) -> (String, Option<String>) {
    let account = match (user, &m.login) {
        (Some(u), _) => format!("account:{}", u.id),
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

async fn login(deps: Arc<Deps>, m: Login) -> Result<TokenPair, HandlerError> {
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
    // The account's failures are cleared in the session's transaction, when it has any.
    let clear = (account_failures > 0).then_some(account_key.as_str());
    let pair = open_session(&deps, &user, &m.meta, rehash, clear).await?;
    tracing::info!(user_id = %user.id, session_id = %pair.session_id, "login succeeded");
    Ok(pair)
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
    if user_id.is_none() {
        // No account, so no event; the attempt still belongs in the audit log.
        let details = serde_json::json!({ "login": account_key.trim_start_matches("login:") });
        deps.outbox
            .audit(&tx, &m.meta, "user.login_failed", None, details)
            .await?;
    }
    if let Some(user_id) = user_id {
        let ev = DomainEvent::UserLoginFailed {
            user_id,
            ip: ip.clone(),
            user_agent: m.meta.user_agent.clone(),
        };
        deps.outbox
            .enqueue(&tx, &m.meta, Outgoing::Event(ev))
            .await?;
    }
    tx.commit().await?;
    // NOTE: known and unknown logins take the same steps here, so timing does not tell them
    // apart; only a known account has an event.
    if let Some(retry_after_secs) =
        throttled(deps, account_key, deps.throttle.account_max_failures).await?
    {
        note_throttled(deps, &m.meta, user_id, account_key, ip, retry_after_secs).await?;
    }
    deps.wake_relay();
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

async fn reset_password(deps: Arc<Deps>, m: ResetPassword) -> Result<(), HandlerError> {
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
    // Proving control of the mailbox also verifies it, and ends the registrations still
    // waiting for their links: this password wins.
    if !user.email_verified {
        tx.users().set_email_verified(user_id, now).await?;
        tx.users()
            .delete_email_tokens(user_id, TokenPurpose::VerifyEmail, None)
            .await?;
    }
    tx.users()
        .invalidate_email_tokens(user_id, TokenPurpose::ResetPassword, now)
        .await?;
    tx.login_failures()
        .clear(&format!("account:{user_id}"))
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
    deps.sessions_ended(&ended);
    deps.profile_changed(user_id);
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
    let now = (deps.clock)();
    let ended = tx
        .sessions()
        .revoke_all_of(user.id, keep, now, crate::sessions::reason_str(reason))
        .await?;
    let ev = DomainEvent::UserPasswordChanged {
        user_id: user.id,
        via: via.to_owned(),
    };
    deps.outbox.enqueue(tx, meta, Outgoing::Event(ev)).await?;
    for &sid in &ended {
        deps.outbox
            .enqueue(
                tx,
                meta,
                crate::outbox::session_revoked(meta, user.id, sid, reason),
            )
            .await?;
    }
    let notice = email_job(
        user.email.as_str(),
        EmailTemplate::PasswordChanged,
        Locale::parse(&user.locale),
        None,
    );
    deps.outbox.enqueue(tx, meta, notice).await?;
    Ok(ended)
}

async fn change_password(deps: Arc<Deps>, m: ChangePassword) -> Result<(), HandlerError> {
    let p = m.principal;
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
    deps.sessions_ended(&ended);
    deps.wake_relay();
    tracing::info!(user_id = %user.id, "password changed");
    Ok(())
}

async fn get_me(deps: Arc<Deps>, m: GetMe) -> Result<UserView, HandlerError> {
    let profiles = &deps.caches.profiles;
    if let Some(view) = profiles.get(m.principal.user_id) {
        return Ok(UserView::clone(&view));
    }
    let epoch = profiles.epoch();
    let u = deps
        .store
        .users()
        .by_id(m.principal.user_id)
        .await?
        .ok_or_else(|| {
            CommandError::unauthenticated(codes::UNAUTHENTICATED, "the account no longer exists")
        })?;
    let roles = deps.store.users().roles_of(u.id).await?;
    let view = UserView {
        id: u.id,
        email: u.email.into(),
        email_verified: u.email_verified,
        username: u.username.map(String::from),
        roles,
        created_at: u.created_at,
    };
    profiles.put(epoch, Arc::new(view.clone()));
    Ok(view)
}

/// Login, counted by outcome.
async fn login_counted(deps: Arc<Deps>, m: Login) -> Result<TokenPair, HandlerError> {
    let answer = login(deps.clone(), m)
        .await
        .map_err(HandlerError::into_reply);
    let outcome = super::policy::login_outcome(answer.as_ref().map(|_| ()));
    deps.metrics.logins.with_label_values(&[outcome]).inc();
    Ok(answer?)
}

async fn set_blocked(deps: Arc<Deps>, m: SetBlocked) -> Result<(), HandlerError> {
    super::blocking::set_blocked(&deps, m).await
}

crate::edge::handlers!(Accounts {
    Register => (): register;
    VerifyEmail => EmailVerified: verify_email;
    ResendVerification => (): resend;
    ForgotPassword => (): forgot;
    Login => TokenPair: login_counted;
    ResetPassword => (): reset_password;
    ChangePassword => (): change_password;
    GetMe => UserView: get_me;
    SetBlocked => (): set_blocked;
});
