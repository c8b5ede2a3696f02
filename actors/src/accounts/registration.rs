//! Registration and email verification: every registration of an unverified address gets a
//! link of its own, and the link the mailbox's owner uses decides the account.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_messages::commands::*;
use keyward_messages::events::{DomainEvent, EmailJob, EmailTemplate, Outgoing};
use keyward_messages::{codes, CommandError, RequestMeta};
use keyward_storage::{
    NewEmailToken, NewUser, Registration, StorageError, TokenPurpose, Tx, UserRecord,
};
use secrecy::ExposeSecret;

use super::policy::{reset_link, verification_link};
use super::AccountsDeps as Deps;
use crate::error::HandlerError;
use crate::tokens::{random_token, sha256_hex};

pub(super) fn email_job(
    to: &str,
    template: EmailTemplate,
    locale: Locale,
    link: Option<String>,
) -> Outgoing {
    let mut variables = BTreeMap::new();
    if let Some(l) = link {
        variables.insert("link".to_owned(), l.into());
    }
    Outgoing::Email(EmailJob {
        to: to.to_owned(),
        template: template.as_str().to_owned(),
        locale,
        variables,
        delivery: None,
    })
}

/// Writes a fresh one-time token and its email. A reset link ends the older ones; a
/// verification link does not, since each completes its own registration (the first one used
/// ends the others), so no registration can cancel another's link.
pub(super) async fn issue_email_token(
    deps: &Deps,
    tx: &Tx,
    meta: &RequestMeta,
    user: &UserRecord,
    purpose: TokenPurpose,
    registration: Option<Registration>,
) -> Result<(), HandlerError> {
    issue_token_mail(deps, tx, meta, user, purpose, registration, false).await
}

/// How long an invitation's link lives.
pub(super) const INVITATION_TTL: chrono::Duration = chrono::Duration::days(7);

/// [`issue_email_token`], with an invitation's template and lifetime for a reset token
/// (`invitation`).
pub(super) async fn issue_token_mail(
    deps: &Deps,
    tx: &Tx,
    meta: &RequestMeta,
    user: &UserRecord,
    purpose: TokenPurpose,
    registration: Option<Registration>,
    invitation: bool,
) -> Result<(), HandlerError> {
    let now = (deps.clock)();
    let token = random_token();
    let (ttl, template, link) = match purpose {
        TokenPurpose::ResetPassword if invitation => (
            INVITATION_TTL,
            EmailTemplate::Invitation,
            reset_link(&deps.public_url, &token),
        ),
        TokenPurpose::VerifyEmail => (
            deps.verification_ttl,
            EmailTemplate::VerifyEmail,
            verification_link(&deps.public_url, &token),
        ),
        TokenPurpose::ResetPassword => (
            deps.reset_ttl,
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

/// A new, unverified account: the row to insert, and the record it reads back as.
pub(super) fn unverified_account(
    email: &keyward_messages::Email,
    username: Option<keyward_messages::Username>,
    password_hash: String,
    locale: Locale,
    now: chrono::DateTime<chrono::Utc>,
) -> (NewUser, UserRecord) {
    let user = NewUser {
        id: keyward_messages::UserId::new(),
        email: email.clone(),
        username,
        password_hash,
        email_verified: false,
        locale: locale.as_str().to_owned(),
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
        password_via_reset: false,
    };
    (user, record)
}

/// `user.registered` for a new account.
pub(super) fn registered(record: &UserRecord, locale: Locale) -> Outgoing {
    Outgoing::Event(DomainEvent::UserRegistered {
        user_id: record.id,
        email: record.email.as_str().to_owned(),
        username: record.username.as_ref().map(|u| u.as_str().to_owned()),
        locale,
        method: "password".to_owned(),
    })
}

pub(super) fn username_taken() -> CommandError {
    CommandError::Conflict {
        code: codes::USERNAME_TAKEN,
        detail: "this username is taken; choose another".into(),
        field: Some("username".into()),
    }
}

/// Requests that mail an address (register, resend, forgot), counted per target address and
/// per client IP over the last hour: over either limit → 429. Every request counts, whether or
/// not the address has an account, so the answer says nothing about accounts; an inbox cannot
/// be flooded, nor the mail relay used to flood many.
pub(super) async fn mail_budget(
    deps: &Deps,
    meta: &keyward_messages::RequestMeta,
    email: &keyward_messages::Email,
) -> Result<(), HandlerError> {
    let t = &deps.throttle;
    let mut keys = vec![(
        format!("mail-to:{}", email.normalized()),
        t.mail_per_address,
    )];
    if let Some(ip) = meta.client_ip {
        keys.push((format!("mail-ip:{ip}"), t.mail_per_ip));
    }
    super::budget::spend_hourly(&deps.store, (deps.clock)(), &keys).await
}

pub(super) async fn register(deps: Arc<Deps>, m: Register) -> Result<(), HandlerError> {
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
        // A name given up by a rename stays its former owner's for a while.
        if deps
            .store
            .profiles()
            .reserved_by(u, (deps.clock)())
            .await?
            .is_some()
        {
            return Err(HandlerError::from(username_taken()));
        }
    }
    mail_budget(&deps, &m.meta, &m.email).await?;
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
    let (user, record) = unverified_account(
        &m.email,
        registration.username.clone(),
        registration.password_hash.clone(),
        m.locale,
        now,
    );
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
    deps.outbox
        .enqueue(&tx, &m.meta, registered(&record, m.locale))
        .await?;
    deps.access
        .grant_defaults(&tx, now, &m.meta, record.id)
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

pub(super) async fn verify_email(
    deps: Arc<Deps>,
    m: VerifyEmail,
) -> Result<EmailVerified, HandlerError> {
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
    deps.index.sync(&tx, user_id).await?;
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
    deps.profiles.forget(user_id);
    deps.wake_relay();
    Ok(EmailVerified {
        user_id,
        email: user.email.into(),
        email_verified: true,
    })
}

pub(super) async fn resend(deps: Arc<Deps>, m: ResendVerification) -> Result<(), HandlerError> {
    mail_budget(&deps, &m.meta, &m.email).await?;
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
