//! The access context: roles and their permissions, who holds which role, the check API, and
//! the rules every admin action is judged by (permissions from live grants, never from the
//! token, and never the string compare of a role name).
//!
//! Owns: role definitions (the built-in `admin`, a preset's and `[[access.roles]]` are
//! written to the database at start and changed only where they are declared; the others
//! through the admin API), grants and their events (`role.granted`, `role.revoked`,
//! `role.updated`), and this node's decision cache. Refuses: a change that would leave the
//! administrator making it without `roles:write`, granting or defining built-in permissions
//! the administrator does not hold, deleting a role someone holds, and editing a declared role
//! through the API.

mod admin;
pub mod clients;
pub mod decisions;
mod handlers;
pub mod policy;

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;
use keyward_config::Settings;
use keyward_messages::access::{forbidden, Caller, RoleSource, BUILTIN_PERMISSIONS};
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::{RequestMeta, UserId};
use keyward_storage::{RoleRecord, StorageError, Store, Tx};

use crate::edge::Restart;
use crate::error::HandlerError;
use crate::metrics::Metrics;
use crate::outbox::{enqueue_at, OutboxWriter};
use crate::{Clock, StartError};

pub use decisions::Decisions;

/// What the access context works with.
pub struct AccessDeps {
    pub store: Store,
    pub clock: Clock,
    pub outbox: OutboxWriter,
    pub decisions: Arc<Decisions>,
    /// Granted at registration.
    pub default_roles: Vec<String>,
    /// Signs service clients' tokens.
    pub keys: Arc<crate::keys::KeyRing>,
    pub tokens: crate::sessions::TokenPolicy,
    pub client_token_ttl: chrono::Duration,
    /// Wrong client secrets are throttled like wrong passwords.
    pub throttle: crate::accounts::ThrottlePolicy,
    pub metrics: Metrics,
    /// Authenticates the check API's bearer tokens.
    pub sessions: crate::sessions::SessionsHandle,
}

pub struct Access {
    pub(crate) deps: Arc<AccessDeps>,
}

impl Access {
    pub fn new(deps: Arc<AccessDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Access {
    type Context = Context<Self>;
}

impl Supervised for Access {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("access actor restarting");
    }
}

impl Handler<Restart> for Access {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The narrow handle other contexts get at start: ask whether a user holds a permission now,
/// and grant the default roles inside their own transaction.
#[derive(Clone)]
pub struct AccessHandle(Arc<AccessDeps>);

impl AccessHandle {
    pub fn new(deps: Arc<AccessDeps>) -> Self {
        Self(deps)
    }

    /// Whether `user` holds `permission` now (live grants, not the token).
    pub async fn allows(&self, user: UserId, permission: &str) -> Result<bool, StorageError> {
        self.0
            .decisions
            .allows(&self.0.store, user, permission)
            .await
    }

    /// 403 `forbidden` unless `user` holds `permission` now.
    pub async fn require(&self, user: UserId, permission: &str) -> Result<(), HandlerError> {
        if self.allows(user, permission).await? {
            Ok(())
        } else {
            Err(HandlerError::from(forbidden(permission)))
        }
    }

    /// Whether `caller` (a user by live grants, a client by its token's scopes) may do what
    /// `permission` allows now.
    pub async fn caller_allows(
        &self,
        caller: &Caller,
        permission: &str,
    ) -> Result<bool, StorageError> {
        self.0
            .decisions
            .caller_allows(&self.0.store, caller, permission)
            .await
    }

    /// 403 `forbidden` unless [`Self::caller_allows`].
    pub async fn require_caller(
        &self,
        caller: &Caller,
        permission: &str,
    ) -> Result<(), HandlerError> {
        if self.caller_allows(caller, permission).await? {
            Ok(())
        } else {
            Err(HandlerError::from(forbidden(permission)))
        }
    }

    /// 404 for a role that does not exist, 403 when a role holds a built-in permission
    /// `actor` lacks: an administrator hands out only what they hold.
    pub async fn may_grant(&self, actor: &Caller, roles: &[String]) -> Result<(), HandlerError> {
        let defs = self.0.decisions.roles(&self.0.store).await?;
        let held = self
            .0
            .decisions
            .caller_permissions(&self.0.store, actor)
            .await?;
        for r in roles {
            let Some(perms) = defs.get(r) else {
                return Err(HandlerError::from(
                    keyward_messages::CommandError::NotFound {
                        code: "role_not_found",
                        detail: format!("no role is named {r}"),
                    },
                ));
            };
            if let Some(p) = perms
                .iter()
                .find(|p| BUILTIN_PERMISSIONS.contains(&p.as_str()) && !held.contains(*p))
            {
                return Err(HandlerError::from(keyward_messages::CommandError::Forbidden {
                    code: keyward_messages::codes::FORBIDDEN,
                    detail: format!("you may grant only roles whose built-in permissions you hold; {r} has {p}"),
                }));
            }
        }
        Ok(())
    }

