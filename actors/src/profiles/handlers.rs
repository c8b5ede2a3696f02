//! The profiles context's message table: one handler per message.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keyward_messages::access::{Caller, EraseUser};
use keyward_messages::commands::Locale;
use keyward_messages::events::{DomainEvent, Outgoing, RevokeReason};
use keyward_messages::profiles::*;
use keyward_messages::{codes, CommandError, FieldError, UserId};
use keyward_storage::{ProfileRecord, Tx, UserRecord};
use serde_json::{json, Map, Value};

use super::policy::{self, Audience};
use super::{Profiles, ProfilesDeps as Deps, RENAME_HOLD};
use crate::error::HandlerError;

fn not_found() -> HandlerError {
    HandlerError::from(CommandError::NotFound {
        code: codes::USER_NOT_FOUND,
        detail: "no visible user has this id".into(),
    })
}

pub(super) fn gone() -> HandlerError {
    HandlerError::from(CommandError::unauthenticated(
        codes::UNAUTHENTICATED,
        "the account no longer exists",
    ))
}

/// Whether `who` holds `permission` now (live grants, not the token's roles).
async fn may(deps: &Deps, who: UserId, permission: &str) -> Result<bool, HandlerError> {
    Ok(deps.access.allows(who, permission).await?)
}

async fn profile_of(deps: &Deps, user: UserId) -> Result<ProfileRecord, HandlerError> {
    Ok(deps.store.profiles().get(user).await?.unwrap_or_else(|| {
        ProfileRecord::empty(user, deps.policy.default_visibility, (deps.clock)())
    }))
}

fn own_view(
    deps: &Deps,
    u: &UserRecord,
    p: &ProfileRecord,
    roles: Vec<String>,
    who: Audience,
) -> UserView {
    UserView {
        id: u.id,
        email: u.email.as_str().to_owned(),
        email_verified: u.email_verified,
        username: u.username.as_ref().map(|n| n.as_str().to_owned()),
        roles,
        created_at: u.created_at,
        display_name: p.display_name.clone(),
        bio: p.bio.clone(),
        avatar: super::avatar::urls(deps, p.avatar.as_deref()),
        locale: Locale::parse(&u.locale),
        timezone: p.timezone.clone(),
        country: p.country.clone(),
        phone: p.phone.clone(),
        phone_verified: p.phone_verified,
        visibility: p.visibility,
        attributes: policy::visible_attributes(&deps.policy.attributes, &p.attributes, who),
        updated_at: p.updated_at.max(u.created_at),
        deletion_scheduled_for: p.deletion_due_at,
    }
}

async fn load_own(deps: &Deps, user: UserId, who: Audience) -> Result<UserView, HandlerError> {
    let reads = deps.store.reads();
    let u = reads.users().by_id(user).await?.ok_or_else(gone)?;
    let p = reads.profiles().get(user).await?.unwrap_or_else(|| {
        ProfileRecord::empty(user, deps.policy.default_visibility, (deps.clock)())
    });
    let roles = reads.users().roles_of(user).await?;
    Ok(own_view(deps, &u, &p, roles, who))
}

async fn get_me(deps: Arc<Deps>, m: GetMe) -> Result<UserView, HandlerError> {
    let user = deps.sessions.authenticate(m.token).await?.user_id;
    if let Some(view) = deps.cache.get(user) {
        return Ok(UserView::clone(&view));
    }
    let epoch = deps.cache.epoch();
    let view = load_own(&deps, user, Audience::Owner).await?;
    deps.cache.put(epoch, Arc::new(view.clone()));
    Ok(view)
}

