//! Service clients: creating them (admin API and CLI), their secrets, and the
//! client_credentials grant (RFC 6749 §4.4) that gives them short-lived access tokens.
//!
//! A secret is 256 random bits, shown once; only its SHA-256 is stored (like refresh tokens:
//! a secret that long needs no slow hash, and a slow one would make the token endpoint a
//! denial-of-service lever). Wrong secrets are throttled per client and per IP like logins.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keyward_messages::access::*;
use keyward_messages::access_token::ClientClaims;
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::{codes, CommandError, FieldError, RequestMeta, UserId};
use keyward_storage::{ClientRecord, Store};
use rand::RngCore;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AccessDeps as Deps;
use crate::accounts::policy::throttle_delay;
use crate::error::HandlerError;
use crate::outbox::{audit_at, enqueue_at};
use crate::tokens::{random_token, sha256_hex};

fn invalid_client() -> HandlerError {
    HandlerError::from(CommandError::unauthenticated(
        "invalid_client",
        "client authentication failed",
    ))
}

fn new_client_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("kwc_{}", URL_SAFE_NO_PAD.encode(b))
}

fn view(c: &ClientRecord) -> ClientView {
    ClientView {
        client_id: c.id.clone(),
        name: c.name.clone(),
        scopes: c.scopes.clone(),
        created_at: c.created_at,
    }
}

/// Scopes a client may be given: Keyward's own permissions.
pub fn check_scopes(field: &str, scopes: &[Permission]) -> Result<(), FieldError> {
    match scopes.iter().find(|s| !s.is_builtin()) {
        Some(s) => Err(FieldError::new(
            field,
            "unknown_scope",
            format!(
                "{} is not a scope; use Keyward's permissions: {}",
                s.as_str(),
                BUILTIN_PERMISSIONS.join(", ")
            ),
        )),
        None if scopes.is_empty() => Err(FieldError::new(
            field,
            "required",
            "give the client at least one scope, e.g. access:check",
        )),
        None => Ok(()),
    }
}

/// Creates a client inside a transaction of its own; `by` is the administrator (none from
/// the CLI). Needs nothing of a running node, so the CLI uses it too.
pub async fn create(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
    meta: &RequestMeta,
    name: &ClientName,
    scopes: &[Permission],
    by: Option<UserId>,
) -> Result<ClientCreated, HandlerError> {
    check_scopes("scopes", scopes).map_err(|e| CommandError::invalid(vec![e]))?;
    let mut scopes: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scopes.sort();
    scopes.dedup();
    let secret = random_token();
    let record = ClientRecord {
        id: new_client_id(),
        name: name.as_str().to_owned(),
        secret_hash: sha256_hex(&secret),
        scopes,
        created_at: now,
        created_by: by,
    };
    let tx = store.begin().await?;
    tx.access().create_client(&record).await?;
    let details =
        serde_json::json!({"client_id": record.id, "name": record.name, "scopes": record.scopes});
    audit_at(&tx, now, meta, "client.created", None, details).await?;
    tx.commit().await?;
    Ok(ClientCreated {
        client: view(&record),
        client_secret: secret,
    })
}

pub(super) async fn create_client(
    deps: Arc<Deps>,
    m: CreateClient,
) -> Result<ClientCreated, HandlerError> {
    let actor = m.principal.user_id;
    super::handlers::require(&deps, actor, "clients:write").await?;
    // NOTE: an administrator hands out only what they hold.
    let held = deps.decisions.permissions(&deps.store, actor).await?;
    if let Some(s) = m.scopes.iter().find(|s| !held.contains(s.as_str())) {
        if s.is_builtin() {
            return Err(HandlerError::from(CommandError::Forbidden {
                code: codes::FORBIDDEN,
                detail: format!(
                    "a client may get only scopes you hold; you lack {}",
                    s.as_str()
                ),
            }));
        }
    }
    let now = (deps.clock)();
    create(
        &deps.store,
        now,
        &m.meta.acting(actor),
        &m.name,
        &m.scopes,
        Some(actor),
    )
    .await
}

pub(super) async fn list_clients(
    deps: Arc<Deps>,
    m: ListClients,
) -> Result<Vec<ClientView>, HandlerError> {
    super::handlers::require(&deps, m.principal.user_id, "clients:write").await?;
    Ok(deps
        .store
        .access()
        .clients()
        .await?
        .iter()
        .map(view)
        .collect())
}

fn client_not_found() -> HandlerError {
    HandlerError::from(CommandError::NotFound {
        code: "client_not_found",
        detail: "no client has this id".into(),
    })
}

pub(super) async fn delete_client(deps: Arc<Deps>, m: DeleteClient) -> Result<(), HandlerError> {
    let actor = m.principal.user_id;
    super::handlers::require(&deps, actor, "clients:write").await?;
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    if !tx.access().delete_client(&m.client_id).await? {
        return Err(client_not_found());
    }
    let ev = DomainEvent::ClientUpdated {
        user_id: Some(actor),
        client_id: m.client_id.clone(),
        deleted: true,
    };
    enqueue_at(&tx, now, &m.meta.acting(actor), Outgoing::Event(ev)).await?;
    tx.commit().await?;
    deps.decisions.forget_client(&m.client_id);
    deps.outbox.wake();
    Ok(())
}