    pub async fn permissions(&self, user: UserId) -> Result<BTreeSet<String>, StorageError> {
        self.0.decisions.permissions(&self.0.store, user).await
    }

    /// Grants the default roles to a new account inside `tx`, each with `role.granted`.
    pub async fn grant_defaults(
        &self,
        tx: &Tx,
        now: chrono::DateTime<chrono::Utc>,
        meta: &RequestMeta,
        user: UserId,
    ) -> Result<(), StorageError> {
        grant_roles(tx, now, meta, user, &self.0.default_roles, None).await
    }

    /// After a commit that changed `user`'s grants or standing: this node forgets what it
    /// knew at once (the others hear it from the bus).
    pub fn changed(&self, user: UserId) {
        self.0.decisions.forget(user);
    }
}

/// Grants `roles` to `user` inside `tx`; each new grant gets its `role.granted` (`by` the
/// administrator, or none). Needs nothing of a running node, so the CLI uses it too.
pub async fn grant_roles(
    tx: &Tx,
    now: chrono::DateTime<chrono::Utc>,
    meta: &RequestMeta,
    user: UserId,
    roles: &[String],
    by: Option<UserId>,
) -> Result<(), StorageError> {
    for role in roles {
        if tx.access().grant(user, role, now).await? {
            let ev = DomainEvent::RoleGranted {
                user_id: user,
                role: role.clone(),
                by,
                by_client: None,
            };
            enqueue_at(tx, now, meta, Outgoing::Event(ev)).await?;
        }
    }
    Ok(())
}

/// Writes the declared roles (built-in, preset, `[[access.roles]]`) to the database, each
/// change with `role.updated` (except on a database that held no roles yet: no node can have
/// read any); a role that was declared and no longer is stays, editable through the API. Fails when a default role does not exist. Runs at every start (and in
/// `keyward migrate`), so every node and the CLI see the same roles.
pub async fn sync_declared(
    settings: &Settings,
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StartError> {
    let declared = policy::declared(&settings.access);
    let tx = store.begin().await?;
    let stored = tx.access().roles().await?;
    let meta = RequestMeta::default();
    for d in &declared {
        let old = stored.iter().find(|s| s.name == d.name);
        let same = old.is_some_and(|o| {
            o.description == d.description
                && o.permissions == d.permissions
                && o.source == d.source.as_str()
        });
        if same {
            continue;
        }
        tx.access()
            .put_role(&RoleRecord {
                name: d.name.clone(),
                description: d.description.clone(),
                permissions: d.permissions.clone(),
                source: d.source.as_str().to_owned(),
                updated_at: now,
            })
            .await?;
        if stored.is_empty() {
            continue;
        }
        let ev = DomainEvent::RoleUpdated {
            user_id: None,
            role: d.name.clone(),
            permissions: d.permissions.clone(),
            deleted: false,
        };
        enqueue_at(&tx, now, &meta, Outgoing::Event(ev)).await?;
    }
    for s in &stored {
        let was_declared = s.source != RoleSource::Api.as_str();
        if was_declared && !declared.iter().any(|d| d.name == s.name) {
            tracing::warn!(role = %s.name, "a role is no longer declared in the configuration; it stays and is now edited through the admin API");
            let mut kept = s.clone();
            kept.source = RoleSource::Api.as_str().to_owned();
            kept.updated_at = now;
            tx.access().put_role(&kept).await?;
        }
    }
    for r in settings.access.default_role_list() {
        let known = declared.iter().any(|d| d.name == r) || stored.iter().any(|s| s.name == r);
        if !known {
            return Err(StartError::Config(format!(
                "KEYWARD_ACCESS__DEFAULT_ROLES: role {r:?} does not exist (declare it in [[access.roles]], pick a preset that has it, or create it through the admin API first)"
            )));
        }
    }
    tx.commit().await?;
    Ok(())
}