async fn get_profile(deps: Arc<Deps>, m: GetProfile) -> Result<ProfileView, HandlerError> {
    let viewer = m.viewer.as_ref().and_then(Caller::user_id);
    let Some(u) = deps.store.users().by_id(m.user_id).await? else {
        return Err(not_found());
    };
    let p = profile_of(&deps, m.user_id).await?;
    let who = match &m.viewer {
        _ if viewer == Some(m.user_id) => Audience::Owner,
        Some(c) if deps.access.caller_allows(c, "users:read").await? => Audience::Admin,
        Some(Caller::User(_)) => Audience::SignedIn,
        _ => Audience::Anonymous,
    };
    if matches!(who, Audience::Owner | Audience::Admin) {
        let roles = deps.store.users().roles_of(u.id).await?;
        return Ok(ProfileView::Own(Box::new(own_view(
            &deps, &u, &p, roles, who,
        ))));
    }
    let v = viewer.map_or(Viewer::Anonymous, Viewer::User);
    if !super::index::is_listed(&u, Some(&p)) || !v.may_see(u.id, p.visibility) {
        return Err(not_found());
    }
    Ok(ProfileView::Public(Box::new(PublicProfile {
        id: u.id,
        username: u.username.map(String::from),
        display_name: p.display_name.clone(),
        bio: p.bio.clone(),
        avatar: super::avatar::urls(&deps, p.avatar.as_deref()),
        country: p.country.clone(),
        attributes: policy::visible_attributes(&deps.policy.attributes, &p.attributes, who),
    })))
}

fn username_taken() -> HandlerError {
    HandlerError::from(CommandError::Conflict {
        code: codes::USERNAME_TAKEN,
        detail: "this username is taken, or reads like one that is; choose another".into(),
        field: Some("username".into()),
    })
}

/// What an edit changed, for the event: every changed field's name, and the new values of
/// those anyone may see.
struct Changes {
    names: Vec<String>,
    public: Map<String, Value>,
}

impl Changes {
    fn note(&mut self, name: &str, public_value: Option<Value>) {
        self.names.push(name.to_owned());
        if let Some(v) = public_value {
            self.public.insert(name.to_owned(), v);
        }
    }
}

