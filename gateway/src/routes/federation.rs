//! Routes of the federation context: social login's web flow (start, the provider's callback,
//! the app's code exchange).
//!
//! Refuses: deciding anything; which account an identity logs in to is the federation
//! actor's business.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use keyward_messages::federation::*;
use keyward_messages::mfa::CodeSent;
use keyward_messages::mfa::LoginReply;
use keyward_messages::{FieldError, Password};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::openapi::*;
use super::private_json;
use crate::extract::{Authenticated, Meta};
use crate::input::{Fields, Input, RequestBody, Valid};
use crate::problem::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the federation routes send to the federation context.
    pub struct FederationApi {
        start: StartOAuth,
        callback: OAuthCallback,
        exchange: ExchangeOAuthCode,
        native: NativeOAuth,
        list: ListIdentities,
        unlink: UnlinkIdentity,
        start_link: StartLink,
        link_code: SendLinkCode,
        confirm_link: ConfirmLink,
    }
}

fn found(r: Redirect) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, r.location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Short printable query values; anything else is not ours.
fn query_value(field: &str, raw: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match raw {
        Some(v) if v.len() > max || v.chars().any(char::is_control) => {
            Err(ApiError::invalid_fields(vec![FieldError::new(
                field,
                "invalid_value",
                format!("{field} is longer than {max} bytes or has control characters"),
            )]))
        }
        other => Ok(other),
    }
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct StartQuery {
    /// Where the browser goes when it is done, with `code` (or `error`): one of
    /// KEYWARD_OAUTH__REDIRECT_ALLOWLIST, exactly.
    redirect_uri: Option<String>,
    /// Given back unchanged beside the code, for the app's own CSRF check.
    state: Option<String>,
}

#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/start", operation_id = "oauth_start", tag = "federation",
    params(("provider" = String, Path, description = "A configured provider's name"), StartQuery),
    responses(
        (status = 302, description = "To the provider's sign-in, with state, nonce and PKCE S256 (the flow lives 10 minutes)"),
        (status = 400, description = "`redirect_not_allowed`: redirect_uri is missing or not in the allowlist", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: its discovery did not answer", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client IP's budget of sign-ins begun (KEYWARD_THROTTLE__CEREMONIES_PER_IP_PER_HOUR, 300 an hour, shared with passkey login options)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a request is accepted"))),
        ServerProblems,
    ))]
