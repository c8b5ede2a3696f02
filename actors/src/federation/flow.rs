//! The web flow: start (to the provider), callback (back from it, to the app with a one-time
//! code), exchange (the code for tokens).

use std::sync::Arc;

use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::federation::*;
use keyward_messages::mfa::LoginReply;
use keyward_messages::{codes, CommandError, Email, RequestMeta, UserId, Username};
use keyward_storage::{FlowRecord, IdentityRecord, NewUser, OAuthCodeRecord, UserRecord};
use uuid::Uuid;

use super::{Federation, FederationDeps as Deps, Provider};
use crate::error::HandlerError;
use crate::sealed;
use crate::sessions::Assurance;
use crate::tokens::{random_token, sha256_hex};

/// How long a started web login may take at the provider.
const FLOW_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// How long the app has to exchange its one-time code.
const CODE_TTL: chrono::Duration = chrono::Duration::seconds(60);

/// An identity as its provider asserts it, whatever the provider's kind.
#[derive(Clone, Debug, Default)]
pub(super) struct Asserted {
    /// The provider's stable id of the user.
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider vouches for the email; false when it does not say.
    pub email_verified: bool,
    /// A login name to derive the username from.
    pub username: Option<String>,
    /// The picture's URL at the provider.
    pub avatar_url: Option<String>,
}

pub(super) fn provider<'a>(deps: &'a Deps, name: &str) -> Result<&'a Arc<Provider>, HandlerError> {
    deps.providers.get(name).ok_or_else(|| {
        HandlerError::from(CommandError::NotFound {
            code: "provider_not_found",
            detail: format!("no social login provider is named {name:?}"),
        })
    })
}

pub(super) fn unavailable(p: &Provider, why: &str) -> HandlerError {
    tracing::warn!(provider = %p.name, error = why, "a social login provider did not answer as expected");
    HandlerError::from(CommandError::Unavailable {
        code: "provider_unavailable",
        detail: format!(
            "the provider {} is unavailable or answered badly; try again later",
            p.name
        ),
        retry_after_secs: 30,
    })
}

pub(super) fn internal(what: &str, e: impl std::fmt::Display) -> HandlerError {
    tracing::error!(error = %e, "{what}");
    HandlerError::from(CommandError::Internal)
}

/// Where the provider sends the browser back: `{public_url}/v1/auth/oauth/{provider}/callback`.
pub(super) fn callback_url(deps: &Deps, p: &Provider) -> String {
    format!("{}/v1/auth/oauth/{}/callback", deps.public_url, p.name)
}

pub(super) async fn start(deps: Arc<Deps>, m: StartOAuth) -> Result<Redirect, HandlerError> {
    let p = provider(&deps, &m.provider)?;
    let redirect_uri = allowed_redirect(&deps, &m.redirect_uri)?;
    deps.throttle
        .ceremony_budget(&deps.store, &m.meta, (deps.clock)())
        .await?;
    begin(&deps, p, redirect_uri, m.app_state, None).await
}

/// `raw` when it is one of the allowlisted redirect URIs (exactly).
pub(super) fn allowed_redirect(deps: &Deps, raw: &str) -> Result<url::Url, HandlerError> {
    url::Url::parse(raw)
        .ok()
        .filter(|u| deps.allowlist.contains(u))
        .ok_or_else(|| {
            HandlerError::from(CommandError::field(
                "redirect_uri",
                "redirect_not_allowed",
                "this redirect_uri is not in KEYWARD_OAUTH__REDIRECT_ALLOWLIST (exact match)",
            ))
        })
}

