//! The access context's message table: one handler per message.

use std::collections::BTreeSet;
use std::sync::Arc;

use keyward_messages::access::*;
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::{codes, CommandError, UserId};
use keyward_storage::RoleRecord;

use super::{policy, Access, AccessDeps as Deps};
use crate::error::HandlerError;

fn role_not_found(name: &RoleName) -> HandlerError {
    HandlerError::from(CommandError::NotFound {
        code: "role_not_found",
        detail: format!("no role is named {}", name.as_str()),
    })
}

fn conflict(code: &'static str, detail: impl Into<String>) -> HandlerError {
    HandlerError::from(CommandError::Conflict {
        code,
        detail: detail.into(),
        field: None,
    })
}

pub(super) async fn require(
    deps: &Deps,
    user: UserId,
    permission: &str,
) -> Result<(), HandlerError> {
    if deps.decisions.allows(&deps.store, user, permission).await? {
        Ok(())
    } else {
        Err(HandlerError::from(forbidden(permission)))
    }
}

/// 403 `forbidden` unless `caller` (a user by live grants, a client by its token's scopes)
/// may do what `permission` allows now.
pub(super) async fn require_caller(
    deps: &Deps,
    caller: &Caller,
    permission: &str,
) -> Result<(), HandlerError> {
    if deps
        .decisions
        .caller_allows(&deps.store, caller, permission)
        .await?
    {
        Ok(())
    } else {
        Err(HandlerError::from(forbidden(permission)))
    }
}

/// The built-in permissions in `perms` that `actor` does not hold: an administrator (or a
/// client) hands out only what they have.
async fn beyond_actor(
    deps: &Deps,
    actor: &Caller,
    perms: &[String],
) -> Result<Option<String>, HandlerError> {
    let held = deps
        .decisions
        .caller_permissions(&deps.store, actor)
        .await?;
    Ok(perms
        .iter()
        .find(|p| BUILTIN_PERMISSIONS.contains(&p.as_str()) && !held.contains(*p))
        .cloned())
}

/// The actor's permissions if their grants were `roles` and role `changed` had `perms`.
async fn permissions_if(
    deps: &Deps,
    roles: &[String],
    changed: Option<(&str, &[String])>,
) -> Result<BTreeSet<String>, HandlerError> {
    let defs = deps.decisions.roles(&deps.store).await?;
    let mut out = BTreeSet::new();
    for r in roles {
        match changed {
            Some((name, perms)) if name == r => out.extend(perms.iter().cloned()),
            _ => {
                if let Some(p) = defs.get(r) {
                    out.extend(p.iter().cloned());
                }
            }
        }
    }
    Ok(out)
}

fn view(r: RoleRecord, holders: u64) -> RoleView {
    RoleView {
        name: r.name,
        description: r.description,
        permissions: r.permissions,
        source: RoleSource::parse(&r.source),
        holders,
    }
}

async fn check_access(deps: Arc<Deps>, m: CheckAccess) -> Result<Vec<bool>, HandlerError> {
    let Asker::Bearer(token) = m.asker;
    let caller = deps.sessions.authenticate_caller(token).await?;
    match &caller {
        Caller::User(p) => {
            let me = p.user_id;
            if m.checks.iter().any(|c| c.user_id != me) {
                require(&deps, me, "access:check").await?;
            }
        }
        Caller::Client(c) => {
            if !c.scopes.iter().any(|s| s == "access:check") {
                return Err(HandlerError::from(CommandError::Forbidden {
                    code: codes::FORBIDDEN,
                    detail: "this needs the scope access:check".into(),
                }));
            }
        }
    }
    let mut out = Vec::with_capacity(m.checks.len());
    for c in &m.checks {
        out.push(
            deps.decisions
                .allows(&deps.store, c.user_id, c.permission.as_str())
                .await?,
        );
    }
    Ok(out)
}

async fn authorize(
    deps: Arc<Deps>,
    m: Authorize,
) -> Result<keyward_messages::commands::Principal, HandlerError> {
    let p = deps.sessions.authenticate(m.token).await?;
    require(&deps, p.user_id, m.permission.as_str()).await?;
    Ok(p)
}

