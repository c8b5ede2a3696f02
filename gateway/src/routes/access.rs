//! Routes of the access context: the check API, the caller's own permissions, roles and
//! grants. Who may do what is decided by the access actor from live grants.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use keyward_messages::access::*;
use keyward_messages::{FieldError, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use utoipa::ToSchema;

use super::openapi::*;
use super::private_json;
use crate::extract::{Authenticated, AuthenticatedCaller, BearerToken, Meta};
use crate::input::{json_object, Fields, JsonObject};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the access routes (and forward-auth's `?permission=`) send to the access context.
    pub struct AccessApi {
        check: CheckAccess,
        authorize: keyward_messages::access::Authorize,
        my_permissions: MyPermissions,
        list_roles: ListRoles,
        get_role: GetRole,
        put_role: PutRole,
        delete_role: DeleteRole,
        set_grant: SetGrant,
        issue_client_token: IssueClientToken,
        create_client: CreateClient,
        list_clients: ListClients,
        delete_client: DeleteClient,
        rotate_client_secret: RotateClientSecret,
        list_users: keyward_messages::access::ListUsers,
        get_user_detail: keyward_messages::access::GetUserDetail,
        query_audit: keyward_messages::access::QueryAudit,
    }
}

/// One question: may this user do this?
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct CheckItem {
    #[schema(value_type = String, format = Uuid)]
    user_id: String,
    #[schema(example = "bookings:write")]
    permission: String,
}

/// `{user_id, permission}`, or `{checks: [{user_id, permission}, …]}` with at most 100.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct CheckRequest {
    #[schema(value_type = Option<String>, format = Uuid)]
    user_id: Option<String>,
    #[schema(example = "bookings:write")]
    permission: Option<String>,
    #[schema(max_items = 100)]
    checks: Option<Vec<CheckItem>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Allowed {
    allowed: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CheckResults {
    /// In the order of `checks`.
    results: Vec<Allowed>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PermissionList {
    #[schema(example = json!(["bookings:read", "bookings:write"]))]
    permissions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RoleList {
    roles: Vec<RoleView>,
}

/// A role's definition. In a `POST` the name is in the body; in a `PUT` it is the path's.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RoleRequest {
    /// Only in `POST /v1/admin/roles`.
    #[schema(example = "organizer")]
    name: Option<String>,
    #[schema(example = "Creates and runs events", max_length = 200)]
    description: Option<String>,
    #[schema(example = json!(["events:read", "events:write"]), max_items = 200)]
    permissions: Vec<String>,
}

fn text(f: &mut Fields, body: &Map<String, Value>, key: &str) -> Option<String> {
    match body.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            f.error(FieldError::new(
                key,
                "not_a_string",
                format!("{key} must be a string"),
            ));
            None
        }
    }
}

fn check_of(f: &mut Fields, prefix: &str, item: &Map<String, Value>) -> Option<Check> {
    let uf = format!("{prefix}user_id");
    let pf = format!("{prefix}permission");
    let user = match item.get("user_id") {
        Some(Value::String(s)) => match uuid::Uuid::parse_str(s) {
            Ok(u) => Some(UserId(u)),
            Err(_) => {
                f.error(FieldError::new(&uf, "invalid_uuid", "a user id is a UUID"));
                None
            }
        },
        _ => {
            f.error(FieldError::new(
                &uf,
                "required",
                "the user's id (a UUID string) is required",
            ));
            None
        }
    };
    let perm = match item.get("permission") {
        Some(Value::String(s)) => Permission::parse(&pf, s).map_err(|e| f.error(e)).ok(),
        _ => {
            f.error(FieldError::new(
                &pf,
                "required",
                "a permission such as bookings:write is required",
            ));
            None
        }
    };
    Some(Check {
        user_id: user?,
        permission: perm?,
    })
}

/// A check as most bodies send it, its strings borrowed from the body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuickCheck<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    permission: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuickBatch<'a> {
    #[serde(borrow)]
    checks: Vec<QuickCheck<'a>>,
}

