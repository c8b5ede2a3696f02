//! The management API's reads: the user listing, a user's standing, sessions and recent
//! audit lines, and the audit log query. Every one needs its permission from live grants.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use keyward_messages::access::*;
use keyward_messages::commands::SessionView;
use keyward_messages::{CommandError, FieldError, UserId};
use keyward_storage::{AuditFilter, AuditRecord, UserFilter, UserRecord, UserStatusFilter};
use uuid::Uuid;

use super::handlers::require_caller;
use super::AccessDeps as Deps;
use crate::error::HandlerError;

fn bad_cursor() -> HandlerError {
    HandlerError::from(CommandError::invalid(vec![FieldError::new(
        "cursor",
        "invalid_cursor",
        "pass the next_cursor of the previous page unchanged",
    )]))
}

fn status_of(u: &UserRecord, deleting: bool) -> UserStatus {
    if u.blocked {
        UserStatus::Blocked
    } else if !u.email_verified {
        UserStatus::Unverified
    } else if deleting {
        UserStatus::Deleting
    } else {
        UserStatus::Active
    }
}

fn user_cursor(at: DateTime<Utc>, id: UserId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", at.to_rfc3339(), id))
}

fn parse_user_cursor(raw: &str) -> Option<(DateTime<Utc>, UserId)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (at, id) = text.split_once('|')?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some((at, UserId(Uuid::parse_str(id).ok()?)))
}

pub(super) async fn list_users(
    deps: Arc<Deps>,
    m: ListUsers,
) -> Result<AdminUserPage, HandlerError> {
    require_caller(&deps, &m.caller, "users:read").await?;
    let after = match &m.cursor {
        Some(c) => Some(parse_user_cursor(c).ok_or_else(bad_cursor)?),
        None => None,
    };
    let filter = UserFilter {
        q: m.q.clone(),
        status: m.status.map(|s| match s {
            UserStatus::Active => UserStatusFilter::Active,
            UserStatus::Unverified => UserStatusFilter::Unverified,
            UserStatus::Blocked => UserStatusFilter::Blocked,
            UserStatus::Deleting => UserStatusFilter::Deleting,
        }),
        role: m.role.as_ref().map(|r| r.as_str().to_owned()),
        created_after: m.created_after,
    };
    let limit = u64::from(m.limit);
    let mut rows = deps
        .store
        .users()
        .admin_list(&filter, after, limit + 1)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(m.limit as usize);
    let ids: Vec<UserId> = rows.iter().map(|(u, _)| u.id).collect();
    let logins = deps.store.sessions().last_logins(&ids).await?;
    let roles = deps.store.users().roles_of_many(&ids).await?;
    let mut items = Vec::with_capacity(rows.len());
    for (u, deleting) in &rows {
        items.push(AdminUser {
            id: u.id,
            email: u.email.as_str().to_owned(),
            username: u.username.as_ref().map(|n| n.as_str().to_owned()),
            status: status_of(u, *deleting),
            roles: roles
                .iter()
                .filter(|(id, _)| *id == u.id)
                .map(|(_, r)| r.clone())
                .collect(),
            created_at: u.created_at,
            last_login_at: logins.iter().find(|(id, _)| *id == u.id).map(|(_, t)| *t),
        });
    }
    let next_cursor = more
        .then(|| rows.last().map(|(u, _)| user_cursor(u.created_at, u.id)))
        .flatten();
    Ok(AdminUserPage { items, next_cursor })
}

fn line(r: AuditRecord) -> AuditLine {
    AuditLine {
        at: r.at,
        kind: r.kind,
        user_id: r.user_id,
        actor_id: r.actor_id,
        actor_client_id: r.actor_client_id,
        ip: r.ip,
        user_agent: r.user_agent,
        request_id: r.request_id,
        details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
    }
}

pub(super) async fn query_audit(deps: Arc<Deps>, m: QueryAudit) -> Result<AuditPage, HandlerError> {
    require_caller(&deps, &m.caller, "audit:read").await?;
    let before = match &m.cursor {
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| Uuid::from_slice(&b).ok())
                .ok_or_else(bad_cursor)?,
        ),
        None => None,
    };
    let filter = AuditFilter {
        user_id: m.user_id,
        actor_id: m.actor_id,
        actor_client_id: m.actor_client_id.clone(),
        kind: m.kind.clone(),
        from: m.from,
        to: m.to,
    };
    let limit = u64::from(m.limit);
    let mut rows = deps.store.audit().query(&filter, before, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(m.limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|(id, _)| URL_SAFE_NO_PAD.encode(id.as_bytes()))
        })
        .flatten();
    Ok(AuditPage {
        items: rows.into_iter().map(|(_, r)| line(r)).collect(),
        next_cursor,
    })
}

pub(super) async fn user_detail(
    deps: Arc<Deps>,
    m: GetUserDetail,
) -> Result<AdminUserDetail, HandlerError> {
    require_caller(&deps, &m.caller, "users:read").await?;
    let u = deps
        .store
        .users()
        .by_id(m.user_id)
        .await?
        .ok_or_else(|| HandlerError::from(keyward_messages::access::user_not_found()))?;
    let deleting = deps
        .store
        .profiles()
        .get(u.id)
        .await?
        .is_some_and(|p| p.deletion_due_at.is_some());
    let now = (deps.clock)();
    let sessions = deps
        .store
        .sessions()
        .live_of(u.id, now)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: false,
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.idle_expires_at.min(s.expires_at),
            user_agent: s.user_agent,
            ip: s.ip.and_then(|i| i.parse().ok()),
        })
        .collect();
    let filter = AuditFilter {
        user_id: Some(u.id),
        ..AuditFilter::default()
    };
    let recent_audit = deps
        .store
        .audit()
        .query(&filter, None, 20)
        .await?
        .into_iter()
        .map(|(_, r)| line(r))
        .collect();
    let last_login_at = deps
        .store
        .sessions()
        .last_logins(&[u.id])
        .await?
        .first()
        .map(|(_, t)| *t);
    let factors = deps
        .store
        .mfa()
        .factors_of(u.id)
        .await?
        .into_iter()
        .filter(|f| f.confirmed_at.is_some())
        .map(|f| {
            serde_json::json!({
                "id": f.id,
                "type": f.kind,
                "label": f.label,
                "created_at": f.created_at,
                "last_used_at": f.last_used_at,
            })
        })
        .collect();
    Ok(AdminUserDetail {
        status: status_of(&u, deleting),
        last_login_at,
        sessions,
        factors,
        identities: deps
            .store
            .federation()
            .identities_of(u.id)
            .await?
            .into_iter()
            .map(crate::federation::identities::admin_view)
            .collect(),
        recent_audit,
    })
}