/// What `start` needs of a provider's authorization request.
pub(super) struct Authorize {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Records a flow and sends the browser to the provider; `link_user` links the identity to
/// that account at the callback instead of logging in.
pub(super) async fn begin(
    deps: &Deps,
    p: &Provider,
    redirect_uri: url::Url,
    app_state: Option<String>,
    link_user: Option<UserId>,
) -> Result<Redirect, HandlerError> {
    let auth = super::kinds::authorize(deps, p).await?;
    let now = (deps.clock)();
    let id = Uuid::now_v7();
    let sealed_verifier = sealed::seal(
        &deps.secret_key,
        id.as_bytes(),
        auth.pkce_verifier.as_bytes(),
    )
    .ok_or_else(|| internal("sealing a PKCE verifier", "seal failed"))?;
    deps.store
        .federation()
        .insert_flow(&FlowRecord {
            id,
            state_hash: sha256_hex(&auth.state),
            provider: p.name.clone(),
            redirect_uri: redirect_uri.to_string(),
            nonce: auth.nonce,
            pkce_verifier: sealed_verifier,
            link_user_id: link_user,
            app_state,
            created_at: now,
            expires_at: now + FLOW_TTL,
        })
        .await?;
    Ok(Redirect {
        location: auth.url.to_string(),
    })
}

/// The flow's PKCE verifier, unsealed.
pub(super) fn pkce_verifier(deps: &Deps, flow: &FlowRecord) -> Result<String, String> {
    let v = sealed::open(&deps.secret_key, flow.id.as_bytes(), &flow.pkce_verifier)
        .ok_or("a PKCE verifier does not open (KEYWARD_MASTER_KEY changed?)")?;
    String::from_utf8(v).map_err(|e| e.to_string())
}

/// The app's redirect URI with `pairs` added to its query.
pub(super) fn to_app(flow: &FlowRecord, pairs: &[(&str, &str)]) -> Result<Redirect, HandlerError> {
    let mut url = url::Url::parse(&flow.redirect_uri)
        .map_err(|e| internal("a stored redirect URI does not parse", e))?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(s) = &flow.app_state {
            q.append_pair("state", s);
        }
    }
    Ok(Redirect {
        location: url.to_string(),
    })
}

fn bad_state() -> HandlerError {
    HandlerError::from(CommandError::field(
        "state",
        "invalid_state",
        "this sign-in expired (10 minutes), was used already, or did not start here; start again",
    ))
}

pub(super) async fn callback(deps: Arc<Deps>, m: OAuthCallback) -> Result<Redirect, HandlerError> {
    let p = provider(&deps, &m.provider)?;
    let now = (deps.clock)();
    let Some(state) = m.query.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(bad_state());
    };
    // Taken once: a replayed callback finds nothing.
    let Some(flow) = deps
        .store
        .federation()
        .take_flow(&sha256_hex(state), now)
        .await?
    else {
        return Err(bad_state());
    };
    if flow.provider != p.name {
        return Err(bad_state());
    }
    if let Some(e) = m.query.error.as_deref() {
        tracing::info!(provider = %p.name, error = e, "the provider refused the sign-in");
        return to_app(&flow, &[("error", "access_denied")]);
    }
    let Some(code) = m.query.code.clone() else {
        return to_app(&flow, &[("error", "invalid_request")]);
    };
    let asserted = match super::kinds::identity(&deps, p, &flow, code, &m.query).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(provider = %p.name, error = %why, "a social login did not check out");
            return to_app(&flow, &[("error", "provider_error")]);
        }
    };
    if let Some(user) = flow.link_user_id {
        return super::link::link_signed_in(&deps, p, &flow, user, &asserted, &m.meta).await;
    }
    let user = match resolve(&deps, p, &asserted, &m.meta).await? {
        Resolved::User(u) => u,
        Resolved::Exists(Some(token)) => {
            return to_app(
                &flow,
                &[("error", "account_exists"), ("link_token", &token)],
            )
        }
        Resolved::Exists(None) => return to_app(&flow, &[("error", "account_exists")]),
        Resolved::Refused(code) => return to_app(&flow, &[("error", code)]),
    };
    if user.blocked {
        return to_app(&flow, &[("error", "account_blocked")]);
    }
    let code = random_token();
    deps.store
        .federation()
        .insert_code(&OAuthCodeRecord {
            code_hash: sha256_hex(&code),
            user_id: user.id,
            provider: p.name.clone(),
            created_at: now,
            expires_at: now + CODE_TTL,
        })
        .await?;
    to_app(&flow, &[("code", &code)])
}

