//! Routes of the access context: the check API, the caller's own permissions, roles and
//! grants. Who may do what is decided by the access actor from live grants.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use keyward_messages::access::*;
use keyward_messages::{FieldError, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::openapi::*;
use super::private_json;
use crate::extract::{Authenticated, Meta};
use crate::input::{Fields, JsonObject};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the access routes (and forward-auth's `?permission=`) send to the access context.
    pub struct AccessApi {
        check: CheckAccess,
        my_permissions: MyPermissions,
        list_roles: ListRoles,
        get_role: GetRole,
        put_role: PutRole,
        delete_role: DeleteRole,
        set_grant: SetGrant,
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

/// `POST /v1/access/check`.
#[utoipa::path(post, path = "/v1/access/check", tag = "access",
    security(("bearer" = [])),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "`{allowed}` for one check, `{results: [{allowed}]}` for a batch, in order. A blocked, unverified or unknown user is allowed nothing", body = Allowed),
        (status = 403, description = "Asking about another user needs `access:check`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn check(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (checks, batch) = checks(&body)?;
    let cmd = CheckAccess {
        meta,
        principal,
        checks,
    };
    let answers = st.ask(&st.to.access.check, cmd).await?;
    if batch {
        let results = answers
            .into_iter()
            .map(|allowed| Allowed { allowed })
            .collect();
        Ok(private_json(&CheckResults { results }))
    } else {
        let allowed = answers.first().copied().unwrap_or(false);
        Ok(private_json(&Allowed { allowed }))
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
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let roles = st
        .ask(&st.to.access.list_roles, ListRoles { meta, principal })
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
    Authenticated(principal): Authenticated,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = GetRole {
        meta,
        principal,
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
    principal: keyward_messages::commands::Principal,
    path: (String, String),
    grant: bool,
) -> Result<HttpResponse, ApiError> {
    let (user_id, role) = grant_target(&path)?;
    let cmd = SetGrant {
        meta,
        principal,
        user_id,
        role,
        grant,
    };
    st.ask(&st.to.access.set_grant, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /v1/admin/users/{id}/roles/{role}`.
#[utoipa::path(put, path = "/v1/admin/users/{id}/roles/{role}", tag = "admin",
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
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_grant(st, meta, principal, path.into_inner(), true).await
}

/// `DELETE /v1/admin/users/{id}/roles/{role}`.
#[utoipa::path(delete, path = "/v1/admin/users/{id}/roles/{role}", tag = "admin",
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
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_grant(st, meta, principal, path.into_inner(), false).await
}
