//! Operations behind the admin CLI (`keyward admin create-user`, `keyward keys …`). They work
//! on storage directly, without a running node, and keep the same rules as the API: password
//! policy, argon2id, and the event in the same transaction.

use keyward_config::Settings;
use keyward_messages::commands::Locale;
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::password_policy::PasswordPolicy;
use keyward_messages::{BlockReason, Email, RequestMeta, UserId};
use keyward_storage::{NewUser, StorageError, Store};
use uuid::Uuid;

use crate::hasher::hash_blocking;
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
        keyward_messages::access::RoleName::parse("--role", r)
            .map_err(|e| StartError::Config(format!("--role {r:?}: {}", e.message)))?;
        if store.access().role(r).await?.is_none() {
            return Err(StartError::Config(format!(
                "--role {r:?}: no such role (see [[access.roles]], KEYWARD_ACCESS__PRESET, or GET /v1/admin/roles)"
            )));
        }
    }
    let hash = hash_blocking(crate::hasher::HashParams::from_settings(settings), password)
        .map_err(|e| StartError::Config(crate::error::chain(&e)))?;
    let now = chrono::Utc::now();
    let id = UserId::new();
    let tx = store.begin().await?;
    match tx
        .users()
        .insert(NewUser {
            id,
            email: email.clone(),
            username: None,
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
    let ev = DomainEvent::UserRegistered {
        user_id: id,
        email: email.as_str().to_owned(),
        username: None,
        locale: Locale::En,
        method: "password".to_owned(),
    };
    let meta = cli_meta();
    crate::outbox::enqueue_at(&tx, now, &meta, Outgoing::Event(ev)).await?;
    crate::access::grant_roles(&tx, now, &meta, id, roles, None).await?;
    crate::profiles::ProfileIndex::from_settings(settings)
        .sync(&tx, id)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// Blocks or unblocks the account of `email` (see `accounts::blocking::apply`); false when it
/// already was in that state.
pub async fn set_blocked(
    settings: &Settings,
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
        .users()
        .by_email(&email)
        .await?
        .ok_or_else(|| StartError::Config(format!("--email: no account has {email}")))?;
    let meta = cli_meta();
    let tx = store.begin().await?;
    let changed = super::blocking::apply(
        &tx,
        chrono::Utc::now(),
        &meta,
        user.id,
        super::blocking::BlockChange {
            blocked,
            reason,
            by: None,
            by_client: None,
        },
        crate::sessions::SessionEnder,
        &crate::profiles::ProfileIndex::from_settings(settings),
    )
    .await
    .map_err(|e| {
        StartError::Config(format!(
            "could not change the account: {}",
            crate::error::chain(&e)
        ))
    })?;
    tx.commit().await?;
    Ok(changed.is_some())
}

/// What `keyward migrate` prints about accounts the canonical-email migration left at their
/// stored address (two accounts sharing one mailbox are never merged silently); None when
/// there is nothing left to resolve.
pub async fn email_conflict_report(store: &Store) -> Result<Option<String>, StartError> {
    use keyward_storage::{EmailConflictReason, EmailConflictRecord};
    use std::fmt::Write as _;

    let rows = store.users().email_canonical_conflicts().await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let line = |out: &mut String, r: &EmailConflictRecord| {
        let mut state = vec![if r.email_verified {
            "verified"
        } else {
            "unverified"
        }];
        if r.blocked {
            state.push("blocked");
        }
        let _ = writeln!(
            out,
            "    {}  {}  ({})",
            r.user_id,
            r.email,
            state.join(", ")
        );
    };
    let mut out = format!(
        "WARNING: {} account(s) were left at their stored email address when addresses moved \
         to one canonical form per mailbox:\n",
        rows.len()
    );
    let mut groups: Vec<(&str, Vec<&EmailConflictRecord>)> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.reason == EmailConflictReason::Collision)
    {
        let key = r.canonical.as_deref().unwrap_or_default();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    for (canonical, group) in &groups {
        let _ = writeln!(
            out,
            "\n  collision: one mailbox, {canonical}, has these accounts:"
        );
        for r in group {
            line(&mut out, r);
        }
    }
    let undeliverable: Vec<_> = rows
        .iter()
        .filter(|r| r.reason == EmailConflictReason::Undeliverable)
        .collect();
    if !undeliverable.is_empty() {
        out.push_str("\n  undeliverable: these stored addresses are not accepted any more:\n");
        for r in undeliverable {
            line(&mut out, r);
        }
    }
    out.push_str(
        "\nWhat to do: for each shared mailbox, decide which account owns it and block or delete \
         the others (users table, by id), or correct an address that was mistyped; give each \
         undeliverable account a deliverable address, or block or delete it. Until then, sign-in, \
         password reset and registration with that mailbox reach only the account whose stored \
         address already is the canonical one, if any. `keyward migrate` lists what is still \
         unresolved.\n",
    );
    Ok(Some(out))
}

/// Who a CLI command is, in events and the audit log.
fn cli_meta() -> RequestMeta {
    let request_id = Uuid::new_v4().to_string();
    RequestMeta {
        correlation_id: request_id.clone(),
        request_id,
        client_ip: None,
        user_agent: Some("keyward admin (CLI)".into()),
        actor: None,
        actor_client: None,
    }
}

/// Creates a service client (`keyward admin create-client`): its id and secret, shown once.
pub async fn create_client(
    store: &Store,
    name: &str,
    scopes: &[String],
) -> Result<keyward_messages::access::ClientCreated, StartError> {
    use keyward_messages::access::{ClientName, Permission};
    let name = ClientName::parse("name", name)
        .map_err(|e| StartError::Config(format!("--name: {}", e.message)))?;
    let scopes = scopes
        .iter()
        .map(|s| Permission::parse("scope", s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Config(format!("--scope: {}", e.message)))?;
    crate::access::clients::create(store, chrono::Utc::now(), &cli_meta(), &name, &scopes, None)
        .await
        .map_err(|e| {
            StartError::Config(crate::access::clients::refusal(e).replace("--scopes", "--scope"))
        })
}
