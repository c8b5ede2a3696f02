//! The OpenAPI 3.1 description of the public API, generated from the route handlers'
//! `#[utoipa::path]` attributes and the reply types, and served at `/openapi.json` with
//! Swagger UI (vendored assets, works offline) at `/docs/`.
//!
//! Request bodies are described by the routes' own DTOs (each declared once, beside its
//! handler); schemathesis in CI checks that the server keeps to them.

// The reply and JWKS types here exist only to be described.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

pub(crate) use keyward_messages::commands::{EmailVerified, SessionView, TokenPair, UserView};
use keyward_messages::FieldError;

/// An RFC 9457 problem: every error reply (`application/problem+json`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:keyward:problem:validation_failed", "title": "Invalid request", "status": 400,
    "detail": "the request has invalid fields", "code": "validation_failed",
    "errors": [{"field": "email", "code": "invalid", "message": "enter an email address like name@example.com"}]
}))]
pub(crate) struct Problem {
    /// `urn:keyward:problem:{code}`.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// Safe to show; never internal text.
    detail: String,
    /// Stable snake_case code to match on.
    code: String,
    /// For `validation_failed`: every field at fault.
    #[schema(nullable = false)]
    errors: Option<Vec<FieldError>>,
    /// For `account_exists` from a social login: proves the account to link the identity
    /// (POST /v1/auth/oauth/link), 15 minutes.
    #[schema(nullable = false)]
    link_token: Option<String>,
}

/// `202` replies: the request was taken; the outcome arrives by email.
#[derive(Serialize, ToSchema)]
pub(crate) struct Accepted {
    #[schema(example = "verification_sent")]
    status: String,
}

/// The published signing keys (RFC 7517).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]}))]
pub(crate) struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Jwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    alg: String,
    #[serde(rename = "use")]
    usage: String,
}

/// What can go wrong with any JSON body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum BodyProblems {
    /// A field is missing, mistyped or breaks a rule; or the body is not a flat JSON object.
    #[response(status = 400, content_type = "application/problem+json")]
    Invalid(Problem),
    /// The body did not arrive in time.
    #[response(status = 408, content_type = "application/problem+json", example = json!({
        "type": "urn:keyward:problem:request_timeout", "title": "Request Timeout", "status": 408,
        "detail": "the request body did not arrive in time; send it in one go", "code": "request_timeout"}))]
    Timeout(Problem),
    /// Larger than `KEYWARD_HTTP__MAX_BODY_BYTES` (16 KiB by default).
    #[response(status = 413, content_type = "application/problem+json", example = json!({
        "type": "urn:keyward:problem:payload_too_large", "title": "Payload too large", "status": 413,
        "detail": "the body is larger than the limit of 16384 bytes", "code": "payload_too_large"}))]
    TooLarge(Problem),
    /// Not `application/json`.
    #[response(status = 415, content_type = "application/problem+json", example = json!({
        "type": "urn:keyward:problem:unsupported_media_type", "title": "Unsupported media type", "status": 415,
        "detail": "send the body as JSON with Content-Type: application/json", "code": "unsupported_media_type"}))]
    MediaType(Problem),
}

/// A bearer token is required and was missing or refused.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum BearerProblems {
    /// No usable bearer, or the token is invalid, expired or its session ended.
    #[response(status = 401, content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer` or `Bearer error=\"invalid_token\"`")),
        example = json!({
        "type": "urn:keyward:problem:unauthenticated", "title": "Authentication required", "status": 401,
        "detail": "the access token is invalid, expired or revoked", "code": "unauthenticated"}))]
    Unauthenticated(Problem),
}