impl QuickCheck<'_> {
    fn valid(&self) -> Option<Check> {
        Some(Check {
            user_id: UserId(uuid::Uuid::parse_str(&self.user_id).ok()?),
            permission: Permission::parse("permission", &self.permission).ok()?,
        })
    }
}

/// The checks of a well-formed body without building a JSON map (half of what the check API's
/// handler spent was there). `None` for anything else, which [`checks`] then reads again to
/// name every problem: a body it accepts is accepted here alike, or left to it.
fn quick_checks(raw: &str) -> Option<(Vec<Check>, bool)> {
    if let Ok(one) = serde_json::from_str::<QuickCheck>(raw) {
        return Some((vec![one.valid()?], false));
    }
    let batch = serde_json::from_str::<QuickBatch>(raw).ok()?;
    if batch.checks.is_empty() || batch.checks.len() > CHECK_BATCH_MAX {
        return None;
    }
    let checks = batch
        .checks
        .iter()
        .map(QuickCheck::valid)
        .collect::<Option<_>>()?;
    Some((checks, true))
}

/// The checks of a body, and whether it was a batch.
fn checks(body: &Map<String, Value>) -> Result<(Vec<Check>, bool), ApiError> {
    let mut f = Fields::default();
    for key in body.keys() {
        if !["user_id", "permission", "checks"].contains(&key.as_str()) {
            f.error(FieldError::new(
                key,
                "unknown_field",
                "send {user_id, permission} or {checks: [...]}",
            ));
        }
    }
    let batch = body.get("checks");
    let mut out = Vec::new();
    match batch {
        Some(Value::Array(items)) => {
            if body.contains_key("user_id") || body.contains_key("permission") {
                f.error(FieldError::new(
                    "checks",
                    "ambiguous",
                    "send either {user_id, permission} or {checks}, not both",
                ));
            }
            if items.is_empty() || items.len() > CHECK_BATCH_MAX {
                f.error(FieldError::new(
                    "checks",
                    "out_of_range",
                    format!("send 1 to {CHECK_BATCH_MAX} checks"),
                ));
            } else {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(o) => {
                            out.extend(check_of(&mut f, &format!("checks[{i}]."), o))
                        }
                        _ => f.error(FieldError::new(
                            &format!("checks[{i}]"),
                            "not_an_object",
                            "each check is {user_id, permission}",
                        )),
                    }
                }
            }
        }
        Some(_) => f.error(FieldError::new(
            "checks",
            "not_an_array",
            "checks is an array of {user_id, permission}",
        )),
        None => out.extend(check_of(&mut f, "", body)),
    }
    let is_batch = batch.is_some();
    f.done(|| Some((out, is_batch)))
}

/// `POST /v1/access/check`: the bearer is a user's token or a service client's (from
/// `POST /v1/oauth/token`).
#[utoipa::path(post, path = "/v1/access/check", operation_id = "check_access", tag = "access",
    security(("bearer" = [])),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "`{allowed}` for one check, `{results: [{allowed}]}` for a batch, in order. A blocked, unverified or unknown user is allowed nothing", body = Allowed),
        (status = 403, description = "Asking about another user needs `access:check` (a user's permission, or a service client's scope)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn check(
    st: State,
    Meta(meta): Meta,
    BearerToken(token): BearerToken,
    body: Result<web::Json<Box<RawValue>>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    let parsed = body.and_then(|raw| {
        quick_checks(raw.get())
            .map_or_else(|| checks(&json_object(&raw)?), Ok)
            .map_err(actix_web::Error::from)
    });
    let (checks, batch) = match parsed {
        Ok(c) => c,
        Err(e) => {
            // A caller learns that its token is bad before what is wrong with its body.
            let cmd = AuthenticateCaller { meta, token };
            st.ask(&st.to.sessions.authenticate_caller, cmd)
                .await
                .map_err(ApiError::with_invalid_token_challenge)?;
            return Err(e);
        }
    };
    let cmd = CheckAccess {
        meta,
        asker: Asker::Bearer(token),
        checks,
    };
    let answers = st
        .ask(&st.to.access.check, cmd)
        .await
        .map_err(ApiError::with_invalid_token_challenge)?;
    if batch {
        let results = answers
            .into_iter()
            .map(|allowed| Allowed { allowed })
            .collect();
        Ok(private_json(&CheckResults { results }))
    } else {
        // NOTE: the check API's one answer, written without a serializer: services call it
        // on most of their own requests.
        let body = if answers.first() == Some(&true) {
            r#"{"allowed":true}"#
        } else {
            r#"{"allowed":false}"#
        };
        Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(header::ContentType::json())
            .body(body))
    }
}