async fn my_permissions(deps: Arc<Deps>, m: MyPermissions) -> Result<Vec<String>, HandlerError> {
    let perms = deps
        .decisions
        .permissions(&deps.store, m.principal.user_id)
        .await?;
    Ok(perms.into_iter().collect())
}

async fn list_roles(deps: Arc<Deps>, m: ListRoles) -> Result<Vec<RoleView>, HandlerError> {
    require_caller(&deps, &m.caller, "roles:read").await?;
    let holders = deps.store.access().holders().await?;
    let count = |name: &str| {
        holders
            .iter()
            .find(|(r, _)| r == name)
            .map_or(0, |(_, n)| *n)
    };
    Ok(deps
        .store
        .access()
        .roles()
        .await?
        .into_iter()
        .map(|r| {
            let n = count(&r.name);
            view(r, n)
        })
        .collect())
}

async fn get_role(deps: Arc<Deps>, m: GetRole) -> Result<RoleView, HandlerError> {
    require_caller(&deps, &m.caller, "roles:read").await?;
    let r = deps
        .store
        .access()
        .role(m.name.as_str())
        .await?
        .ok_or_else(|| role_not_found(&m.name))?;
    let n = deps.store.access().holders_of(m.name.as_str()).await?;
    Ok(view(r, n))
}

fn declared_elsewhere(r: &RoleRecord) -> Option<HandlerError> {
    match RoleSource::parse(&r.source) {
        RoleSource::Api => None,
        RoleSource::Builtin => Some(conflict(
            "role_built_in",
            format!("{} is built in and cannot be changed", r.name),
        )),
        RoleSource::Config => Some(conflict(
            "role_declared",
            format!(
                "{} is declared in the configuration ([[access.roles]] or KEYWARD_ACCESS__PRESET); change it there",
                r.name
            ),
        )),
    }
}

async fn put_role(deps: Arc<Deps>, m: PutRole) -> Result<(RoleView, bool), HandlerError> {
    let actor = m.principal.user_id;
    require(&deps, actor, "roles:write").await?;
    let perms: Vec<String> = m
        .definition
        .permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    if let Some(p) = beyond_actor(&deps, &Caller::User(m.principal.clone()), &perms).await? {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::FORBIDDEN,
            detail: format!(
                "a role you define may hold only built-in permissions you hold; you lack {p}"
            ),
        }));
    }
    let name = m.name.as_str();
    let old = deps.store.access().role(name).await?;
    if let Some(old) = &old {
        if m.create {
            return Err(conflict(
                "role_exists",
                format!("a role named {name} exists; PUT /v1/admin/roles/{name} replaces it"),
            ));
        }
        if let Some(e) = declared_elsewhere(old) {
            return Err(e);
        }
        let mine = deps.store.users().roles_of(actor).await?;
        if mine.iter().any(|r| r == name) {
            let after = permissions_if(&deps, &mine, Some((name, &perms))).await?;
            if let Some(why) = policy::locks_out(&after) {
                return Err(conflict("self_lockout", why));
            }
        }
    }
    let now = (deps.clock)();
    let record = RoleRecord {
        name: name.to_owned(),
        description: m.definition.description.clone(),
        permissions: perms.clone(),
        source: RoleSource::Api.as_str().to_owned(),
        updated_at: now,
    };
    let meta = m.meta.acting(actor);
    let tx = deps.store.begin().await?;
    tx.access().put_role(&record).await?;
    let ev = DomainEvent::RoleUpdated {
        user_id: Some(actor),
        role: name.to_owned(),
        permissions: perms,
        deleted: false,
    };
    deps.outbox.enqueue(&tx, &meta, Outgoing::Event(ev)).await?;
    tx.commit().await?;
    deps.decisions.forget_roles();
    deps.outbox.wake();
    let holders = deps.store.access().holders_of(name).await?;
    Ok((view(record, holders), old.is_none()))
}

