//! Routes of the sessions context: refresh, logout, listing and revoking sessions, the
//! forward-auth check for reverse proxies, and the published signing keys.
//!
//! Refuses: reading tokens. Access tokens are verified by the sessions actor (through the
//! `Authenticated` extractor); refresh tokens are passed on as opaque secrets.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use keyward_messages::commands::{
    GetJwks, ListSessions, Logout, Refresh, RevokeOtherSessions, RevokeSession,
};
use keyward_messages::{FieldError, SessionId};
use serde_json::Value;

use super::private_json;
use crate::extract::{Authenticated, Meta};
use crate::input::Fields;
use crate::problem::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

pub(super) async fn refresh(
    st: State,
    Meta(meta): Meta,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let refresh_token = f.token("refresh_token");
    let refresh_token = f.finish(|| refresh_token)?;
    let tokens = st
        .ask(
            &st.to.refresh,
            Refresh {
                meta,
                refresh_token,
            },
        )
        .await?;
    Ok(private_json(&tokens))
}

pub(super) async fn logout(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<HttpResponse, ApiError> {
    st.ask(&st.to.logout, Logout { meta, principal }).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn list(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = st
        .ask(&st.to.list_sessions, ListSessions { meta, principal })
        .await?;
    Ok(private_json(&sessions))
}

pub(super) async fn revoke(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session_id =
        SessionId::parse("id", &id).map_err(|e: FieldError| ApiError::invalid_fields(vec![e]))?;
    let cmd = RevokeSession {
        meta,
        principal,
        session_id,
    };
    st.ask(&st.to.revoke_session, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn revoke_others(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<HttpResponse, ApiError> {
    let cmd = RevokeOtherSessions { meta, principal };
    st.ask(&st.to.revoke_other_sessions, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// For NGINX `auth_request` and Traefik `forwardAuth`: the proxy copies these headers to the
/// upstream request. Failures are the extractor's 401.
pub(super) async fn forward_auth(Authenticated(p): Authenticated) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Keyward-User-Id", p.user_id.to_string()))
        .insert_header(("X-Keyward-Session-Id", p.session_id.to_string()))
        .insert_header(("X-Keyward-Roles", p.roles.join(",")))
        .finish()
}

pub(super) async fn jwks(st: State) -> Result<HttpResponse, ApiError> {
    let keys = st.ask(&st.to.get_jwks, GetJwks).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(keys))
}