/// `GET /v1/users/me/permissions`.
#[utoipa::path(get, path = "/v1/users/me/permissions", tag = "access",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the caller may do now, from their live grants", body = PermissionList),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn my_permissions(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let permissions = st
        .ask(
            &st.to.access.my_permissions,
            MyPermissions { meta, principal },
        )
        .await?;
    Ok(private_json(&PermissionList { permissions }))
}

fn role_name(raw: &str) -> Result<RoleName, ApiError> {
    RoleName::parse("name", raw).map_err(|e| ApiError::invalid_fields(vec![e]))
}

/// A role body: its name (from the body when `named`), description and permissions.
fn role_body(
    body: &Map<String, Value>,
    named: bool,
) -> Result<(Option<RoleName>, RoleDefinition), ApiError> {
    let mut f = Fields::default();
    let allowed: &[&str] = if named {
        &["name", "description", "permissions"]
    } else {
        &["description", "permissions"]
    };
    for key in body.keys() {
        if !allowed.contains(&key.as_str()) {
            f.error(FieldError::new(
                key,
                "unknown_field",
                format!("a role has only {}", allowed.join(", ")),
            ));
        }
    }
    let name = if named {
        match text(&mut f, body, "name") {
            Some(n) => RoleName::parse("name", &n).map_err(|e| f.error(e)).ok(),
            None => {
                f.error(FieldError::new(
                    "name",
                    "required",
                    "a role needs a name such as organizer",
                ));
                None
            }
        }
    } else {
        None
    };
    let description = text(&mut f, body, "description").unwrap_or_default();
    let perms: Option<Vec<String>> = match body.get("permissions") {
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v {
                    Value::String(s) => {
                        let field = format!("permissions[{i}]");
                        if let Err(e) = Permission::parse(&field, s) {
                            f.error(e);
                        }
                        out.push(s.clone());
                    }
                    _ => f.error(FieldError::new(
                        &format!("permissions[{i}]"),
                        "not_a_string",
                        "a permission is a string such as events:write",
                    )),
                }
            }
            Some(out)
        }
        None | Some(Value::Null) => {
            f.error(FieldError::new(
                "permissions",
                "required",
                "list the role's permissions (an empty list is allowed)",
            ));
            None
        }
        Some(_) => {
            f.error(FieldError::new(
                "permissions",
                "not_an_array",
                "permissions is an array of strings",
            ));
            None
        }
    };
    let def = match perms {
        // NOTE: each permission was checked above, by its index in the body.
        Some(p) => RoleDefinition::parse(&description, &p)
            .map_err(|errs| {
                errs.into_iter()
                    .filter(|e| !e.field.starts_with("permissions["))
                    .for_each(|e| f.error(e))
            })
            .ok(),
        None => {
            if let Err(errs) = RoleDefinition::parse(&description, &[]) {
                errs.into_iter().for_each(|e| f.error(e));
            }
            None
        }
    };
    f.done(|| Some((name, def?)))
}

/// `GET /v1/admin/roles`.
#[utoipa::path(get, path = "/v1/admin/roles", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every role, by name, with how many users hold it", body = RoleList),
        (status = 403, description = "Needs `roles:read`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn list_roles(
    st: State,
    Meta(meta): Meta,
    AuthenticatedCaller(caller): AuthenticatedCaller,
) -> Result<HttpResponse, ApiError> {
    let roles = st
        .ask(&st.to.access.list_roles, ListRoles { meta, caller })
        .await?;
    Ok(private_json(&RoleList { roles }))
}