/// Whom an identity signs in as.
pub(super) enum Resolved {
    User(UserRecord),
    /// An account has the identity's email; with a link token when its owner may prove it.
    Exists(Option<String>),
    /// `email_required`, `account_deleted`.
    Refused(&'static str),
}

/// The account an identity logs in to: its linked account, or a new one. An account that
/// already has the identity's email is never linked silently: its owner proves it first
/// (link.rs), so nobody gets into an account by asserting its email at some provider.
///
/// An unverified password registration with the email the provider vouches for is a claim
/// nobody proved, perhaps an attacker's made in advance: it is erased and a new account is
/// made, so nothing its maker set up (password, factors, sessions, profile) reaches the
/// identity's owner.
async fn resolve(
    deps: &Deps,
    p: &Provider,
    asserted: &Asserted,
    meta: &RequestMeta,
) -> Result<Resolved, HandlerError> {
    let subject = asserted.subject.as_str();
    let email_raw = asserted.email.clone();
    let verified = asserted.email_verified;
    let now = (deps.clock)();
    if let Some(identity) = deps.store.federation().identity(&p.name, subject).await? {
        deps.store
            .federation()
            .touch_identity(identity.id, email_raw.as_deref(), verified, now)
            .await?;
        return match deps.store.users().by_id(identity.user_id).await? {
            Some(u) => Ok(Resolved::User(u)),
            None => Ok(Resolved::Refused("account_deleted")),
        };
    }
    let Some(email) = email_raw
        .as_deref()
        .and_then(|e| Email::parse("email", e).ok())
    else {
        return Ok(Resolved::Refused("email_required"));
    };
    let mut squatter = None;
    if let Some(existing) = deps.store.users().by_email(&email).await? {
        if existing.email_verified {
            return Ok(Resolved::Exists(
                super::link::offer(deps, p, &existing, asserted).await?,
            ));
        }
        let unproved_registration = verified
            && deps.store.users().has_password(existing.id).await?
            && deps
                .store
                .federation()
                .identities_of(existing.id)
                .await?
                .is_empty();
        if !unproved_registration {
            return Ok(Resolved::Exists(None));
        }
        squatter = Some(existing);
    }
    let username = derive_username(deps, asserted, &email, now).await?;
    // A password nobody knows, hashed like any other, so a password login costs the same.
    let password_hash = deps.hasher.hash(&random_token()).await?;
    let id = UserId::new();
    let mut tx = deps.store.begin().await?;
    let erased = match &squatter {
        Some(old) => Some(erase_unproved(deps, &tx, meta, old).await?),
        None => None,
    };
    let new_user = |username: Option<Username>| NewUser {
        id,
        email: email.clone(),
        username,
        password_hash: password_hash.clone(),
        email_verified: verified,
        locale: keyward_messages::commands::Locale::En.as_str().to_owned(),
        now,
    };
    let mut username = username;
    match tx.users().insert(new_user(username.clone())).await {
        Ok(()) => {}
        // The name was taken meanwhile: the account goes without one (it can pick one).
        Err(keyward_storage::StorageError::Conflict { what }) if what == "username" => {
            username = None;
            // A failed statement ends a PostgreSQL transaction: start again.
            drop(tx);
            tx = deps.store.begin().await?;
            if let Some(old) = &squatter {
                erase_unproved(deps, &tx, meta, old).await?;
            }
            match tx.users().insert(new_user(None)).await {
                Ok(()) => {}
                Err(keyward_storage::StorageError::Conflict { .. }) => {
                    return Ok(Resolved::Exists(None))
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Registered meanwhile (the same email through another way).
        Err(keyward_storage::StorageError::Conflict { .. }) => return Ok(Resolved::Exists(None)),
        Err(e) => return Err(e.into()),
    }
    let identity = IdentityRecord {
        id: Uuid::now_v7(),
        user_id: id,
        provider: p.name.clone(),
        subject: subject.to_owned(),
        email: Some(email.as_str().to_owned()),
        email_verified: verified,
        created_at: now,
        last_login_at: Some(now),
    };
    tx.federation().insert_identity(&identity).await?;
    tx.users().set_no_password(id).await?;
    crate::access::grant_roles(&tx, now, meta, id, &deps.default_roles, None).await?;
    deps.index.sync(&tx, id).await?;
    for ev in [
        DomainEvent::UserRegistered {
            user_id: id,
            email: email.as_str().to_owned(),
            username: username.as_ref().map(|u| u.as_str().to_owned()),
            locale: keyward_messages::commands::Locale::En,
            method: format!("oauth:{}", p.name),
        },
        DomainEvent::IdentityLinked {
            user_id: id,
            identity_id: identity.id,
            provider: p.name.clone(),
        },
    ] {
        deps.outbox.enqueue(&tx, meta, Outgoing::Event(ev)).await?;
    }
    tx.commit().await?;
    if let (Some(old), Some(avatar)) = (&squatter, erased) {
        crate::profiles::erasure::after_erase(&deps.profiles, old.id, avatar.as_deref()).await;
        tracing::warn!(erased = %old.id, user_id = %id, provider = %p.name, "an unverified registration with a provider-verified email was erased");
    }
    deps.outbox.wake();
    tracing::info!(user_id = %id, provider = %p.name, "account made by a social login");
    let user = match deps.store.users().by_id(id).await? {
        Some(u) => u,
        None => return Err(internal("a new account is gone", id)),
    };
    if let Some(url) = asserted.avatar_url.clone() {
        super::avatar::import_later(deps, meta, id, url);
    }
    Ok(Resolved::User(user))
}

/// Erases an unverified registration whose email a provider vouches for, inside `tx`, with
/// its audit line; returns its avatar for [`crate::profiles::erasure::after_erase`].
async fn erase_unproved(
    deps: &Deps,
    tx: &keyward_storage::Tx,
    meta: &RequestMeta,
    old: &UserRecord,
) -> Result<Option<String>, HandlerError> {
    tx.users().lock(old.id).await?;
    let avatar = tx.profiles().get(old.id).await?.and_then(|p| p.avatar);
    crate::profiles::erasure::erase_in(&deps.profiles, tx, meta, old.id).await?;
    deps.outbox
        .audit(
            tx,
            meta,
            "user.erased_unverified",
            Some(old.id),
            serde_json::json!({ "reason": "a social login's provider vouched for the email this unverified registration claimed" }),
        )
        .await?;
    Ok(avatar)
}

/// A free username for a new account: the provider's preferred username, else the email's
/// local part, kept to the characters usernames allow; with four digits added when taken.
/// None when nothing usable comes out (the user can pick one later).
async fn derive_username(
    deps: &Deps,
    asserted: &Asserted,
    email: &Email,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Username>, HandlerError> {
    use rand::Rng as _;
    let raw = asserted
        .username
        .clone()
        .unwrap_or_else(|| email.local_part().to_owned());
    let base: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .skip_while(|c| !c.is_alphanumeric())
        .take(Username::MAX - 4)
        .collect();
    for attempt in 0..6 {
        let candidate = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}{}", rand::rngs::OsRng.gen_range(1000..10_000))
        };
        let Ok(name) = Username::parse("username", &candidate) else {
            continue;
        };
        let taken = deps.store.users().by_username(&name).await?.is_some()
            || deps
                .store
                .profiles()
                .reserved_by(&name, now)
                .await?
                .is_some();
        if !taken {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

pub(super) async fn exchange(
    deps: Arc<Deps>,
    m: ExchangeOAuthCode,
) -> Result<LoginReply, HandlerError> {
    let now = (deps.clock)();
    let Some(c) = deps
        .store
        .federation()
        .take_code(&sha256_hex(&m.code), now)
        .await?
    else {
        return Err(HandlerError::from(CommandError::field(
            "code",
            "invalid_code",
            "the code is unknown, used, or older than 60 seconds; sign in again",
        )));
    };
    let Some(u) = deps.store.users().by_id(c.user_id).await? else {
        return Err(HandlerError::from(CommandError::unauthenticated(
            codes::UNAUTHENTICATED,
            "the account no longer exists",
        )));
    };
    if u.blocked {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::ACCOUNT_BLOCKED,
            detail: "this account is blocked".into(),
        }));
    }
    login_reply(&deps, &u, &m.meta, &c.provider).await
}

/// Tokens for a social login, or the second step when the user has a factor.
pub(super) async fn login_reply(
    deps: &Deps,
    u: &UserRecord,
    meta: &RequestMeta,
    provider: &str,
) -> Result<LoginReply, HandlerError> {
    let amr = vec!["fed".to_owned()];
    if let Some(step) = crate::mfa::challenge_after(&deps.store, &deps.clock, u, &amr).await? {
        return Ok(LoginReply::Mfa(step));
    }
    let auth = Assurance {
        acr: crate::mfa::acr_of(&amr, u.password_via_reset).to_owned(),
        amr,
    };
    let pair = deps.sessions.open(u, meta, None, None, auth).await?;
    tracing::info!(user_id = %u.id, session_id = %pair.session_id, provider, "social login");
    Ok(LoginReply::Tokens(pair))
}

pub(super) fn bad_id_token(detail: impl Into<String>) -> HandlerError {
    HandlerError::from(CommandError::unauthenticated("invalid_id_token", detail))
}

pub(super) async fn native(deps: Arc<Deps>, m: NativeOAuth) -> Result<LoginReply, HandlerError> {
    let p = provider(&deps, &m.provider)?;
    let (asserted, expires) = super::kinds::native(&deps, p, &m).await?;
    // Each token signs in once.
    let token = m
        .id_token
        .as_deref()
        .or(m.access_token.as_deref())
        .unwrap_or_default();
    if !deps
        .store
        .federation()
        .spend_token(&sha256_hex(token), expires)
        .await?
    {
        return Err(match m.id_token {
            Some(_) => bad_id_token("this ID token was used already; sign in again"),
            None => HandlerError::from(CommandError::unauthenticated(
                "invalid_access_token",
                "this access token signed in already; sign in again",
            )),
        });
    }
    let user = match resolve(&deps, p, &asserted, &m.meta).await? {
        Resolved::User(u) => u,
        Resolved::Exists(link_token) => {
            return Err(HandlerError::from(CommandError::AccountExists {
                detail: match link_token {
                    Some(_) => "an account has this email: prove it (POST /v1/auth/oauth/link with link_token and its password, or a code to its email) to link this identity".into(),
                    None => "an account has this email and cannot be linked here: sign in to it and link the identity from there".into(),
                },
                link_token,
            }))
        }
        Resolved::Refused("email_required") => {
            return Err(HandlerError::from(CommandError::Unprocessable {
                code: "email_required",
                detail: "the provider gave no email address; allow the email scope".into(),
            }))
        }
        Resolved::Refused(_) => {
            return Err(bad_id_token(
                "the account of this identity no longer exists",
            ));
        }
    };
    if user.blocked {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::ACCOUNT_BLOCKED,
            detail: "this account is blocked".into(),
        }));
    }
    login_reply(&deps, &user, &m.meta, &p.name).await
}

crate::edge::handlers!(Federation {
    StartOAuth => Redirect: start;
    OAuthCallback => Redirect: callback;
    ExchangeOAuthCode => LoginReply: exchange;
    NativeOAuth => LoginReply: native;
});