pub(super) async fn start(
    st: State,
    Meta(meta): Meta,
    provider: web::Path<String>,
    q: web::Query<StartQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let Some(redirect_uri) = query_value("redirect_uri", q.redirect_uri, 2048)? else {
        return Err(ApiError::invalid_fields(vec![FieldError::new(
            "redirect_uri",
            "required",
            "redirect_uri is required: where the browser goes with its one-time code",
        )]));
    };
    let cmd = StartOAuth {
        meta,
        provider: provider.into_inner(),
        redirect_uri,
        app_state: query_value("state", q.state, 512)?,
    };
    Ok(found(st.ask(&st.to.federation.start, cmd).await?))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// VK ID's device id, needed with its code.
    device_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/callback", operation_id = "oauth_callback", tag = "federation",
    params(("provider" = String, Path), CallbackParams),
    responses(
        (status = 302, description = "To the app's redirect_uri with a one-time `code` (60 s, single use) and its `state`; or with `error`: `access_denied`, `provider_error` (the code or ID token did not check out), `account_exists` (an account has this email: sign in to it and link), `email_required`, `account_blocked`"),
        (status = 400, description = "`invalid_state`: unknown, used (a replayed callback) or older than 10 minutes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub(super) async fn callback(
    st: State,
    Meta(meta): Meta,
    provider: web::Path<String>,
    q: web::Query<CallbackParams>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let query = CallbackQuery {
        code: query_value("code", q.code, 2048)?,
        state: query_value("state", q.state, 512)?,
        error: query_value("error", q.error, 256)?,
        device_id: query_value("device_id", q.device_id, 512)?,
    };
    let cmd = OAuthCallback {
        meta,
        provider: provider.into_inner(),
        query,
    };
    Ok(found(st.ask(&st.to.federation.callback, cmd).await?))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ExchangeRequest {
    /// The one-time code the app's redirect_uri received.
    #[schema(value_type = String)]
    code: Input,
}

impl RequestBody for ExchangeRequest {
    type Valid = String;
    fn validate(self, f: &mut Fields) -> Option<String> {
        f.required("code", self.code, |k, v: String| {
            if v.is_empty() || v.len() > 256 {
                Err(FieldError::new(
                    k,
                    "invalid_code",
                    "pass the code the redirect carried",
                ))
            } else {
                Ok(v)
            }
        })
    }
}

#[utoipa::path(post, path = "/v1/auth/oauth/exchange", operation_id = "oauth_exchange", tag = "federation",
    request_body = ExchangeRequest,
    responses(
        (status = 200, description = "Tokens with amr [fed] (or, for a user with a second factor, `mfa_required` and the second step)", body = LoginReply),
        (status = 400, description = "`invalid_code`: unknown, used or older than 60 seconds", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_blocked`", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn exchange(
    st: State,
    Meta(meta): Meta,
    Valid(code): Valid<ExchangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let reply: LoginReply = st
        .ask(&st.to.federation.exchange, ExchangeOAuthCode { meta, code })
        .await?;
    Ok(private_json(&reply))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NativeRequest {
    /// A configured provider's name.
    #[schema(value_type = String, example = "google")]
    provider: Input,
    /// An OpenID provider's ID token (a JWT) the SDK returned to the app.
    #[schema(value_type = Option<String>)]
    id_token: Input,
    /// The nonce the app sent to the provider, when it sent one: the token's must match.
    #[schema(value_type = Option<String>)]
    nonce: Input,
    /// A plain OAuth 2 provider's access token (github, vk, yandex), checked to be this app's
    /// and read at its userinfo endpoint; exactly one of id_token and access_token. A generic
    /// `oauth2` provider cannot say whose a token is: 400 `native_unsupported`.
    #[schema(value_type = Option<String>)]
    access_token: Input,
}

impl RequestBody for NativeRequest {
    type Valid = (String, Option<String>, Option<String>, Option<String>);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let short = |max: usize, code: &'static str, hint: &'static str| {
            move |k: &str, v: String| {
                if v.is_empty() || v.len() > max {
                    Err(FieldError::new(k, code, hint))
                } else {
                    Ok(v)
                }
            }
        };
        let provider = f.required(
            "provider",
            self.provider,
            short(32, "invalid_provider", "a configured provider's name"),
        );
        let token = short(16 * 1024, "invalid_token", "the token the SDK returned");
        let id_token = f.optional("id_token", self.id_token, token);
        let access = f.optional("access_token", self.access_token, token);
        let tokens = match (id_token, access) {
            (Some(Some(_)), Some(Some(_))) | (Some(None), Some(None)) => {
                f.error(FieldError::new(
                    "id_token",
                    "one_token",
                    "send exactly one: id_token (OpenID providers) or access_token (github, vk, yandex, oauth2)",
                ));
                None
            }
            (Some(i), Some(a)) => Some((i, a)),
            _ => None,
        };
        let nonce = f.optional(
            "nonce",
            self.nonce,
            short(
                512,
                "invalid_nonce",
                "the nonce the app sent to the provider",
            ),
        );
        let (id_token, access_token) = tokens?;
        Some((provider?, id_token, access_token, nonce?))
    }
}

#[utoipa::path(post, path = "/v1/auth/oauth", operation_id = "oauth_native", tag = "federation",
    request_body = NativeRequest,
    responses(
        (status = 200, description = "Tokens with amr [fed] (or the second step for a user with a factor); a new identity makes an account as the web flow does", body = LoginReply),
        (status = 401, description = "`invalid_id_token`: its signature, issuer, audience (the provider's client id), expiry or nonce does not check out, or it was used already; `invalid_access_token`: the provider's userinfo endpoint refused the access token (expired, revoked, or issued to another app), or it signed in already", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_blocked`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`account_exists`: an account has this email; it is not linked silently", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`email_required`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: its discovery or userinfo endpoint did not answer, or answered badly", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn native(
    st: State,
    Meta(meta): Meta,
    Valid((provider, id_token, access_token, nonce)): Valid<NativeRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = NativeOAuth {
        meta,
        provider,
        id_token,
        access_token,
        nonce,
    };
    let reply: LoginReply = st.ask(&st.to.federation.native, cmd).await?;
    Ok(private_json(&reply))
}

#[utoipa::path(get, path = "/v1/users/me/identities", operation_id = "list_identities", tag = "federation",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's linked identities", body = IdentityList),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn identities(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let l = st
        .ask(&st.to.federation.list, ListIdentities { meta, principal })
        .await?;
    Ok(private_json(&l))
}

#[utoipa::path(delete, path = "/v1/users/me/identities/{id}", operation_id = "unlink_identity", tag = "federation",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 204, description = "Unlinked (`identity.unlinked`); signing in with it again makes no account while this one has its email"),
        (status = 403, description = "`step_up_required`: the caller has a second factor and the token's acr is not aal2", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`identity_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_login_method`: no other identity, no password set by the user, no passkey", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn unlink(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let identity_id = uuid::Uuid::parse_str(id.trim()).map_err(|_| {
        ApiError::invalid_fields(vec![FieldError::new(
            "id",
            "invalid_uuid",
            "an id is a UUID",
        )])
    })?;
    let cmd = UnlinkIdentity {
        meta,
        principal,
        identity_id,
    };
    st.ask(&st.to.federation.unlink, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LinkStartRequest {
    /// Where the browser goes when it is done, with `linked=<provider>` (or `error`): one of
    /// KEYWARD_OAUTH__REDIRECT_ALLOWLIST, exactly.
    #[schema(value_type = String, example = "https://app.example/settings")]
    redirect_uri: Input,
    /// Given back unchanged, for the app's own CSRF check.
    #[schema(value_type = Option<String>)]
    state: Input,
}

impl RequestBody for LinkStartRequest {
    type Valid = (String, Option<String>);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let bounded = |max: usize| {
            move |k: &str, v: String| {
                if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
                    Err(FieldError::new(
                        k,
                        "invalid_value",
                        format!("{k} is empty, longer than {max} bytes or has control characters"),
                    ))
                } else {
                    Ok(v)
                }
            }
        };
        let redirect_uri = f.required("redirect_uri", self.redirect_uri, bounded(2048));
        let state = f.optional("state", self.state, bounded(512));
        Some((redirect_uri?, state?))
    }
}

/// Where to send the browser to link an identity.
#[derive(serde::Serialize, ToSchema)]
pub(crate) struct LinkStarted {
    /// The provider's sign-in page (state, nonce and PKCE S256, 10 minutes).
    authorization_url: String,
}

#[utoipa::path(post, path = "/v1/users/me/identities/{provider}/start", operation_id = "link_identity_start", tag = "federation",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "A configured provider's name")),
    request_body = LinkStartRequest,
    responses(
        (status = 200, description = "Send the browser to `authorization_url`; it comes back to redirect_uri with `linked=<provider>` (`identity.linked`), or with `error`: `identity_in_use` (another account's), `access_denied`, `provider_error`", body = LinkStarted),
        (status = 400, description = "`redirect_not_allowed`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`step_up_required`: the caller has a second factor and the token's acr is not aal2", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn start_link(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    provider: web::Path<String>,
    Valid((redirect_uri, app_state)): Valid<LinkStartRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = StartLink {
        meta,
        principal,
        provider: provider.into_inner(),
        redirect_uri,
        app_state,
    };
    let r = st.ask(&st.to.federation.start_link, cmd).await?;
    Ok(private_json(&LinkStarted {
        authorization_url: r.location,
    }))
}

fn link_token(f: &mut Fields, raw: Input) -> Option<String> {
    f.required("link_token", raw, |k, v: String| {
        if v.is_empty() || v.len() > 256 {
            Err(FieldError::new(
                k,
                "invalid_link_token",
                "pass the link_token the account_exists answer carried",
            ))
        } else {
            Ok(v)
        }
    })
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LinkCodeRequest {
    /// From the `account_exists` answer (the redirect's query, or the native 409's body).
    #[schema(value_type = String)]
    link_token: Input,
}

impl RequestBody for LinkCodeRequest {
    type Valid = String;
    fn validate(self, f: &mut Fields) -> Option<String> {
        link_token(f, self.link_token)
    }
}

#[utoipa::path(post, path = "/v1/auth/oauth/link/code", operation_id = "oauth_link_code", tag = "federation",
    request_body = LinkCodeRequest,
    responses(
        (status = 202, description = "A 6-digit code is on its way to the account's verified email (10 minutes; at most 3 per link, 60 s apart)", body = CodeSent),
        (status = 400, description = "`invalid_link_token`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Wait before another code (Retry-After)", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn link_code(
    st: State,
    Meta(meta): Meta,
    Valid(link_token): Valid<LinkCodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let sent: CodeSent = st
        .ask(
            &st.to.federation.link_code,
            SendLinkCode { meta, link_token },
        )
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(sent))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LinkConfirmRequest {
    /// From the `account_exists` answer.
    #[schema(value_type = String)]
    link_token: Input,
    /// The account's password; or `code`, exactly one of them.
    #[schema(value_type = Option<String>, format = Password)]
    password: Input,
    /// The code POST /v1/auth/oauth/link/code sent to the account's email.
    #[schema(value_type = Option<String>, example = "123456")]
    code: Input,
}

impl RequestBody for LinkConfirmRequest {
    type Valid = (String, LinkProof);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let token = link_token(f, self.link_token);
        let password = f.optional("password", self.password, Password::parse);
        let code = f.optional("code", self.code, |k, v: String| {
            let v = v.trim().to_owned();
            if v.len() == 6 && v.bytes().all(|b| b.is_ascii_digit()) {
                Ok(v)
            } else {
                Err(FieldError::new(
                    k,
                    "invalid_code",
                    "the 6 digits the email carried",
                ))
            }
        });
        let proof = match (password, code) {
            (Some(Some(p)), Some(None)) => Some(LinkProof::Password(p)),
            (Some(None), Some(Some(c))) => Some(LinkProof::Code(c)),
            (Some(_), Some(_)) => {
                f.error(FieldError::new(
                    "password",
                    "one_proof",
                    "send exactly one: password (the account's) or code (from the email)",
                ));
                None
            }
            _ => None,
        };
        Some((token?, proof?))
    }
}

#[utoipa::path(post, path = "/v1/auth/oauth/link", operation_id = "oauth_link", tag = "federation",
    request_body = LinkConfirmRequest,
    responses(
        (status = 200, description = "The identity is linked to the proven account (`identity.linked`) and this is a social login: tokens with amr [fed], or the second step for a user with a factor", body = LoginReply),
        (status = 400, description = "`invalid_link_token` (unknown, used, expired after 15 minutes, or 5 wrong answers); `invalid_code`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: a wrong password (counted by the login throttle)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_blocked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`identity_in_use`: meanwhile linked to another account", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The account's login throttle (Retry-After)", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn confirm_link(
    st: State,
    Meta(meta): Meta,
    Valid((link_token, proof)): Valid<LinkConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ConfirmLink {
        meta,
        link_token,
        proof,
    };
    let reply: LoginReply = st.ask(&st.to.federation.confirm_link, cmd).await?;
    Ok(private_json(&reply))
}