/// `POST /v1/admin/roles`.
#[utoipa::path(post, path = "/v1/admin/roles", tag = "admin",
    security(("bearer" = [])),
    request_body = RoleRequest,
    responses(
        (status = 201, description = "Created", body = RoleView,
            headers(("Location" = String, description = "/v1/admin/roles/{name}"))),
        (status = 403, description = "Needs `roles:write`, and every built-in permission of the role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A role of that name exists (`role_exists`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn create_role(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (name, definition) = role_body(&body, true)?;
    let Some(name) = name else {
        return Err(ApiError::internal());
    };
    let cmd = PutRole {
        meta,
        principal,
        name,
        definition,
        create: true,
    };
    let (role, _) = st.ask(&st.to.access.put_role, cmd).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/admin/roles/{}", role.name)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(role))
}

/// `GET /v1/admin/roles/{name}`.
#[utoipa::path(get, path = "/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role's name")),
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = 403, description = "Needs `roles:read`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such role (`role_not_found`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn get_role(
    st: State,
    Meta(meta): Meta,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = GetRole {
        meta,
        caller,
        name: role_name(&name)?,
    };
    Ok(private_json(&st.ask(&st.to.access.get_role, cmd).await?))
}

/// `PUT /v1/admin/roles/{name}`.
#[utoipa::path(put, path = "/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role's name")),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "Replaced", body = RoleView),
        (status = 201, description = "Created", body = RoleView),
        (status = 403, description = "Needs `roles:write`, and every built-in permission of the role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The role is built in or declared in the configuration, or the change would take `roles:write` from the caller (`self_lockout`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn put_role(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    name: web::Path<String>,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let name = role_name(&name)?;
    let (_, definition) = role_body(&body, false)?;
    let cmd = PutRole {
        meta,
        principal,
        name,
        definition,
        create: false,
    };
    let (role, created) = st.ask(&st.to.access.put_role, cmd).await?;
    if created {
        Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/v1/admin/roles/{}", role.name)))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(role))
    } else {
        Ok(private_json(&role))
    }
}