async fn update_profile(deps: Arc<Deps>, m: UpdateProfile) -> Result<UserView, HandlerError> {
    let who = if m.principal.user_id == m.user_id {
        Audience::Owner
    } else if may(&deps, m.principal.user_id, "users:write").await? {
        Audience::Admin
    } else {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::FORBIDDEN,
            detail: "only the user themself or an administrator with users:write may change this profile".into(),
        }));
    };
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    tx.users().lock(m.user_id).await?;
    let Some(u) = tx.users().by_id(m.user_id).await? else {
        return Err(if who == Audience::Owner {
            gone()
        } else {
            not_found()
        });
    };
    let before = tx.profiles().get(m.user_id).await?;
    let mut p = before
        .clone()
        .unwrap_or_else(|| ProfileRecord::empty(m.user_id, deps.policy.default_visibility, now));
    let patch = m.patch;
    let mut ch = Changes {
        names: Vec::new(),
        public: Map::new(),
    };

    // Attributes first: their errors are the caller's, and nothing is written yet.
    if let Some(attrs) = patch.attributes {
        let (next, changed) =
            policy::patch_attributes(&deps.policy.attributes, &p.attributes, attrs, who)
                .map_err(CommandError::invalid)?;
        p.attributes = next;
        for name in changed {
            let public = policy::is_public_attribute(&deps.policy.attributes, &name);
            let v = public.then(|| p.attributes.get(&name).cloned().unwrap_or(Value::Null));
            ch.note(&format!("attributes.{name}"), v);
        }
    }

    let old_name = u.username.clone();
    let new_name = patch.username.apply(old_name.clone());
    if new_name.as_ref().map(|n| n.as_str()) != old_name.as_ref().map(|n| n.as_str()) {
        let same_key = match (&new_name, &old_name) {
            (Some(a), Some(b)) => a.normalized() == b.normalized(),
            _ => false,
        };
        if let (Some(name), false) = (&new_name, same_key) {
            let held = tx.profiles().reserved_by(name, now).await?;
            if held.is_some_and(|h| h != m.user_id) {
                return Err(username_taken());
            }
        }
        if !tx
            .users()
            .set_username(m.user_id, new_name.as_ref(), now)
            .await?
        {
            return Err(username_taken());
        }
        if let (Some(old), false) = (&old_name, same_key) {
            tx.profiles()
                .reserve(old, m.user_id, now + RENAME_HOLD)
                .await?;
        }
        ch.note("username", new_name.as_ref().map(|n| json!(n.as_str())));
    }
    if let Some(locale) = patch.locale.filter(|l| l.as_str() != u.locale) {
        tx.users()
            .set_locale(m.user_id, locale.as_str(), now)
            .await?;
        ch.note("locale", None);
    }

    field_text(
        &mut p.display_name,
        patch.display_name.map(String::from),
        &mut ch,
        "display_name",
        true,
    );
    field_text(
        &mut p.bio,
        patch.bio.map(String::from),
        &mut ch,
        "bio",
        true,
    );
    field_text(
        &mut p.timezone,
        patch.timezone.map(|v| v.as_str().to_owned()),
        &mut ch,
        "timezone",
        false,
    );
    field_text(
        &mut p.country,
        patch.country.map(|v| v.as_str().to_owned()),
        &mut ch,
        "country",
        true,
    );
    let old_phone = p.phone.clone();
    field_text(
        &mut p.phone,
        patch.phone.map(|v| v.as_str().to_owned()),
        &mut ch,
        "phone",
        false,
    );
    if p.phone != old_phone {
        p.phone_verified = false;
    }
    if let Some(v) = patch.visibility.filter(|v| *v != p.visibility) {
        p.visibility = v;
        ch.note("visibility", None);
    }

    if ch.names.is_empty() {
        tx.rollback().await?;
        return load_own(&deps, m.user_id, who).await;
    }
    p.updated_at = now;
    tx.profiles().put(&p).await?;
    deps.index.sync(&tx, m.user_id).await?;
    // Values go out only for a profile anyone may see.
    let values = if p.visibility == Visibility::Public {
        std::mem::take(&mut ch.public)
    } else {
        Map::new()
    };
    let ev = DomainEvent::ProfileUpdated {
        user_id: m.user_id,
        changed: ch.names,
        values,
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Event(ev))
        .await?;
    tx.commit().await?;
    deps.cache.forget(m.user_id);
    deps.outbox.wake();
    load_own(&deps, m.user_id, who).await
}

/// Applies a patch to one optional text field, noting a change.
fn field_text(
    slot: &mut Option<String>,
    patch: Patch<String>,
    ch: &mut Changes,
    name: &str,
    public: bool,
) {
    let next = patch.apply(slot.clone());
    if next != *slot {
        ch.note(name, public.then(|| json!(next)));
        *slot = next;
    }
}

