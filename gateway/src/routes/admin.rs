//! Routes of the admin API: blocking and unblocking accounts. The caller needs the `admin`
//! role, which the accounts actor checks against storage.

use actix_web::{web, HttpResponse};
use keyward_messages::commands::SetBlocked;
use keyward_messages::{FieldError, UserId};
use serde_json::Value;

use super::openapi::*;
use crate::extract::{Authenticated, Meta};
use crate::input::Fields;
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

const REASON_MAX_CHARS: usize = 500;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse("id", raw).map_err(|e| ApiError::invalid_fields(vec![e]))
}

fn reason(field: &str, raw: String) -> Result<String, FieldError> {
    let r = raw.trim();
    if r.chars().count() > REASON_MAX_CHARS {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("a reason has at most {REASON_MAX_CHARS} characters"),
        ));
    }
    if r.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "invalid",
            "a reason is one line of text without control characters",
        ));
    }
    Ok(r.to_owned())
}

/// `POST /v1/admin/users/{id}/block` with `{"reason"?}`: 204, every session of the user ends.
#[utoipa::path(post, path = "/v1/admin/users/{id}/block", tag = "admin",
    security(("bearer" = [])),
    request_body = BlockRequest,
    params(("id" = String, Path, format = Uuid, description = "The user to block")),
    responses(
        (status = 204, description = "Blocked (or already blocked): every session of the user has ended"),
        (status = 403, description = "The caller lacks the `admin` role", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "this needs the 'admin' role", "code": "forbidden"})),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:user_not_found", "title": "Not found", "status": 404, "detail": "no user has this id", "code": "user_not_found"})),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn block(
    st: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(&id)?;
    let mut f = Fields::new(body)?;
    let reason = f.optional("reason", reason);
    let reason = f.finish(|| reason)?.filter(|r| !r.is_empty());
    let cmd = SetBlocked {
        meta,
        principal,
        user_id,
        blocked: true,
        reason,
    };
    st.ask(&st.to.set_blocked, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/admin/users/{id}/unblock`: 204; the user can log in again.
#[utoipa::path(post, path = "/v1/admin/users/{id}/unblock", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user to unblock")),
    responses(
        (status = 204, description = "Unblocked (or was not blocked)"),
        (status = 400, description = "`id` is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the `admin` role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn unblock(
    st: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = SetBlocked {
        meta,
        principal,
        user_id: user_id(&id)?,
        blocked: false,
        reason: None,
    };
    st.ask(&st.to.set_blocked, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}