/// `DELETE /v1/admin/roles/{name}`.
#[utoipa::path(delete, path = "/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Needs `roles:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Users hold it (`role_in_use`), or it is built in or declared in the configuration", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn delete_role(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = DeleteRole {
        meta,
        principal,
        name: role_name(&name)?,
    };
    st.ask(&st.to.access.delete_role, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn grant_target(path: &(String, String)) -> Result<(UserId, RoleName), ApiError> {
    let mut errors = Vec::new();
    let user = UserId::parse("id", &path.0)
        .map_err(|e| errors.push(e))
        .ok();
    let role = RoleName::parse("role", &path.1)
        .map_err(|e| errors.push(e))
        .ok();
    match (user, role) {
        (Some(u), Some(r)) => Ok((u, r)),
        _ => Err(ApiError::invalid_fields(errors)),
    }
}

async fn set_grant(
    st: State,
    meta: keyward_messages::RequestMeta,
    caller: keyward_messages::access::Caller,
    path: (String, String),
    grant: bool,
) -> Result<HttpResponse, ApiError> {
    let (user_id, role) = grant_target(&path)?;
    let cmd = SetGrant {
        meta,
        caller,
        user_id,
        role,
        grant,
    };
    st.ask(&st.to.access.set_grant, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /v1/admin/users/{id}/roles/{role}`.
#[utoipa::path(put, path = "/v1/admin/users/{id}/roles/{role}", operation_id = "grant_role", tag = "admin",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "The user"),
        ("role" = String, Path, description = "The role to grant"),
    ),
    responses(
        (status = 204, description = "Granted (or already held); `role.granted` when it changed anything"),
        (status = 400, description = "`id` is not a UUID or `role` not a role name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `roles:write`, and every built-in permission of the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user_not_found`) or role (`role_not_found`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn grant(
    st: State,
    Meta(meta): Meta,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_grant(st, meta, caller, path.into_inner(), true).await
}

/// `DELETE /v1/admin/users/{id}/roles/{role}`.
#[utoipa::path(delete, path = "/v1/admin/users/{id}/roles/{role}", operation_id = "revoke_role", tag = "admin",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "The user"),
        ("role" = String, Path, description = "The role to revoke"),
    ),
    responses(
        (status = 204, description = "Revoked (or not held); `role.revoked` when it changed anything. Refused on every node within a second"),
        (status = 400, description = "`id` is not a UUID or `role` not a role name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `roles:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller would lose `roles:write` (`self_lockout`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn revoke(
    st: State,
    Meta(meta): Meta,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_grant(st, meta, caller, path.into_inner(), false).await
}

/// An error of the token endpoint (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_client", "error_description": "client authentication failed"}))]
pub(crate) struct OAuthError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope` or
    /// `too_many_requests`.
    error: &'static str,
    error_description: String,
}

fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(OAuthError {
            error,
            error_description: description.into(),
        })
}

/// The form of the client_credentials grant (RFC 6749 §4.4.2).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TokenForm {
    #[schema(example = "client_credentials")]
    grant_type: String,
    /// Space-separated scopes; none asks for every scope of the client.
    #[schema(example = "access:check")]
    scope: Option<String>,
    /// With `client_secret`, instead of HTTP Basic (client_secret_post).
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The largest form the token endpoint reads.
const TOKEN_FORM_MAX_BYTES: usize = 4096;

/// `client_id:client_secret` from `Authorization: Basic …` (each part form-url-encoded, RFC
/// 6749 §2.3.1); `Err` when the header is there but unusable.
fn basic_credentials(req: &actix_web::HttpRequest) -> Result<Option<(String, String)>, ()> {
    use base64::Engine as _;
    let Some(v) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let (scheme, rest) = v.trim().split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| ())?;
    let text = String::from_utf8(raw).map_err(|_| ())?;
    let (id, secret) = text.split_once(':').ok_or(())?;
    let decode = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// `POST /v1/oauth/token`: the client_credentials grant (RFC 6749 §4.4) for service clients,
/// authenticated by HTTP Basic (client_secret_basic) or in the form (client_secret_post).
#[utoipa::path(post, path = "/v1/oauth/token", operation_id = "oauth_token", tag = "access",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A short-lived access token (typ at+jwt) with `client_id` and `scope`", body = ClientToken,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "`invalid_request`, `unsupported_grant_type` or `invalid_scope` (RFC 6749 §5.2)", body = OAuthError),
        (status = 401, description = "`invalid_client`: unknown client or wrong secret", body = OAuthError,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"keyward\"` when HTTP Basic was used"))),
        (status = 413, description = "The form is larger than 4 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts for this client or address", body = OAuthError,
            headers(("Retry-After" = u64, description = "seconds"))),
        ServerProblems,
    ))]