async fn delete_role(deps: Arc<Deps>, m: DeleteRole) -> Result<(), HandlerError> {
    let actor = m.principal.user_id;
    require(&deps, actor, "roles:write").await?;
    let name = m.name.as_str();
    let old = deps
        .store
        .access()
        .role(name)
        .await?
        .ok_or_else(|| role_not_found(&m.name))?;
    if let Some(e) = declared_elsewhere(&old) {
        return Err(e);
    }
    let tx = deps.store.begin().await?;
    let holders = tx.access().holders_of(name).await?;
    if holders > 0 {
        return Err(conflict(
            "role_in_use",
            format!("{holders} user(s) hold {name}; revoke it from them first"),
        ));
    }
    tx.access().delete_role(name).await?;
    let ev = DomainEvent::RoleUpdated {
        user_id: Some(actor),
        role: name.to_owned(),
        permissions: Vec::new(),
        deleted: true,
    };
    deps.outbox
        .enqueue(&tx, &m.meta.acting(actor), Outgoing::Event(ev))
        .await?;
    tx.commit().await?;
    deps.decisions.forget_roles();
    deps.outbox.wake();
    Ok(())
}

async fn set_grant(deps: Arc<Deps>, m: SetGrant) -> Result<(), HandlerError> {
    let actor = &m.caller;
    require_caller(&deps, actor, "roles:write").await?;
    let name = m.role.as_str();
    let role = deps
        .store
        .access()
        .role(name)
        .await?
        .ok_or_else(|| role_not_found(&m.role))?;
    if deps.store.users().by_id(m.user_id).await?.is_none() {
        return Err(HandlerError::from(
            keyward_messages::access::user_not_found(),
        ));
    }
    if m.grant {
        if let Some(p) = beyond_actor(&deps, actor, &role.permissions).await? {
            return Err(HandlerError::from(CommandError::Forbidden {
                code: codes::FORBIDDEN,
                detail: format!(
                    "you may grant only roles whose built-in permissions you hold; {name} has {p}"
                ),
            }));
        }
    } else if actor.user_id() == Some(m.user_id) {
        let mine: Vec<String> = deps
            .store
            .users()
            .roles_of(m.user_id)
            .await?
            .into_iter()
            .filter(|r| r != name)
            .collect();
        if let Some(why) = policy::locks_out(&permissions_if(&deps, &mine, None).await?) {
            return Err(conflict("self_lockout", why));
        }
    }
    let now = (deps.clock)();
    let meta = m.meta.acting_as(actor);
    let tx = deps.store.begin().await?;
    tx.users().lock(m.user_id).await?;
    let changed = if m.grant {
        tx.access().grant(m.user_id, name, now).await?
    } else {
        tx.access().revoke(m.user_id, name).await?
    };
    if changed {
        let (user_id, role) = (m.user_id, name.to_owned());
        let (by, by_client) = (actor.user_id(), actor.client_id().map(str::to_owned));
        let ev = if m.grant {
            DomainEvent::RoleGranted {
                user_id,
                role,
                by,
                by_client,
            }
        } else {
            DomainEvent::RoleRevoked {
                user_id,
                role,
                by,
                by_client,
            }
        };
        deps.outbox.enqueue(&tx, &meta, Outgoing::Event(ev)).await?;
    }
    tx.commit().await?;
    if changed {
        deps.decisions.forget(m.user_id);
        deps.outbox.wake();
        tracing::info!(user_id = %m.user_id, role = name, granted = m.grant, by = ?actor.user_id(), by_client = ?actor.client_id(), "role grant changed");
    }
    Ok(())
}

crate::edge::handlers!(Access {
    CheckAccess => Vec<bool>: check_access;
    Authorize => keyward_messages::commands::Principal: authorize;
    MyPermissions => Vec<String>: my_permissions;
    ListRoles => Vec<RoleView>: list_roles;
    GetRole => RoleView: get_role;
    PutRole => (RoleView, bool): put_role;
    DeleteRole => (): delete_role;
    SetGrant => (): set_grant;
    IssueClientToken => ClientToken: |d, m| super::clients::issue_token(d, m);
    CreateClient => ClientCreated: |d, m| super::clients::create_client(d, m);
    ListClients => Vec<ClientView>: |d, m| super::clients::list_clients(d, m);
    DeleteClient => (): |d, m| super::clients::delete_client(d, m);
    RotateClientSecret => ClientCreated: |d, m| super::clients::rotate_secret(d, m);
    ListUsers => AdminUserPage: |d, m| super::admin::list_users(d, m);
    GetUserDetail => AdminUserDetail: |d, m| super::admin::user_detail(d, m);
    QueryAudit => AuditPage: |d, m| super::admin::query_audit(d, m);
});
