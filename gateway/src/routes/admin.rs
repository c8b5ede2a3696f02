//! Routes of the admin API: blocking and unblocking accounts. The caller needs `users:block`,
//! which the accounts actor checks against live grants.

use actix_web::{web, HttpResponse};
use keyward_messages::commands::SetBlocked;
use keyward_messages::{BlockReason, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::*;
use crate::extract::{Authenticated, Meta};
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
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn block(
    st: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    id: web::Path<String>,
    Valid(reason): Valid<BlockRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(&id)?;
    let cmd = SetBlocked {
        meta,
        principal,
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
    st.ask(&st.to.accounts.set_blocked, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}
