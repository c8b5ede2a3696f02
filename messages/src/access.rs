//! The access context's vocabulary: permissions (`resource:action`), role names, the roles
//! Keyward itself knows, and the messages of the check API and the role management API.

use actix::Message;
use serde::Serialize;

use crate::commands::Principal;
use crate::error::{CommandError, FieldError};
use crate::values::{RequestMeta, UserId};

/// The permissions of Keyward's own API. The `admin` role holds them all.
pub const BUILTIN_PERMISSIONS: [&str; 11] = [
    "users:read",
    "users:write",
    "users:block",
    "users:delete",
    "roles:read",
    "roles:write",
    "audit:read",
    "templates:write",
    "notifications:send",
    "clients:write",
    "access:check",
];

/// The role that holds every built-in permission. It always exists and cannot be changed.
pub const ADMIN_ROLE: &str = "admin";

/// The longest description of a role, in characters.
pub const ROLE_DESCRIPTION_MAX: usize = 200;
/// The most permissions one role holds.
pub const ROLE_PERMISSIONS_MAX: usize = 200;
/// The most checks in one batch of the check API.
pub const CHECK_BATCH_MAX: usize = 100;

fn segment_ok(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= max
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.'))
}

/// A permission: `resource:action`, each part a lower-case ASCII letter followed by up to 31
/// letters, digits, `_`, `-` or `.` (`bookings:write`, `users:read`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(String);

impl Permission {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let ok = raw
            .split_once(':')
            .is_some_and(|(r, a)| segment_ok(r, 32) && segment_ok(a, 32));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "invalid_permission",
                "a permission is resource:action in lower-case letters, digits, '_', '-' or '.', each part starting with a letter and at most 32 characters (e.g. bookings:write)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_builtin(&self) -> bool {
        BUILTIN_PERMISSIONS.contains(&self.0.as_str())
    }

    /// A built-in permission by its name (which must be one of [`BUILTIN_PERMISSIONS`]).
    pub fn builtin(name: &'static str) -> Self {
        debug_assert!(BUILTIN_PERMISSIONS.contains(&name));
        Self(name.to_owned())
    }
}

/// A role's name: a lower-case ASCII letter followed by up to 63 letters, digits, `_`, `-` or
/// `.`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if segment_ok(raw, 64) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "invalid_role_name",
                "a role name is a lower-case letter followed by up to 63 lower-case letters, digits, '_', '-' or '.' (e.g. organizer)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn admin() -> Self {
        Self(ADMIN_ROLE.to_owned())
    }
}

/// Where a role's definition comes from. Only `api` roles are changed through the API; the
/// others are changed where they are declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// Keyward's own `admin` role.
    Builtin,
    /// `[[access.roles]]` in keyward.toml, or the preset of `KEYWARD_ACCESS__PRESET`.
    Config,
    /// Created through the admin API.
    Api,
}

impl RoleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Config => "config",
            Self::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "builtin" => Self::Builtin,
            "config" => Self::Config,
            _ => Self::Api,
        }
    }
}

/// A role as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    #[schema(example = "organizer")]
    pub name: String,
    #[schema(example = "Creates and runs events")]
    pub description: String,
    #[schema(example = json!(["events:write", "events:read"]))]
    pub permissions: Vec<String>,
    pub source: RoleSource,
    /// How many users hold it.
    pub holders: u64,
}

/// A role's definition as written through the API, already valid.
#[derive(Clone, Debug)]
pub struct RoleDefinition {
    pub description: String,
    pub permissions: Vec<Permission>,
}