pub(super) async fn rotate_secret(
    deps: Arc<Deps>,
    m: RotateClientSecret,
) -> Result<ClientCreated, HandlerError> {
    let actor = m.principal.user_id;
    super::handlers::require(&deps, actor, "clients:write").await?;
    let now = (deps.clock)();
    let secret = random_token();
    let tx = deps.store.begin().await?;
    if !tx
        .access()
        .set_client_secret(&m.client_id, &sha256_hex(&secret))
        .await?
    {
        return Err(client_not_found());
    }
    let record = tx
        .access()
        .client(&m.client_id)
        .await?
        .ok_or_else(client_not_found)?;
    let ev = DomainEvent::ClientUpdated {
        user_id: Some(actor),
        client_id: m.client_id.clone(),
        deleted: false,
    };
    enqueue_at(&tx, now, &m.meta.acting(actor), Outgoing::Event(ev)).await?;
    tx.commit().await?;
    deps.decisions.forget_client(&m.client_id);
    deps.outbox.wake();
    Ok(ClientCreated {
        client: view(&record),
        client_secret: secret,
    })
}

/// Seconds to wait when `key` is throttled.
async fn throttled(deps: &Deps, key: &str, limit: u32) -> Result<Option<u64>, HandlerError> {
    let now = (deps.clock)();
    let t = &deps.throttle;
    let (failures, latest) = deps
        .store
        .login_failures()
        .since(key, now - t.window)
        .await?;
    Ok(throttle_delay(
        failures,
        latest,
        limit,
        t.base_delay,
        t.window,
        now,
    ))
}

pub(super) async fn issue_token(
    deps: Arc<Deps>,
    m: IssueClientToken,
) -> Result<ClientToken, HandlerError> {
    let t = &deps.throttle;
    let client_key = format!("client:{}", m.client_id);
    let ip_key = m.meta.client_ip.map(|ip| format!("ip:{ip}"));
    let mut wait = throttled(&deps, &client_key, t.account_max_failures).await?;
    if let Some(k) = &ip_key {
        wait = wait.max(throttled(&deps, k, t.ip_max_failures).await?);
    }
    if let Some(retry_after_secs) = wait {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    let standing = deps.decisions.client(&deps.store, &m.client_id).await?;
    let presented = sha256_hex(m.client_secret.expose_secret());
    let client = match &standing.client {
        Some(c) if bool::from(c.secret_hash.as_bytes().ct_eq(presented.as_bytes())) => c,
        _ => {
            let now = (deps.clock)();
            let tx = deps.store.begin().await?;
            tx.login_failures().record(&client_key, now).await?;
            if let Some(k) = &ip_key {
                tx.login_failures().record(k, now).await?;
            }
            let details = serde_json::json!({"client_id": m.client_id});
            audit_at(&tx, now, &m.meta, "client.auth_failed", None, details).await?;
            tx.commit().await?;
            return Err(invalid_client());
        }
    };
    let held: BTreeSet<&str> = client.scopes.iter().map(String::as_str).collect();
    let scopes: Vec<String> = match &m.scope {
        None => client.scopes.clone(),
        Some(asked) => {
            if let Some(extra) = asked.iter().find(|s| !held.contains(s.as_str())) {
                return Err(HandlerError::from(CommandError::Invalid {
                    code: "invalid_scope",
                    detail: format!("the client was not given the scope {extra}"),
                    errors: vec![],
                }));
            }
            let mut s = asked.clone();
            s.sort();
            s.dedup();
            s
        }
    };
    let now = (deps.clock)();
    let ttl = deps.client_token_ttl;
    let claims = ClientClaims {
        iss: deps.tokens.issuer.clone(),
        sub: client.id.clone(),
        aud: deps.tokens.audience.clone(),
        exp: (now + ttl).timestamp(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: Uuid::now_v7().to_string(),
        client_id: client.id.clone(),
        scope: scopes.join(" "),
    };
    Ok(ClientToken {
        access_token: deps.keys.sign(&claims).await?,
        token_type: "Bearer",
        expires_in: u64::try_from(ttl.num_seconds()).unwrap_or(0),
        scope: claims.scope,
    })
}

/// The scopes a client token still carries: those of the token that the client (still
/// existing) still holds.
pub async fn live_scopes(
    deps_store: &Store,
    decisions: &super::Decisions,
    claims: &ClientClaims,
) -> Result<Option<Vec<String>>, keyward_storage::StorageError> {
    let standing = decisions.client(deps_store, &claims.client_id).await?;
    Ok(standing.client.as_ref().map(|c| {
        claims
            .scope
            .split(' ')
            .filter(|s| c.scopes.iter().any(|h| h == s))
            .map(str::to_owned)
            .collect()
    }))
}

/// For the CLI's bad input: the refusal's one line.
pub fn refusal(e: HandlerError) -> String {
    match e {
        HandlerError::Command(CommandError::Invalid { errors, detail, .. }) => errors
            .first()
            .map_or(detail, |f| format!("--{}: {}", f.field, f.message)),
        other => crate::error::chain(&other),
    }
}