pub(super) async fn token(
    st: State,
    Meta(meta): Meta,
    req: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the request as application/x-www-form-urlencoded",
        ));
    }
    let bytes = crate::input::read_bytes(body, TOKEN_FORM_MAX_BYTES).await?;
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(&bytes) {
        if params.iter().any(|(seen, _)| *seen == k) {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{k} is given more than once"),
            ));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match get("grant_type").as_deref() {
        None => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required (client_credentials)",
            ))
        }
        Some("client_credentials") => {}
        Some(_) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ))
        }
    }
    let basic = match basic_credentials(&req) {
        Ok(b) => b,
        Err(()) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Authorization header is not HTTP Basic client_id:client_secret",
            ))
        }
    };
    let in_form = match (get("client_id"), get("client_secret")) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send both client_id and client_secret",
            ))
        }
    };
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, in_form) {
        (Some(_), Some(_)) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "authenticate the client one way only: HTTP Basic or the form",
            ))
        }
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => {
            return Ok(HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"keyward\""))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(OAuthError {
                    error: "invalid_client",
                    error_description:
                        "authenticate the client with HTTP Basic or client_id and client_secret"
                            .into(),
                }))
        }
    };
    if client_id.is_empty() || client_id.len() > 64 || secret.is_empty() || secret.len() > 512 {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    let scope = match get("scope") {
        None => None,
        Some(s) => {
            let mut out = Vec::new();
            for part in s.split(' ').filter(|p| !p.is_empty()) {
                if Permission::parse("scope", part).is_err() {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        format!("{part:?} is not a scope"),
                    ));
                }
                out.push(part.to_owned());
            }
            Some(out)
        }
    };
    let cmd = IssueClientToken {
        meta,
        client_id,
        client_secret: secrecy::SecretString::from(secret),
        scope,
    };
    match st.ask(&st.to.access.issue_client_token, cmd).await {
        Ok(t) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(t)),
        Err(e) => match (actix_web::ResponseError::status_code(&e), e.code()) {
            (StatusCode::UNAUTHORIZED, _) => {
                let mut r = oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication failed",
                );
                if used_basic {
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Basic realm=\"keyward\""),
                    );
                }
                Ok(r)
            }
            (StatusCode::BAD_REQUEST, "invalid_scope") => Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the client was not given a scope it asked for",
            )),
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                let mut r = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "too many failed attempts; retry later",
                );
                if let Some(secs) = e.retry_after_secs() {
                    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                Ok(r)
            }
            _ => Err(e),
        },
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClientList {
    clients: Vec<ClientView>,
}

/// A new service client.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ClientRequest {
    #[schema(example = "booking")]
    name: String,
    /// Keyward's permissions the client may ask for.
    #[schema(example = json!(["access:check"]))]
    scopes: Vec<String>,
}

fn client_body(body: &Map<String, Value>) -> Result<(ClientName, Vec<Permission>), ApiError> {
    let mut f = Fields::default();
    for key in body.keys() {
        if !["name", "scopes"].contains(&key.as_str()) {
            f.error(FieldError::new(
                key,
                "unknown_field",
                "a client has only name and scopes",
            ));
        }
    }
    let name = match text(&mut f, body, "name") {
        Some(n) => ClientName::parse("name", &n).map_err(|e| f.error(e)).ok(),
        None => {
            f.error(FieldError::new(
                "name",
                "required",
                "name the client after its service, e.g. booking",
            ));
            None
        }
    };
    let mut scopes = Vec::new();
    match body.get("scopes") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                let field = format!("scopes[{i}]");
                let p = v
                    .as_str()
                    .ok_or_else(|| {
                        FieldError::new(
                            &field,
                            "not_a_string",
                            "a scope is a string such as access:check",
                        )
                    })
                    .and_then(|s| Permission::parse(&field, s));
                match p {
                    Ok(p) if p.is_builtin() => scopes.push(p),
                    Ok(p) => f.error(FieldError::new(
                        &field,
                        "unknown_scope",
                        format!(
                            "{} is not a scope; use one of {}",
                            p.as_str(),
                            BUILTIN_PERMISSIONS.join(", ")
                        ),
                    )),
                    Err(e) => f.error(e),
                }
            }
        }
        _ => f.error(FieldError::new(
            "scopes",
            "required",
            "give the client at least one scope, e.g. [\"access:check\"]",
        )),
    }
    f.done(|| Some((name?, scopes)))
}

/// `GET /v1/admin/clients`.
#[utoipa::path(get, path = "/v1/admin/clients", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every service client (never a secret)", body = ClientList),
        (status = 403, description = "Needs `clients:write`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn list_clients(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let clients = st
        .ask(&st.to.access.list_clients, ListClients { meta, principal })
        .await?;
    Ok(private_json(&ClientList { clients }))
}