impl RoleDefinition {
    /// Checks a description and a list of permission names, naming each bad one.
    pub fn parse(description: &str, permissions: &[String]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let description = description.trim();
        if description.chars().count() > ROLE_DESCRIPTION_MAX
            || description.chars().any(char::is_control)
        {
            errors.push(FieldError::new(
                "description",
                "invalid_description",
                format!("a description is one line of at most {ROLE_DESCRIPTION_MAX} characters"),
            ));
        }
        if permissions.len() > ROLE_PERMISSIONS_MAX {
            errors.push(FieldError::new(
                "permissions",
                "too_many",
                format!("a role holds at most {ROLE_PERMISSIONS_MAX} permissions"),
            ));
        }
        let mut perms = Vec::new();
        for (i, p) in permissions.iter().enumerate() {
            match Permission::parse(&format!("permissions[{i}]"), p) {
                Ok(p) => perms.push(p),
                Err(e) => errors.push(e),
            }
        }
        perms.sort();
        perms.dedup();
        if errors.is_empty() {
            Ok(Self {
                description: description.to_owned(),
                permissions: perms,
            })
        } else {
            Err(errors)
        }
    }
}

/// One question to the check API: may `user_id` do `permission`?
#[derive(Clone, Debug)]
pub struct Check {
    pub user_id: UserId,
    pub permission: Permission,
}

/// Gateway → access. Answers each check from live grants: a blocked, deleted or unknown user
/// is allowed nothing. A user may ask only about themself unless they hold `access:check`; a
/// client needs the `access:check` scope.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<bool>, CommandError>")]
pub struct CheckAccess {
    pub meta: RequestMeta,
    pub asker: Asker,
    pub checks: Vec<Check>,
}

/// Who asks a [`CheckAccess`].
#[derive(Debug)]
pub enum Asker {
    /// A bearer token the access context authenticates as `AuthenticateCaller` would: the
    /// check API's hot path, one message per request instead of two.
    Bearer(secrecy::SecretString),
}

/// Gateway → access. Forward-auth with `?permission=`: the bearer token authenticated as
/// `Authenticate` does (a user's token, its session live) and the permission checked from
/// live grants, in one message instead of two. The user's principal when they hold it; a
/// [`forbidden`] error when they do not.
#[derive(Debug, Message)]
#[rtype(result = "Result<Principal, CommandError>")]
pub struct Authorize {
    pub meta: RequestMeta,
    pub token: secrecy::SecretString,
    pub permission: Permission,
}

/// Gateway → access. The caller's effective permissions, sorted.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<String>, CommandError>")]
pub struct MyPermissions {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → access. Every role (`roles:read`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<RoleView>, CommandError>")]
pub struct ListRoles {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
}

/// Gateway → access. One role (`roles:read`).
#[derive(Debug, Message)]
#[rtype(result = "Result<RoleView, CommandError>")]
pub struct GetRole {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    pub name: RoleName,
}

/// Gateway → access. Creates a role (`create`: 409 when it exists) or replaces one made
/// through the API (`roles:write`). Answers the role and whether it was created.
#[derive(Debug, Message)]
#[rtype(result = "Result<(RoleView, bool), CommandError>")]
pub struct PutRole {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub name: RoleName,
    pub definition: RoleDefinition,
    pub create: bool,
}

/// Gateway → access. Deletes a role made through the API that nobody holds (`roles:write`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct DeleteRole {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub name: RoleName,
}

/// Gateway → access. Grants (`grant`) or revokes a role of a user (`roles:write`), emitting
/// `role.granted` / `role.revoked` when it changed anything.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct SetGrant {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    pub user_id: UserId,
    pub role: RoleName,
    pub grant: bool,
}

/// A service client's name: 1–64 characters of lower-case letters, digits, `_`, `-` or `.`,
/// starting with a letter (`booking`, `catalog-service`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientName(String);

impl ClientName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if segment_ok(raw, 64) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "invalid_client_name",
                "a client name is a lower-case letter followed by up to 63 lower-case letters, digits, '_', '-' or '.' (e.g. booking)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A service client, authenticated by its access token (client_credentials grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPrincipal {
    pub client_id: String,
    /// The token's scopes that the client still holds.
    pub scopes: Vec<String>,
}

/// Whoever presented a bearer token: a user (with a live session) or a service client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    User(Principal),
    Client(ClientPrincipal),
}

impl Caller {
    /// The user who acts; none for a service client.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::User(p) => Some(p.user_id),
            Self::Client(_) => None,
        }
    }

    /// The service client that acts; none for a user.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::User(_) => None,
            Self::Client(c) => Some(&c.client_id),
        }
    }
}

