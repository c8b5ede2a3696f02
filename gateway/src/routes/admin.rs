//! Routes of the admin API: blocking and unblocking accounts. The caller needs `users:block`,
//! which the accounts actor checks against live grants.

use actix_web::{web, HttpResponse};
use keyward_messages::commands::SetBlocked;
use keyward_messages::{BlockReason, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::*;
use crate::extract::{Authenticated, AuthenticatedCaller, Meta};
use crate::input::{Fields, Input, RequestBody, Valid};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse("id", raw).map_err(|e| ApiError::invalid_fields(vec![e]))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct BlockRequest {
    /// Kept in the audit log and the `user.blocked` event; at most 500 characters.
    #[schema(value_type = Option<String>, example = "chargeback fraud", max_length = 500)]
    reason: Input,
}

impl RequestBody for BlockRequest {
    type Valid = Option<BlockReason>;
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        f.optional("reason", self.reason, |k, v| BlockReason::parse(k, &v))
            .map(Option::flatten)
    }
}

/// `POST /v1/admin/users/{id}/block` with `{"reason"?}`: 204, every session of the user ends.
#[utoipa::path(post, path = "/v1/admin/users/{id}/block", tag = "admin",
    security(("bearer" = [])),
    request_body = BlockRequest,
    params(("id" = String, Path, format = Uuid, description = "The user to block")),
    responses(
        (status = 204, description = "Blocked (or already blocked): every session of the user has ended"),
        (status = 403, description = "The caller lacks `users:block`", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "this needs the permission users:block", "code": "forbidden"})),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:user_not_found", "title": "Not found", "status": 404, "detail": "no user has this id", "code": "user_not_found"})),
        (status = 409, description = "An administrator cannot block their own account (`self_lockout`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn block(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    id: web::Path<String>,
    Valid(reason): Valid<BlockRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(&id)?;
    let cmd = SetBlocked {
        meta,
        caller,
        user_id,
        blocked: true,
        reason,
    };
    st.ask(&st.to.accounts.set_blocked, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/admin/users/{id}/unblock`: 204; the user can log in again.
#[utoipa::path(post, path = "/v1/admin/users/{id}/unblock", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user to unblock")),
    responses(
        (status = 204, description = "Unblocked (or was not blocked)"),
        (status = 400, description = "`id` is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `users:block`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn unblock(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = SetBlocked {
        meta,
        caller,
        user_id: user_id(&id)?,
        blocked: false,
        reason: None,
    };
    st.ask(&st.to.accounts.set_blocked, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- the management API's users and audit log ----

use actix_web::http::header;
use keyward_messages::access::{
    AdminUser, AdminUserDetail, AdminUserPage, AuditPage, EraseUser, ForceLogout, GetUserDetail,
    InviteUser, ListUsers, QueryAudit, RoleName, UserStatus,
};
use keyward_messages::profiles::{DeletionScheduled, GetProfile, ProfileView};
use keyward_messages::{Email, FieldError, Username};
use serde::Serialize;
use utoipa::IntoParams;

use super::private_json;
use super::profiles::limit;
use crate::extract::ClientLocale;

fn time(field: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, FieldError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            FieldError::new(
                field,
                "invalid_time",
                "use an RFC 3339 time such as 2026-01-31T12:00:00Z",
            )
        })
}

fn collect<T>(errors: &mut Vec<FieldError>, r: Option<Result<T, FieldError>>) -> Option<T> {
    match r {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        None => None,
    }
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct UserListParams {
    /// The start of the email address or username, any case.
    q: Option<String>,
    /// `active`, `unverified`, `blocked` or `deleting`.
    status: Option<String>,
    /// Holders of this role.
    role: Option<String>,
    /// RFC 3339; users created after it.
    created_after: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1–100, default 50.
    limit: Option<String>,
}

/// `GET /v1/admin/users`.
#[utoipa::path(get, path = "/v1/admin/users", operation_id = "admin_list_users", tag = "admin",
    security(("bearer" = [])),
    params(UserListParams),
    responses(
        (status = 200, description = "Users, oldest first, with status, roles and last login", body = AdminUserPage),
        (status = 400, description = "A bad filter, `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `users:read`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn list_users(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    p: web::Query<UserListParams>,
) -> Result<HttpResponse, ApiError> {
    let p = p.into_inner();
    let mut errors = Vec::new();
    let status = collect(
        &mut errors,
        p.status.as_deref().map(|s| UserStatus::parse("status", s)),
    );
    let role = collect(
        &mut errors,
        p.role.as_deref().map(|r| RoleName::parse("role", r)),
    );
    let created_after = collect(
        &mut errors,
        p.created_after.as_deref().map(|t| time("created_after", t)),
    );
    let q = p.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    if q.as_ref().is_some_and(|q| q.chars().count() > 254) {
        errors.push(FieldError::new(
            "q",
            "too_long",
            "q is at most 254 characters",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    let cmd = ListUsers {
        meta,
        caller,
        q,
        status,
        role,
        created_after,
        cursor: p.cursor,
        limit: limit(p.limit.as_deref(), 50, 100)?,
    };
    Ok(private_json(&st.ask(&st.to.access.list_users, cmd).await?))
}

/// A user as the management API shows them.
#[derive(Serialize, ToSchema)]
pub(crate) struct AdminUserView {
    /// The whole profile.
    #[schema(value_type = UserView)]
    profile: ProfileView,
    #[serde(flatten)]
    detail: AdminUserDetail,
}

/// `GET /v1/admin/users/{id}`.
#[utoipa::path(get, path = "/v1/admin/users/{id}", operation_id = "admin_get_user", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user")),
    responses(
        (status = 200, description = "Profile, status, roles, live sessions, factors, linked identities and recent audit lines", body = AdminUserView),
        (status = 403, description = "Needs `users:read`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn get_user(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(&id)?;
    let cmd = GetUserDetail {
        meta: meta.clone(),
        caller: caller.clone(),
        user_id,
    };
    let detail = st.ask(&st.to.access.get_user_detail, cmd).await?;
    let cmd = GetProfile {
        meta,
        viewer: Some(caller),
        user_id,
    };
    let profile = st.ask(&st.to.profiles.get_profile, cmd).await?;
    Ok(private_json(&AdminUserView { profile, detail }))
}

/// An invitation.
#[derive(Deserialize, ToSchema)]
pub(crate) struct InviteRequest {
    #[schema(value_type = String, format = "email", example = "kim@example.com", max_length = 254)]
    email: Input,
    #[schema(value_type = Option<String>, example = "kim", min_length = 3, max_length = 32)]
    username: Input,
    /// Roles granted now.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, example = json!(["support"]))]
    roles: Option<serde_json::Value>,
}

impl RequestBody for InviteRequest {
    type Valid = (Email, Option<Username>, Vec<RoleName>);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let email = f.required("email", self.email, |k, v| Email::parse(k, &v));
        let username = f.optional("username", self.username, |k, v| Username::parse(k, &v));
        let mut roles = Vec::new();
        match self.roles {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(items)) => {
                for (i, r) in items.iter().enumerate() {
                    let field = format!("roles[{i}]");
                    match r.as_str() {
                        Some(r) => match RoleName::parse(&field, r) {
                            Ok(r) => roles.push(r),
                            Err(e) => f.error(e),
                        },
                        None => f.error(FieldError::new(
                            &field,
                            "not_a_string",
                            "a role is a name such as support",
                        )),
                    }
                }
            }
            Some(_) => f.error(FieldError::new(
                "roles",
                "not_an_array",
                "roles is an array of role names",
            )),
        }
        Some((email?, username?, roles))
    }
}

/// `POST /v1/admin/users`.
#[utoipa::path(post, path = "/v1/admin/users", operation_id = "admin_invite_user", tag = "admin",
    security(("bearer" = [])),
    request_body = InviteRequest,
    responses(
        (status = 201, description = "Created, unverified; an invitation mail carries a link (valid 7 days) that sets the password", body = AdminUser),
        (status = 403, description = "Needs `users:write`, and every built-in permission of the roles", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A role does not exist (`role_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email (`email_taken`) or username (`username_taken`) is taken", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn invite(
    st: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    ClientLocale(locale): ClientLocale,
    Valid((email, username, roles)): Valid<InviteRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = InviteUser {
        meta,
        principal,
        email,
        username,
        roles,
        locale,
    };
    let user = st.ask(&st.to.accounts.invite_user, cmd).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/admin/users/{}", user.id)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(user))
}

/// `DELETE /v1/admin/users/{id}`.
#[utoipa::path(delete, path = "/v1/admin/users/{id}", operation_id = "admin_erase_user", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user")),
    responses(
        (status = 202, description = "Every session has ended; the account is erased within a minute (`user.deleted`)", body = DeletionScheduled),
        (status = 403, description = "Needs `users:delete`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Administrators erase their own account with DELETE /v1/users/me (`self_lockout`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn erase(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = EraseUser {
        meta,
        caller,
        user_id: user_id(&id)?,
    };
    let scheduled = st.ask(&st.to.profiles.erase_user, cmd).await?;
    Ok(HttpResponse::Accepted().json(scheduled))
}

/// `POST /v1/admin/users/{id}/logout`.
#[utoipa::path(post, path = "/v1/admin/users/{id}/logout", operation_id = "admin_logout_user", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user")),
    responses(
        (status = 204, description = "Every session of the user has ended"),
        (status = 403, description = "Needs `users:block`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn logout(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ForceLogout {
        meta,
        caller,
        user_id: user_id(&id)?,
    };
    st.ask(&st.to.accounts.force_logout, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct AuditParams {
    /// Lines about this user.
    user_id: Option<String>,
    /// Lines of this administrator's actions.
    actor_id: Option<String>,
    /// Lines of this service client's actions (`kwc_…`).
    actor_client_id: Option<String>,
    /// One event type, e.g. `role.granted`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// RFC 3339; lines at or after it.
    from: Option<String>,
    /// RFC 3339; lines before it.
    to: Option<String>,
    cursor: Option<String>,
    /// 1–100, default 50.
    limit: Option<String>,
}

/// `GET /v1/admin/audit`.
#[utoipa::path(get, path = "/v1/admin/audit", operation_id = "admin_audit", tag = "admin",
    security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "The append-only audit log, newest first; admin actions name their actor", body = AuditPage),
        (status = 400, description = "A bad filter, `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `audit:read`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn audit(
    st: web::Data<AppState>,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    Meta(meta): Meta,
    p: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let p = p.into_inner();
    let mut errors = Vec::new();
    let user_id = collect(
        &mut errors,
        p.user_id.as_deref().map(|u| UserId::parse("user_id", u)),
    );
    let actor_id = collect(
        &mut errors,
        p.actor_id.as_deref().map(|u| UserId::parse("actor_id", u)),
    );
    let client_ok = |c: &str| {
        (1..=64).contains(&c.len())
            && c.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    };
    if p.actor_client_id.as_deref().is_some_and(|c| !client_ok(c)) {
        errors.push(FieldError::new(
            "actor_client_id",
            "invalid_client_id",
            "a client id as `keyward admin create-client` printed it",
        ));
    }
    let from = collect(&mut errors, p.from.as_deref().map(|t| time("from", t)));
    let to = collect(&mut errors, p.to.as_deref().map(|t| time("to", t)));
    let ok_kind = |k: &str| {
        k.len() <= 64
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
    };
    if p.kind.as_deref().is_some_and(|k| !ok_kind(k)) {
        errors.push(FieldError::new(
            "type",
            "invalid_type",
            "an event type such as role.granted",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    let cmd = QueryAudit {
        meta,
        caller,
        user_id,
        actor_id,
        actor_client_id: p.actor_client_id,
        kind: p.kind,
        from,
        to,
        cursor: p.cursor,
        limit: limit(p.limit.as_deref(), 50, 100)?,
    };
    Ok(private_json(&st.ask(&st.to.access.query_audit, cmd).await?))
}