/// `POST /v1/admin/clients`.
#[utoipa::path(post, path = "/v1/admin/clients", tag = "admin",
    security(("bearer" = [])),
    request_body = ClientRequest,
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = ClientCreated),
        (status = 403, description = "Needs `clients:write`, and every scope given", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn create_client(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (name, scopes) = client_body(&body)?;
    let created = st
        .ask(
            &st.to.access.create_client,
            CreateClient {
                meta,
                principal,
                name,
                scopes,
            },
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(created))
}

/// `DELETE /v1/admin/clients/{id}`.
#[utoipa::path(delete, path = "/v1/admin/clients/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The client's id")),
    responses(
        (status = 204, description = "Deleted; its tokens are refused on every node within a second"),
        (status = 403, description = "Needs `clients:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client (`client_not_found`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn delete_client(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = DeleteClient {
        meta,
        principal,
        client_id: id.into_inner(),
    };
    st.ask(&st.to.access.delete_client, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/admin/clients/{id}/secret`.
#[utoipa::path(post, path = "/v1/admin/clients/{id}/secret", operation_id = "rotate_client_secret", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The client's id")),
    responses(
        (status = 200, description = "A new secret, shown only now; the old one no longer works", body = ClientCreated),
        (status = 403, description = "Needs `clients:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn rotate_secret(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = RotateClientSecret {
        meta,
        principal,
        client_id: id.into_inner(),
    };
    Ok(private_json(
        &st.ask(&st.to.access.rotate_client_secret, cmd).await?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// What [`checks`] makes of a body: its checks (as text) or the fields it names.
    fn full(body: &str) -> Result<(String, bool), Vec<String>> {
        let Value::Object(map) = serde_json::from_str::<Value>(body).unwrap() else {
            panic!("not an object: {body}");
        };
        match checks(&map) {
            Ok((c, batch)) => Ok((format!("{c:?}"), batch)),
            Err(e) => Err(e.field_names()),
        }
    }

    #[test]
    fn the_quick_reading_accepts_only_what_the_full_one_does_and_reads_it_alike() {
        let u = "0b6c3a5e-8f1e-4f8e-9c3b-2a1d4e5f6a7b";
        let bodies = [
            format!(r#"{{"user_id":"{u}","permission":"events:read"}}"#),
            format!(r#"{{"permission":"events:read","user_id":"{u}"}}"#),
            format!(
                r#"{{"user_id":"{}","permission":"events:read"}}"#,
                u.to_uppercase()
            ),
            // An escaped string is read, not borrowed.
            format!(r#"{{"user_id":"{u}","permission":"events\u003aread"}}"#),
            format!(
                r#"{{"checks":[{{"user_id":"{u}","permission":"a:b"}},{{"user_id":"{u}","permission":"c:d"}}]}}"#
            ),
            // The full reading ignores an item's other members.
            format!(r#"{{"checks":[{{"user_id":"{u}","permission":"a:b","why":1}}]}}"#),
            format!(r#"{{"user_id":"{u}","permission":"events:read","extra":1}}"#),
            format!(r#"{{"user_id":"{u}","permission":"events:read","checks":[]}}"#),
            format!(r#"{{"user_id":"{u}","user_id":"{u}","permission":"a:b"}}"#),
            r#"{"user_id":"x","permission":"events:read"}"#.to_owned(),
            format!(r#"{{"user_id":"{u}","permission":"EVENTS"}}"#),
            format!(r#"{{"user_id":"{u}","permission":null}}"#),
            r#"{"user_id":7,"permission":"a:b"}"#.to_owned(),
            format!(r#"{{"user_id":"{u}"}}"#),
            r#"{"checks":[]}"#.to_owned(),
            r#"{"checks":{}}"#.to_owned(),
            r#"{}"#.to_owned(),
        ];
        let mut quick = 0;
        for body in &bodies {
            let expected = full(body);
            if let Some((c, batch)) = quick_checks(body) {
                quick += 1;
                assert_eq!(Ok((format!("{c:?}"), batch)), expected, "{body}");
            }
        }
        // The first five take the quick way; the rest, the full reading alone.
        assert_eq!(quick, 5);
        let many: Vec<String> = (0..=CHECK_BATCH_MAX)
            .map(|_| format!(r#"{{"user_id":"{u}","permission":"a:b"}}"#))
            .collect();
        let body = format!(r#"{{"checks":[{}]}}"#, many.join(","));
        assert!(quick_checks(&body).is_none());
        assert_eq!(full(&body), Err(vec!["checks".to_owned()]));
    }
}