/// Every route: overload and unexpected failures.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum ServerProblems {
    /// Overloaded (the password hasher's queue is full: `overloaded`) or a backend is down
    /// (e.g. `signing_unavailable`: Vault Transit does not answer).
    #[response(status = 503, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds")),
        example = json!({
        "type": "urn:keyward:problem:overloaded", "title": "Service unavailable", "status": 503,
        "detail": "too many password checks are waiting; retry shortly", "code": "overloaded"}))]
    Unavailable(Problem),
    /// A bug; the cause is logged under the request's X-Request-Id.
    #[response(status = 500, content_type = "application/problem+json", example = json!({
        "type": "urn:keyward:problem:internal_error", "title": "Internal server error", "status": 500,
        "detail": "an internal error occurred; it has been logged", "code": "internal_error"}))]
    Internal(Problem),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("An access token from login or refresh."))
            .build();
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyward",
        description = "Accounts, sessions, tokens and profiles for microservices. Errors are RFC 9457 \
            `application/problem+json` with a stable `code`. Access tokens are EdDSA JWTs \
            verifiable through `/.well-known/jwks.json`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::accounts::register,
        super::accounts::verify_email_link,
        super::accounts::verify_email,
        super::accounts::resend_verification,
        super::accounts::login,
        super::sessions::refresh,
        super::sessions::logout,
        super::accounts::forgot_password,
        super::accounts::reset_password,
        super::accounts::change_password,
        super::sessions::list,
        super::sessions::revoke_others,
        super::sessions::revoke,
        super::profiles::me,
        super::profiles::update_me,
        super::profiles::delete_me,
        super::profiles::search,
        super::profiles::get,
        super::profiles::put,
        super::access::check,
        super::access::my_permissions,
        super::access::list_roles,
        super::access::create_role,
        super::access::get_role,
        super::access::put_role,
        super::access::delete_role,
        super::access::grant,
        super::access::revoke,
        super::access::token,
        super::access::list_clients,
        super::access::create_client,
        super::access::delete_client,
        super::access::rotate_secret,
        super::profiles::put_avatar,
        super::profiles::delete_avatar,
        super::profiles::avatar,
        super::profiles::start_phone,
        super::profiles::confirm_phone,
        super::profiles::settings,
        super::profiles::patch_settings,
        super::profiles::activity,
        super::profiles::export,
        super::sessions::forward_auth,
        super::sessions::jwks,
        super::admin::block,
        super::admin::unblock,
        super::admin::list_users,
        super::admin::get_user,
        super::admin::invite,
        super::admin::erase,
        super::admin::logout,
        super::admin::audit,
        super::notify::send,
        super::notify::cancel,
        super::notify::inbox,
        super::notify::stream,
        super::notify::read,
        super::notify::read_all,
        super::notify::preferences,
        super::notify::put_preferences,
        super::notify::get_template,
        super::notify::put_template,
        super::notify::preview_template,
        super::notify::deliveries,
        super::notify::subscribe_push,
        super::notify::unsubscribe_push,
        super::notify::vapid_key,
        super::mfa::enroll_totp,
        super::mfa::confirm_totp,
        super::mfa::new_codes,
        super::mfa::list,
        super::mfa::remove,
        super::mfa::verify,
        super::mfa::step_up,
        super::mfa::reset,
        super::mfa::enroll_sms,
        super::mfa::enroll_email,
        super::mfa::send_code,
        super::mfa::passkey_options,
        super::mfa::register_passkey,
        super::mfa::passkey_login_options,
        super::mfa::passkey_login,
        super::federation::start,
        super::federation::callback,
        super::federation::exchange,
        super::federation::native,
        super::federation::identities,
        super::federation::unlink,
        super::federation::start_link,
        super::federation::link_code,
        super::federation::confirm_link,
    ),
    components(schemas(Problem, FieldError, TokenPair, UserView, SessionView, EmailVerified)),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration, email verification, login, passwords"),
        (name = "sessions", description = "Refresh, logout, sessions, forward-auth, keys"),
        (name = "profiles", description = "Profiles, search, settings, activity, export, deletion, avatars"),
        (name = "access", description = "Permission checks and the caller's own permissions"),
        (name = "mfa", description = "Second factors (TOTP, SMS and email codes, passkeys, recovery codes), passwordless login with a passkey, the second step of a login, step-up"),
        (name = "federation", description = "Social login through OpenID Connect providers: the web flow and its one-time code"),
        (name = "notifications", description = "The send API for products' services, the in-app inbox, preferences, and templates and the delivery log for admins"),
        (name = "admin", description = "The management API: each route needs the permission it names (the `admin` role holds them all)"),
    ),
)]
pub(crate) struct ApiDoc;

/// Swagger UI at `/docs/` (its assets are compiled in: no CDN), reading [`spec`].
pub(crate) fn swagger_ui() -> utoipa_swagger_ui::SwaggerUi {
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none");
    utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").config(config)
}

/// `GET /openapi.json`: the spec, serialised once per process. The document held by each HTTP
/// worker, as Swagger UI's own route keeps it, took about 5 MiB a worker (the soak's heap
/// profile, docs/PERFORMANCE.md); its JSON is 0.3 MiB.
pub(crate) async fn spec() -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    static SPEC: std::sync::OnceLock<Option<actix_web::web::Bytes>> = std::sync::OnceLock::new();
    let body = SPEC.get_or_init(|| match serde_json::to_vec(&ApiDoc::openapi()) {
        Ok(v) => Some(v.into()),
        Err(e) => {
            tracing::error!(error = %e, "serialising the OpenAPI document failed");
            None
        }
    });
    let body = body
        .clone()
        .ok_or_else(crate::problem::ApiError::internal)?;
    Ok(actix_web::HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body))
}

/// The spec as pretty JSON (what `keyward openapi` prints and docs/openapi.json holds).
pub fn spec_json() -> Result<String, serde_json::Error> {
    ApiDoc::openapi().to_pretty_json()
}
