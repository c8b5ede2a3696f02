//! Operations behind the admin CLI (`keyward admin create-user`, `keyward keys …`). They work
//! on storage directly, without a running node, and keep the same rules as the API: password
//! policy, argon2id, and the event in the same transaction.

use keyward_config::Settings;
use keyward_messages::commands::Locale;
use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
use keyward_messages::password_policy::PasswordPolicy;
use keyward_messages::{BlockReason, Email, RequestMeta, UserId};
use keyward_storage::{NewUser, StorageError, Store};
use uuid::Uuid;

use crate::hasher::hash_blocking;
use crate::system::hash_params;
use crate::StartError;

/// Creates a verified user with optional roles; returns its id.
pub async fn create_user(
    settings: &Settings,
    store: &Store,
    email: &str,
    password: &str,
    roles: &[String],
) -> Result<UserId, StartError> {
    let email = Email::parse("--email", email)
        .map_err(|e| StartError::Config(format!("--email: {}", e.message)))?;
    let policy = PasswordPolicy {
        min_length: settings.passwords.min_length,
        max_length: settings.passwords.max_length,
    };
    policy
        .check("password", password, &[email.as_str(), email.local_part()])
        .map_err(|e| StartError::Config(format!("password: {}", e.message)))?;
    for r in roles {
        if r.is_empty()
            || r.len() > 64
            || !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err(StartError::Config(format!(
                "--role {r:?}: use 1-64 letters, digits, '_', '-', '.', ':'"
            )));
        }
    }
    let hash = hash_blocking(hash_params(settings), password).map_err(StartError::Config)?;
    let now = chrono::Utc::now();
    let id = UserId::new();
    let tx = store.begin().await?;
    match tx
        .insert_user(NewUser {
            id,
            email: email.as_str().to_owned(),
            email_normalized: email.normalized(),
            username: None,
            username_normalized: None,
            password_hash: hash,
            email_verified: true,
            locale: Locale::En.as_str().to_owned(),
            now,
        })
        .await
    {
        Ok(()) => {}
        Err(StorageError::Conflict { .. }) => {
            return Err(StartError::Config(format!(
                "--email: {email} already has an account"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    for r in roles {
        tx.grant_role(id, r, now).await?;
    }
    let ev = DomainEvent::UserRegistered {
        user_id: id,
        email: email.as_str().to_owned(),
        username: None,
        locale: Locale::En,
    };
    tx.enqueue(&Envelope::new(
        Uuid::now_v7(),
        now,
        None,
        &Outgoing::Event(ev),
    ))
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Blocks or unblocks the account of `email` (see `accounts::blocking::apply`); false when it
/// already was in that state.
pub async fn set_blocked(
    store: &Store,
    email: &str,
    blocked: bool,
    reason: Option<String>,
) -> Result<bool, StartError> {
    let email = Email::parse("--email", email)
        .map_err(|e| StartError::Config(format!("--email: {}", e.message)))?;
    let reason = match reason {
        Some(r) => BlockReason::parse("--reason", &r)
            .map_err(|e| StartError::Config(format!("--reason: {}", e.message)))?,
        None => None,
    };
    let user = store
        .user_by_email(&email.normalized())
        .await?
        .ok_or_else(|| StartError::Config(format!("--email: no account has {email}")))?;
    let request_id = Uuid::new_v4().to_string();
    let meta = RequestMeta {
        correlation_id: request_id.clone(),
        request_id,
        client_ip: None,
        user_agent: Some("keyward admin (CLI)".into()),
    };
    let tx = store.begin().await?;
    let changed = crate::accounts::blocking::apply(
        &tx,
        chrono::Utc::now(),
        &meta,
        user.id,
        blocked,
        reason,
        None,
    )
    .await
    .map_err(|e| StartError::Config(format!("could not change the account: {e}")))?;
    tx.commit().await?;
    Ok(changed.is_some())
}