/// Gateway → sessions. Like `Authenticate`, but a service client's token passes too.
#[derive(Debug, Message)]
#[rtype(result = "Result<Caller, CommandError>")]
pub struct AuthenticateCaller {
    pub meta: RequestMeta,
    pub token: secrecy::SecretString,
}

/// Gateway → access. The client_credentials grant (RFC 6749 §4.4): the client's id and
/// secret, and the scopes asked for (none: every scope of the client). Throttled like logins.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientToken, CommandError>")]
pub struct IssueClientToken {
    pub meta: RequestMeta,
    pub client_id: String,
    pub client_secret: secrecy::SecretString,
    pub scope: Option<Vec<String>>,
}

/// The token endpoint's reply (RFC 6749 §5.1).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClientToken {
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    #[schema(example = "access:check notifications:send")]
    pub scope: String,
}

/// A service client as the admin API shows it (never its secret).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    #[schema(example = "kwc_3q2x7V0b9mQeXo4hZp1sNw")]
    pub client_id: String,
    #[schema(example = "booking")]
    pub name: String,
    #[schema(example = json!(["access:check"]))]
    pub scopes: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A client with its secret, shown once: when it is created or its secret replaced.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClientCreated {
    #[serde(flatten)]
    pub client: ClientView,
    /// Shown only now; Keyward keeps only its hash.
    pub client_secret: String,
}

/// Gateway → access. Creates a service client (`clients:write`; the scopes must be built-in
/// permissions).
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientCreated, CommandError>")]
pub struct CreateClient {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub name: ClientName,
    pub scopes: Vec<Permission>,
}

/// Gateway → access. Every client (`clients:write`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ClientView>, CommandError>")]
pub struct ListClients {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → access. Deletes a client; its tokens are refused on every node within a second.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct DeleteClient {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub client_id: String,
}

/// Gateway → access. Replaces a client's secret; the old one stops working at once (tokens
/// already issued live out their short lifetime).
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientCreated, CommandError>")]
pub struct RotateClientSecret {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub client_id: String,
}

/// A user's standing, as the admin API shows and filters it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Verified, not blocked, no deletion pending.
    Active,
    /// Registered or invited, the address not yet confirmed.
    Unverified,
    Blocked,
    /// A deletion is pending.
    Deleting,
}

impl UserStatus {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        match raw {
            "active" => Ok(Self::Active),
            "unverified" => Ok(Self::Unverified),
            "blocked" => Ok(Self::Blocked),
            "deleting" => Ok(Self::Deleting),
            _ => Err(FieldError::new(
                field,
                "invalid_status",
                "use active, unverified, blocked or deleting",
            )),
        }
    }
}

