//! Routes of the admin API: blocking and unblocking accounts. The caller needs the `admin`
//! role, which the accounts actor checks against storage.

use actix_web::{web, HttpResponse};
use keyward_messages::commands::SetBlocked;
use keyward_messages::{FieldError, UserId};
use serde_json::Value;

use crate::extract::{Authenticated, Meta};
use crate::input::Fields;
use crate::problem::ApiError;
use crate::state::AppState;

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