async fn search(deps: Arc<Deps>, m: SearchProfiles) -> Result<SearchResults, HandlerError> {
    use keyward_storage::search::{SearchError, SearchQuery};
    let q = SearchQuery {
        q: &m.q,
        viewer: m.viewer,
        limit: m.limit,
        cursor: m.cursor.as_deref(),
    };
    let page = match deps.store.search_index().search(&q).await {
        Ok(page) => page,
        Err(SearchError::BadCursor) => return Err(bad_cursor()),
        Err(SearchError::Storage(e)) => return Err(e.into()),
    };
    let url = |k: String| deps.avatars.public_url(&k, &deps.public_url);
    Ok(SearchResults {
        items: page
            .items
            .into_iter()
            .map(|h| SearchItem {
                id: h.user_id,
                username: h.username,
                display_name: h.display_name,
                avatar_url: h.avatar.map(url),
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

async fn get_settings(deps: Arc<Deps>, m: GetSettings) -> Result<UserSettings, HandlerError> {
    Ok(UserSettings(
        deps.store.profiles().settings(m.principal.user_id).await?,
    ))
}

async fn patch_settings(deps: Arc<Deps>, m: PatchSettings) -> Result<UserSettings, HandlerError> {
    let user = m.principal.user_id;
    let tx = deps.store.begin().await?;
    tx.users().lock(user).await?;
    let current = tx.profiles().settings(user).await?;
    let next = policy::patch_settings(&current, m.patch).map_err(CommandError::from)?;
    if next != current {
        tx.profiles()
            .put_settings(user, &next, (deps.clock)())
            .await?;
    }
    tx.commit().await?;
    Ok(UserSettings(next))
}

/// What a user's own history shows.
pub(super) const ACTIVITY: &[&str] = &[
    "user.logged_in",
    "user.login_failed",
    "user.throttled",
    "user.password_changed",
    "user.email_changed",
    "user.blocked",
    "user.unblocked",
    "session.revoked",
    "session.reuse_detected",
    "profile.updated",
    "mfa.enrolled",
    "mfa.removed",
    "identity.linked",
    "identity.unlinked",
    "user.deletion_requested",
    "user.deletion_cancelled",
];

fn bad_cursor() -> HandlerError {
    HandlerError::from(CommandError::field(
        "cursor",
        "invalid_cursor",
        "pass the next_cursor of the previous page unchanged",
    ))
}

async fn get_activity(deps: Arc<Deps>, m: GetActivity) -> Result<ActivityPage, HandlerError> {
    let before = match &m.cursor {
        None => None,
        Some(c) => {
            let bytes = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad_cursor())?;
            Some(uuid::Uuid::from_slice(&bytes).map_err(|_| bad_cursor())?)
        }
    };
    let limit = u64::from(m.limit);
    let rows = deps
        .store
        .audit()
        .of_user(m.principal.user_id, ACTIVITY, before, limit + 1)
        .await?;
    let more = rows.len() as u64 > limit;
    let items: Vec<_> = rows.into_iter().take(m.limit as usize).collect();
    let next_cursor = more
        .then(|| {
            items
                .last()
                .map(|(id, _)| URL_SAFE_NO_PAD.encode(id.as_bytes()))
        })
        .flatten();
    Ok(ActivityPage {
        items: items.into_iter().map(|(_, r)| activity_item(r)).collect(),
        next_cursor,
    })
}

fn activity_item(r: keyward_storage::AuditRecord) -> ActivityItem {
    ActivityItem {
        at: r.at,
        kind: r.kind,
        ip: r.ip,
        user_agent: r.user_agent,
        details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
    }
}

async fn export_me(deps: Arc<Deps>, m: ExportMe) -> Result<UserExport, HandlerError> {
    let user = m.principal.user_id;
    let now = (deps.clock)();
    let profile = load_own(&deps, user, Audience::Owner).await?;
    let settings = deps.store.profiles().settings(user).await?;
    let sessions: Vec<Value> = deps
        .store
        .sessions()
        .live_of(user, now)
        .await?
        .into_iter()
        .map(|s| {
            json!({"id": s.id, "created_at": s.created_at, "last_used_at": s.last_used_at,
                   "expires_at": s.expires_at, "ip": s.ip, "user_agent": s.user_agent})
        })
        .collect();
    let activity: Vec<_> = deps
        .store
        .audit()
        .of_user(user, ACTIVITY, None, 10_000)
        .await?
        .into_iter()
        .map(|(_, r)| activity_item(r))
        .collect();
    Ok(UserExport(json!({
        "exported_at": now,
        "account": profile,
        "settings": settings,
        "sessions": sessions,
        "activity": activity,
    })))
}

async fn delete_me(deps: Arc<Deps>, m: DeleteMe) -> Result<DeletionScheduled, HandlerError> {
    let user = m.principal.user_id;
    crate::mfa::require_aal2(&deps.store, &m.principal).await?;
    let u = deps.store.users().by_id(user).await?.ok_or_else(gone)?;
    let v = deps
        .hasher
        .verify(m.current_password.expose(), &u.password_hash)
        .await?;
    if !v.matches {
        return Err(HandlerError::from(CommandError::from(FieldError::new(
            "current_password",
            "incorrect",
            "the current password is incorrect",
        ))));
    }
    let now = (deps.clock)();
    let erase_at = now + deps.policy.deletion_grace;
    schedule_erasure(&deps, &m.meta, user, now, erase_at).await
}

/// An administrator erases an account: as a self-deletion, due now.
async fn erase_user(deps: Arc<Deps>, m: EraseUser) -> Result<DeletionScheduled, HandlerError> {
    let actor = &m.caller;
    deps.access.require_caller(actor, "users:delete").await?;
    if actor.user_id() == Some(m.user_id) {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "self_lockout",
            detail: "an administrator cannot erase their own account here; use DELETE /v1/users/me"
                .into(),
            field: None,
        }));
    }
    if deps.store.users().by_id(m.user_id).await?.is_none() {
        return Err(HandlerError::from(
            keyward_messages::access::user_not_found(),
        ));
    }
    let now = (deps.clock)();
    let meta = m.meta.acting_as(actor);
    let scheduled = schedule_erasure(&deps, &meta, m.user_id, now, now).await?;
    // NOTE: the eraser runs on its own schedule; waking it is not needed for correctness.
    Ok(scheduled)
}

/// Marks `user` for erasure at `erase_at`, takes the profile out of search and ends every
/// session, in one transaction.
async fn schedule_erasure(
    deps: &Deps,
    meta: &keyward_messages::RequestMeta,
    user: UserId,
    now: chrono::DateTime<chrono::Utc>,
    erase_at: chrono::DateTime<chrono::Utc>,
) -> Result<DeletionScheduled, HandlerError> {
    let tx = deps.store.begin().await?;
    tx.users().lock(user).await?;
    let mut p = tx
        .profiles()
        .get(user)
        .await?
        .unwrap_or_else(|| ProfileRecord::empty(user, deps.policy.default_visibility, now));
    p.deletion_due_at = Some(erase_at);
    p.updated_at = now;
    tx.profiles().put(&p).await?;
    deps.index.sync(&tx, user).await?;
    let details = json!({ "erase_at": erase_at });
    deps.outbox
        .audit(&tx, meta, "user.deletion_requested", Some(user), details)
        .await?;
    let ended = end_sessions(deps, &tx, meta, user, now).await?;
    tx.commit().await?;
    deps.sessions.ended(&ended);
    deps.cache.forget(user);
    deps.outbox.wake();
    tracing::info!(user_id = %user, %erase_at, "account deletion requested");
    Ok(DeletionScheduled { erase_at })
}

async fn end_sessions(
    deps: &Deps,
    tx: &Tx,
    meta: &keyward_messages::RequestMeta,
    user: UserId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<keyward_messages::SessionId>, HandlerError> {
    Ok(deps
        .sessions
        .ender()
        .end_all(tx, now, meta, user, None, RevokeReason::AccountDeleted)
        .await?)
}

crate::edge::handlers!(Profiles {
    GetMe => UserView: get_me;
    GetProfile => ProfileView: get_profile;
    SearchProfiles => SearchResults: search;
    UpdateProfile => UserView: update_profile;
    GetSettings => UserSettings: get_settings;
    PatchSettings => UserSettings: patch_settings;
    GetActivity => ActivityPage: get_activity;
    ExportMe => UserExport: export_me;
    DeleteMe => DeletionScheduled: delete_me;
    EraseUser => DeletionScheduled: erase_user;
    SetAvatar => AvatarUrls: |d, m| super::avatar::set_avatar(d, m);
    DeleteAvatar => (): |d, m| super::avatar::delete_avatar(d, m);
    GetAvatar => Option<AvatarImage>: |d, m| super::avatar::get_avatar(d, m);
    StartPhoneVerification => PhoneCodeSent: |d, m| super::phone::start(d, m);
    ConfirmPhone => PhoneVerified: |d, m| super::phone::confirm(d, m);
});
