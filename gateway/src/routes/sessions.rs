//! Routes of the sessions context: refresh, logout, listing and revoking sessions, the
//! forward-auth check for reverse proxies, and the published signing keys.
//!
//! Refuses: reading tokens. Access tokens are verified by the sessions actor (through the
//! `Authenticated` extractor; forward-auth with a permission asks the access context, which
//! verifies through the sessions context's handle); refresh tokens are passed on as opaque
//! secrets.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use keyward_messages::access::{Authorize, Permission};
use keyward_messages::commands::{
    Authenticate, GetJwks, ListSessions, Logout, Principal, Refresh, RevokeOtherSessions,
    RevokeSession,
};
use keyward_messages::{FieldError, RequestMeta, SessionId};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::*;
use super::private_json;
use crate::extract::{Authenticated, BearerToken, Meta};
use crate::input::{Fields, Input, RequestBody, Valid};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the sessions routes (and the bearer extractor) send to the sessions context.
    pub struct SessionsApi {
        authenticate: Authenticate,
        refresh: Refresh,
        logout: Logout,
        list_sessions: ListSessions,
        revoke_session: RevokeSession,
        revoke_other_sessions: RevokeOtherSessions,
        get_jwks: GetJwks,
        authenticate_caller: keyward_messages::access::AuthenticateCaller,
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    #[schema(value_type = String, max_length = 512)]
    refresh_token: Input,
}

impl RequestBody for RefreshRequest {
    type Valid = SecretString;
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        f.token("refresh_token", self.refresh_token)
    }
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "sessions",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is used up", body = TokenPair),
        (status = 401, description = "Invalid, used, expired or revoked; a rotated token presented again after the grace window ends the session", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:invalid_refresh_token", "title": "Authentication required", "status": 401, "detail": "the refresh token is invalid, expired, used or revoked; log in again", "code": "invalid_refresh_token"})),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn refresh(
    st: State,
    Meta(meta): Meta,
    Valid(refresh_token): Valid<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = st
        .ask(
            &st.to.sessions.refresh,
            Refresh {
                meta,
                refresh_token,
            },
        )
        .await?;
    Ok(private_json(&tokens))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The current session has ended"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn logout(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<HttpResponse, ApiError> {
    st.ask(&st.to.sessions.logout, Logout { meta, principal })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's live sessions", body = Vec<SessionView>),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn list(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = st
        .ask(
            &st.to.sessions.list_sessions,
            ListSessions { meta, principal },
        )
        .await?;
    Ok(private_json(&sessions))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "A session id from GET /v1/sessions")),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 400, description = "`id` is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live session with this id belongs to the caller", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:session_not_found", "title": "Not found", "status": 404, "detail": "no live session with this id belongs to you", "code": "session_not_found"})),
        BearerProblems, ServerProblems,
    ))]
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
    st.ask(&st.to.sessions.revoke_session, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(delete, path = "/v1/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every other session of the caller has ended"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn revoke_others(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
) -> Result<HttpResponse, ApiError> {
    let cmd = RevokeOtherSessions { meta, principal };
    st.ask(&st.to.sessions.revoke_other_sessions, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// For NGINX `auth_request` and Traefik `forwardAuth`: the proxy copies these headers to the
/// upstream request. Failures are the extractor's 401.
#[utoipa::path(get, path = "/v1/auth/verify", tag = "sessions",
    security(("bearer" = [])),
    params(ForwardAuthParams),
    responses(
        (status = 200, description = "The token is valid and its session live; copy these headers upstream",
            headers(
                ("X-Keyward-User-Id" = String, description = "user UUID"),
                ("X-Keyward-Session-Id" = String, description = "session UUID"),
                ("X-Keyward-Roles" = String, description = "comma-separated roles"),
            )),
        (status = 400, description = "`permission` is not `resource:action`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The user lacks `permission`", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "this needs the permission bookings:write", "code": "forbidden"})),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn forward_auth(
    st: State,
    Meta(meta): Meta,
    BearerToken(token): BearerToken,
    q: Result<web::Query<ForwardAuthParams>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    let wanted = q.and_then(|q| {
        q.into_inner()
            .permission
            .map(|raw| {
                Permission::parse("permission", &raw)
                    .map_err(|e| ApiError::invalid_fields(vec![e]).into())
            })
            .transpose()
    });
    let p = match wanted {
        // NOTE: one message, the token and the grant checked together: forward-auth with a
        // permission sits in front of every request a proxy passes on.
        Ok(Some(permission)) => {
            let cmd = Authorize {
                meta,
                token,
                permission,
            };
            st.ask(&st.to.access.authorize, cmd)
                .await
                .map_err(ApiError::with_invalid_token_challenge)?
        }
        Ok(None) => authenticate(&st, meta, token).await?,
        Err(e) => {
            // A caller learns that its token is bad before what is wrong with its query.
            authenticate(&st, meta, token).await?;
            return Err(e);
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Keyward-User-Id", p.user_id.to_string()))
        .insert_header(("X-Keyward-Session-Id", p.session_id.to_string()))
        .insert_header(("X-Keyward-Roles", p.roles.join(",")))
        .finish())
}

async fn authenticate(
    st: &State,
    meta: RequestMeta,
    token: SecretString,
) -> Result<Principal, ApiError> {
    st.ask(&st.to.sessions.authenticate, Authenticate { meta, token })
        .await
        .map_err(ApiError::with_invalid_token_challenge)
}

/// The query of forward-auth.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ForwardAuthParams {
    /// A permission the user must hold now (live grants), e.g. `bookings:write`; lacking it
    /// is a 403 `forbidden`.
    #[param(nullable)]
    permission: Option<String>,
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "sessions",
    responses(
        (status = 200, description = "The public keys that verify access tokens", body = Jwks),
        ServerProblems,
    ))]
pub(super) async fn jwks(st: State) -> Result<HttpResponse, ApiError> {
    let keys = st.ask(&st.to.sessions.get_jwks, GetJwks).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(keys))
}
