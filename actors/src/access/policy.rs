//! The access rules as pure functions: which roles exist before anyone edits them (the
//! built-in `admin`, a seed product's preset, `[[access.roles]]`), and which changes would
//! lock an administrator out.

use std::collections::BTreeSet;

use keyward_config::AccessSettings;
use keyward_messages::access::{Permission, RoleName, RoleSource, ADMIN_ROLE, BUILTIN_PERMISSIONS};

/// A role whose definition lives outside the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub source: RoleSource,
}

fn role(name: &str, description: &str, permissions: &[&str]) -> Declared {
    let mut permissions: Vec<String> = permissions.iter().map(|p| (*p).to_owned()).collect();
    permissions.sort();
    permissions.dedup();
    Declared {
        name: name.to_owned(),
        description: description.to_owned(),
        permissions,
        source: RoleSource::Config,
    }
}

/// The roles of a seed product (`KEYWARD_ACCESS__PRESET`), besides `admin`.
pub fn preset(name: &str) -> Vec<Declared> {
    match name {
        "clinic" => vec![
            role(
                "patient",
                "Books and manages their own appointments",
                &["appointments:read", "appointments:write", "doctors:read"],
            ),
            role(
                "doctor",
                "Sees patients and manages their schedule and appointments",
                &[
                    "appointments:read",
                    "appointments:manage",
                    "doctors:read",
                    "patients:read",
                    "schedule:write",
                ],
            ),
            role(
                "support",
                "Helps patients: reads accounts and appointments, blocks abuse",
                &[
                    "appointments:read",
                    "appointments:manage",
                    "doctors:read",
                    "patients:read",
                    "users:read",
                    "users:block",
                ],
            ),
        ],
        "events" => vec![
            role(
                "attendee",
                "Registers for events",
                &["events:read", "registrations:write"],
            ),
            role(
                "organizer",
                "Creates and runs events and their registrations",
                &[
                    "events:read",
                    "events:write",
                    "registrations:read",
                    "registrations:manage",
                ],
            ),
        ],
        "social" => vec![
            role(
                "member",
                "Posts, chats and follows",
                &[
                    "posts:read",
                    "posts:write",
                    "chats:read",
                    "chats:write",
                    "subscriptions:write",
                ],
            ),
            role(
                "moderator",
                "Moderates posts and chats, blocks abusive accounts",
                &[
                    "posts:read",
                    "posts:moderate",
                    "chats:read",
                    "chats:moderate",
                    "users:read",
                    "users:block",
                ],
            ),
        ],
        "marketplace" => vec![
            role(
                "freelancer",
                "Offers work: bids on orders and delivers them",
                &[
                    "orders:read",
                    "bids:write",
                    "deliveries:write",
                    "reviews:write",
                ],
            ),
            role(
                "customer",
                "Orders work and pays for it",
                &[
                    "orders:read",
                    "orders:write",
                    "payments:write",
                    "reviews:write",
                ],
            ),
            role(
                "support",
                "Resolves disputes: reads accounts and orders, blocks abuse",
                &[
                    "orders:read",
                    "orders:manage",
                    "users:read",
                    "users:block",
                    "audit:read",
                ],
            ),
        ],
        _ => Vec::new(),
    }
}

/// Every role declared outside the database: `admin`, the preset's, then `[[access.roles]]`
/// (which win over a preset role of the same name). The settings were validated at load.
pub fn declared(settings: &AccessSettings) -> Vec<Declared> {
    let mut admin = role(
        ADMIN_ROLE,
        "Administers Keyward: every built-in permission",
        &BUILTIN_PERMISSIONS,
    );
    admin.source = RoleSource::Builtin;
    let mut out = vec![admin];
    let mut own: Vec<Declared> = settings
        .roles
        .iter()
        .map(|r| {
            let perms: Vec<&str> = r.permissions.iter().map(String::as_str).collect();
            role(&r.name, r.description.trim(), &perms)
        })
        .collect();
    out.extend(
        preset(&settings.preset)
            .into_iter()
            .filter(|p| !own.iter().any(|o| o.name == p.name)),
    );
    out.append(&mut own);
    out
}

/// Why a change to the actor's own access is refused, if it is: an administrator must keep
/// `roles:write` (else nobody may be left to undo the change).
pub fn locks_out(actor_permissions_after: &BTreeSet<String>) -> Option<&'static str> {
    (!actor_permissions_after.contains("roles:write")).then_some(
        "this change would take roles:write from you; ask another administrator to make it",
    )
}

/// Whether every permission and role name of the declared set parses (the settings were
/// validated, the presets are tested).
pub fn well_formed(d: &Declared) -> bool {
    RoleName::parse("", &d.name).is_ok()
        && d.permissions
            .iter()
            .all(|p| Permission::parse("", p).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_preset_is_well_formed_and_has_distinct_roles() {
        for name in keyward_config::ACCESS_PRESETS {
            let roles = preset(name);
            assert!(!roles.is_empty(), "{name}");
            let mut names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
            names.dedup();
            assert_eq!(names.len(), roles.len(), "{name}");
            assert!(roles.iter().all(well_formed), "{name}");
            assert!(
                names.iter().all(|n| *n != ADMIN_ROLE),
                "{name} redefines admin"
            );
        }
    }

    #[test]
    fn admin_holds_every_builtin_permission_and_config_wins_over_the_preset() {
        let settings = AccessSettings {
            preset: "events".into(),
            roles: vec![keyward_config::RoleSettings {
                name: "organizer".into(),
                description: " Runs events ".into(),
                permissions: vec!["events:write".into()],
            }],
            ..AccessSettings::default()
        };
        let d = declared(&settings);
        assert_eq!(d[0].name, ADMIN_ROLE);
        assert_eq!(d[0].source, RoleSource::Builtin);
        assert_eq!(d[0].permissions.len(), BUILTIN_PERMISSIONS.len());
        let organizer: Vec<_> = d.iter().filter(|r| r.name == "organizer").collect();
        assert_eq!(organizer.len(), 1);
        assert_eq!(organizer[0].permissions, ["events:write"]);
        assert_eq!(organizer[0].description, "Runs events");
        assert!(d.iter().any(|r| r.name == "attendee"));
    }

    #[test]
    fn losing_roles_write_is_a_lock_out() {
        let with: BTreeSet<String> = ["roles:write".to_owned()].into();
        assert_eq!(locks_out(&with), None);
        assert!(locks_out(&BTreeSet::new()).is_some());
    }
}