/// One user in the admin listing.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUser {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub email: String,
    pub username: Option<String>,
    pub status: UserStatus,
    pub roles: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the user last opened a session (logged in), if ever.
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUserPage {
    pub items: Vec<AdminUser>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Gateway → access. Users matching the filters, oldest first (`users:read`).
#[derive(Debug, Message)]
#[rtype(result = "Result<AdminUserPage, CommandError>")]
pub struct ListUsers {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    /// The start of the email address or username.
    pub q: Option<String>,
    pub status: Option<UserStatus>,
    pub role: Option<RoleName>,
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// One line of the audit log, as the admin API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditLine {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The event, e.g. `role.granted`, `user.blocked`, `user.login_failed`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub user_id: Option<UserId>,
    /// The administrator who did it, for admin actions.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub actor_id: Option<UserId>,
    /// The service client that did it, for admin actions through a client's token.
    pub actor_client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditLine>,
    pub next_cursor: Option<String>,
}

/// Gateway → access. The audit log, newest first (`audit:read`).
#[derive(Debug, Message)]
#[rtype(result = "Result<AuditPage, CommandError>")]
pub struct QueryAudit {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    pub user_id: Option<UserId>,
    pub actor_id: Option<UserId>,
    pub actor_client_id: Option<String>,
    pub kind: Option<String>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// What the admin API adds to a user's profile: standing, sessions, factors, identities and
/// recent audit lines.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUserDetail {
    pub status: UserStatus,
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
    pub sessions: Vec<crate::commands::SessionView>,
    /// Confirmed second factors: {id, type, label, created_at, last_used_at}.
    #[schema(value_type = Vec<Object>)]
    pub factors: Vec<serde_json::Value>,
    /// Linked social identities: {id, provider, email, email_verified, created_at,
    /// last_login_at}.
    #[schema(value_type = Vec<Object>)]
    pub identities: Vec<serde_json::Value>,
    /// The latest 20 audit lines about the user.
    pub recent_audit: Vec<AuditLine>,
}

/// Gateway → access. See [`AdminUserDetail`] (`users:read`).
#[derive(Debug, Message)]
#[rtype(result = "Result<AdminUserDetail, CommandError>")]
pub struct GetUserDetail {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    pub user_id: UserId,
}

/// Gateway → accounts. An administrator creates an account for `email` (`users:write`, and
/// every built-in permission of `roles`); an invitation mail carries a link that sets the
/// password (and so verifies the address).
#[derive(Debug, Message)]
#[rtype(result = "Result<AdminUser, CommandError>")]
pub struct InviteUser {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub email: crate::Email,
    pub username: Option<crate::Username>,
    pub roles: Vec<RoleName>,
    pub locale: crate::commands::Locale,
}

/// Gateway → accounts. Ends every session of a user (`users:block`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct ForceLogout {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    pub user_id: UserId,
}

/// Gateway → profiles. Erases an account as a self-deletion would, without the grace period
/// (`users:delete`): every session ends now, the eraser removes the data within a minute.
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::profiles::DeletionScheduled, CommandError>")]
pub struct EraseUser {
    pub meta: RequestMeta,
    /// A user by their live grants, or a service client by its token\'s scopes.
    pub caller: Caller,
    pub user_id: UserId,
}

/// The answer about a user id that names no user.
pub fn user_not_found() -> CommandError {
    CommandError::NotFound {
        code: crate::codes::USER_NOT_FOUND,
        detail: "no user has this id".into(),
    }
}

/// The refusal of an action that needs `permission`.
pub fn forbidden(permission: &str) -> CommandError {
    CommandError::Forbidden {
        code: crate::codes::FORBIDDEN,
        detail: format!("this needs the permission {permission}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn permissions_are_resource_colon_action() {
        for ok in [
            "users:read",
            "bookings:write",
            "a:b",
            "chat.rooms:post-message",
        ] {
            assert!(Permission::parse("p", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "users",
            ":read",
            "users:",
            "Users:read",
            "users:read:all",
            "1users:read",
            "users :read",
            "users:*",
            "юзеры:read",
        ] {
            let e = Permission::parse("p", bad).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.code.as_str()),
                ("p", "invalid_permission"),
                "{bad}"
            );
        }
        assert!(Permission::parse("p", &format!("{}:read", "a".repeat(33))).is_err());
    }

    #[test]
    fn role_names_are_short_lower_case_words() {
        assert!(RoleName::parse("r", "organizer").is_ok());
        assert!(RoleName::parse("r", "support-2").is_ok());
        for bad in ["", "Admin", "2nd", "a b", "role:x", &"r".repeat(65)] {
            assert!(RoleName::parse("r", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_definition_names_every_bad_permission_and_sorts_the_good_ones() {
        let d = RoleDefinition::parse(" Runs events ", &["b:x".into(), "a:y".into(), "b:x".into()])
            .unwrap();
        assert_eq!(d.description, "Runs events");
        let names: Vec<_> = d.permissions.iter().map(Permission::as_str).collect();
        assert_eq!(names, ["a:y", "b:x"]);
        let errs = RoleDefinition::parse("ok", &["fine:x".into(), "bad".into(), "Also:bad".into()])
            .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["permissions[1]", "permissions[2]"]);
    }
}
