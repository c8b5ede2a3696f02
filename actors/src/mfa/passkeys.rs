//! Passkeys (WebAuthn): registration, passwordless login with a discoverable credential, and a
//! passkey as the second step of a login or for step-up. webauthn-rs checks the ceremonies;
//! their state waits in `webauthn_ceremonies`, found by the challenge the browser signed, so
//! options and answer may reach different nodes and an answer is taken once.
//!
//! A passkey is registered with user verification required, so it is a multi-factor
//! authenticator on its own (something held, unlocked by a PIN or biometric): `hwk` alone is
//! `aal2`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyward_messages::commands::TokenPair;
use keyward_messages::mfa::*;
use keyward_messages::{codes, CommandError, UserId};
use keyward_storage::{CeremonyRecord, FactorRecord};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Webauthn,
    WebauthnBuilder,
};

use super::handlers::{account_key, count_failure, enroll_confirmed, throttled, user, EnrollMode};
use super::{Mfa, MfaDeps as Deps, CHALLENGE_TTL};
use crate::error::HandlerError;
use crate::sessions::Assurance;

/// The relying party, or why passkeys cannot work on this node (shown to callers).
pub type RelyingParty = Result<Arc<Webauthn>, String>;

/// The `amr` value of a passkey.
pub const HWK: &str = "hwk";

/// Builds the relying party for `rp` (named `name` in the user's passkey manager).
pub fn relying_party(rp: &keyward_config::RelyingParty, name: &str) -> RelyingParty {
    let Some((first, rest)) = rp.origins.split_first() else {
        return Err("no WebAuthn origin is configured (KEYWARD_MFA__ORIGINS)".to_owned());
    };
    let mut b = WebauthnBuilder::new(&rp.rp_id, first)
        .map_err(|e| format!("KEYWARD_MFA__RP_ID {} does not fit {first}: {e}", rp.rp_id))?
        .rp_name(name)
        .timeout(CHALLENGE_TTL.to_std().unwrap_or_default());
    for o in rest {
        b = b.append_allowed_origin(o);
    }
    b.build()
        .map(Arc::new)
        .map_err(|e| format!("the WebAuthn settings are unusable: {e}"))
}

fn unavailable(why: &str) -> HandlerError {
    HandlerError::from(CommandError::Conflict {
        code: "passkeys_unavailable",
        detail: format!("passkeys are not available on this server: {why}"),
        field: None,
    })
}

fn webauthn(deps: &Deps) -> Result<&Webauthn, HandlerError> {
    deps.webauthn.as_deref().map_err(|why| unavailable(why))
}

fn bad_credential(detail: impl Into<String>) -> HandlerError {
    HandlerError::from(CommandError::field(
        "credential",
        "invalid_credential",
        detail,
    ))
}

fn ceremony_gone() -> HandlerError {
    bad_credential("this answers no open passkey request (expired after 5 minutes, or used); ask for new options")
}

/// A passkey that is not registered here, or whose signature is wrong: one answer for both.
fn unknown_passkey() -> HandlerError {
    HandlerError::from(CommandError::unauthenticated(
        codes::INVALID_CREDENTIALS,
        "this passkey is not registered here or its signature is wrong",
    ))
}

fn internal(what: &str, e: impl std::fmt::Display) -> HandlerError {
    tracing::error!(error = %e, "{what}");
    HandlerError::from(CommandError::Internal)
}

/// The challenge the browser signed, from `clientDataJSON`.
fn signed_challenge(client_data_json: &[u8]) -> Result<String, HandlerError> {
    serde_json::from_slice::<serde_json::Value>(client_data_json)
        .ok()
        .and_then(|v| v.get("challenge")?.as_str().map(str::to_owned))
        .ok_or_else(|| bad_credential("response.clientDataJSON is not the browser's client data"))
}

fn parse<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<T, HandlerError> {
    serde_json::from_value(v.clone()).map_err(|e| {
        bad_credential(format!(
            "send the credential as PublicKeyCredential.toJSON() gives it ({e})"
        ))
    })
}

/// The passkeys of `user`, with their factor rows.
async fn passkeys_of(
    deps: &Deps,
    user: UserId,
) -> Result<Vec<(FactorRecord, Passkey)>, HandlerError> {
    let factors = deps.store.mfa().factors_of(user).await?;
    let mut keys = Vec::new();
    for f in factors.into_iter().filter(|f| f.kind == "passkey") {
        match f.secret.as_deref().map(serde_json::from_str::<Passkey>) {
            Some(Ok(pk)) => keys.push((f, pk)),
            _ => tracing::error!(factor_id = %f.id, "a stored passkey does not parse; skipped"),
        }
    }
    Ok(keys)
}

/// Stores a ceremony's state under the challenge of `options` (a `{publicKey: …}` value).
async fn open_ceremony(
    deps: &Deps,
    options: serde_json::Value,
    purpose: String,
    user: Option<UserId>,
    state: &impl serde::Serialize,
) -> Result<serde_json::Value, HandlerError> {
    let mut options = options;
    let public_key = options
        .get_mut("publicKey")
        .map(serde_json::Value::take)
        .unwrap_or_default();
    let Some(challenge) = public_key.get("challenge").and_then(|c| c.as_str()) else {
        return Err(internal(
            "WebAuthn options without a challenge",
            "no challenge",
        ));
    };
    let now = (deps.clock)();
    deps.store
        .mfa()
        .insert_ceremony(&CeremonyRecord {
            id: Uuid::now_v7(),
            challenge: challenge.to_owned(),
            purpose,
            user_id: user,
            state: serde_json::to_string(state)
                .map_err(|e| internal("serialising a WebAuthn state", e))?,
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
        })
        .await?;
    Ok(public_key)
}

/// Takes the ceremony `client_data_json` answers, when it is one of `purpose` (for `user`).
async fn take_ceremony<S: serde::de::DeserializeOwned>(
    deps: &Deps,
    client_data_json: &[u8],
    purpose: &str,
    user: Option<UserId>,
    now: DateTime<Utc>,
) -> Result<S, HandlerError> {
    let challenge = signed_challenge(client_data_json)?;
    let Some(c) = deps.store.mfa().take_ceremony(&challenge, now).await? else {
        return Err(ceremony_gone());
    };
    if c.purpose != purpose || (user.is_some() && c.user_id != user) {
        return Err(ceremony_gone());
    }
    serde_json::from_str(&c.state)
        .map_err(|e| internal("a stored WebAuthn state does not parse", e))
}

/// Keeps the signature counter a passkey reported (a clone shows as a counter going back).
async fn note_use(
    deps: &Deps,
    factor: &FactorRecord,
    mut pk: Passkey,
    res: &AuthenticationResult,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    pk.update_credential(res);
    let json = serde_json::to_string(&pk).map_err(|e| internal("serialising a passkey", e))?;
    deps.store
        .mfa()
        .update_secret(factor.id, &json, now)
        .await?;
    Ok(())
}

pub(super) async fn registration_options(
    deps: Arc<Deps>,
    m: PasskeyRegistrationOptions,
) -> Result<PasskeyOptions, HandlerError> {
    let wa = webauthn(&deps)?;
    let p = &m.principal;
    super::require_aal2(&deps.store, p).await?;
    let u = user(&deps, p.user_id).await?;
    let exclude = passkeys_of(&deps, p.user_id)
        .await?
        .into_iter()
        .map(|(_, pk)| pk.cred_id().clone())
        .collect();
    let display = u
        .username
        .as_ref()
        .map_or_else(|| u.email.as_str().to_owned(), |n| n.as_str().to_owned());
    let (ccr, state) = wa
        .start_passkey_registration(p.user_id.0, u.email.as_str(), &display, Some(exclude))
        .map_err(|e| internal("starting a passkey registration", e))?;
    let mut options = serde_json::to_value(&ccr).map_err(|e| internal("serialising options", e))?;
    // Discoverable, so the passkey also logs in without a username.
    if let Some(sel) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(|v| v.as_object_mut())
    {
        sel.insert("residentKey".into(), "required".into());
        sel.insert("requireResidentKey".into(), true.into());
    }
    let public_key =
        open_ceremony(&deps, options, "register".into(), Some(p.user_id), &state).await?;
    Ok(PasskeyOptions { public_key })
}

fn passkey_name(name: Option<String>) -> Result<String, HandlerError> {
    let Some(name) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok("Passkey".to_owned());
    };
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(HandlerError::from(CommandError::field(
            "name",
            "invalid_name",
            "use at most 64 printable characters, e.g. Work laptop",
        )));
    }
    Ok(name)
}

pub(super) async fn register(
    deps: Arc<Deps>,
    m: RegisterPasskey,
) -> Result<EnrolledFactor, HandlerError> {
    let wa = webauthn(&deps)?;
    let p = &m.principal;
    super::require_aal2(&deps.store, p).await?;
    let label = passkey_name(m.name)?;
    let cred: RegisterPublicKeyCredential = parse(&m.credential)?;
    let now = (deps.clock)();
    let state: PasskeyRegistration = take_ceremony(
        &deps,
        &cred.response.client_data_json,
        "register",
        Some(p.user_id),
        now,
    )
    .await?;
    let pk = wa
        .finish_passkey_registration(&cred, &state)
        .map_err(|e| bad_credential(format!("the browser's credential does not check out: {e}")))?;
    if passkeys_of(&deps, p.user_id)
        .await?
        .iter()
        .any(|(_, k)| k.cred_id() == pk.cred_id())
    {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "passkey_exists",
            detail: "this passkey is already registered".into(),
            field: Some("credential".into()),
        }));
    }
    let secret = serde_json::to_string(&pk).map_err(|e| internal("serialising a passkey", e))?;
    enroll_confirmed(
        &deps,
        &m.meta,
        p.user_id,
        "passkey",
        Some(secret),
        Some(label),
        EnrollMode::Add,
    )
    .await
}

pub(super) async fn login_options(
    deps: Arc<Deps>,
    m: PasskeyLoginOptions,
) -> Result<PasskeyOptions, HandlerError> {
    let wa = webauthn(&deps)?;
    deps.throttle
        .ceremony_budget(&deps.store, &m.meta, (deps.clock)())
        .await?;
    let (mut rcr, state) = wa
        .start_discoverable_authentication()
        .map_err(|e| internal("starting a passkey login", e))?;
    // A modal request when the user asks to log in with a passkey, not autofill.
    rcr.mediation = None;
    let options = serde_json::to_value(&rcr).map_err(|e| internal("serialising options", e))?;
    let public_key = open_ceremony(&deps, options, "login".into(), None, &state).await?;
    Ok(PasskeyOptions { public_key })
}

pub(super) async fn login(deps: Arc<Deps>, m: PasskeyLogin) -> Result<TokenPair, HandlerError> {
    let wa = webauthn(&deps)?;
    let cred: PublicKeyCredential = parse(&m.credential)?;
    let now = (deps.clock)();
    let state: DiscoverableAuthentication =
        take_ceremony(&deps, &cred.response.client_data_json, "login", None, now).await?;
    let (user_id, cred_id) = wa
        .identify_discoverable_authentication(&cred)
        .map_err(|_| unknown_passkey())?;
    let user_id = UserId(user_id);
    let Some(u) = deps.store.users().by_id(user_id).await? else {
        return Err(unknown_passkey());
    };
    let keys = passkeys_of(&deps, user_id).await?;
    let Some((factor, pk)) = keys
        .into_iter()
        .find(|(_, k)| k.cred_id().as_slice() == cred_id)
    else {
        return Err(unknown_passkey());
    };
    if let Some(retry_after_secs) = throttled(&deps, user_id).await? {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    let res = match wa.finish_discoverable_authentication_v2(&cred, state, &pk) {
        Ok(res) => res,
        Err(e) => {
            tracing::info!(user_id = %user_id, error = %e, "a passkey login failed its checks");
            count_failure(&deps, &m.meta, user_id).await?;
            return Err(unknown_passkey());
        }
    };
    note_use(&deps, &factor, pk, &res, now).await?;
    if u.blocked {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::ACCOUNT_BLOCKED,
            detail: "this account is blocked".into(),
        }));
    }
    let methods = vec![HWK.to_owned()];
    let auth = Assurance {
        acr: super::acr_of(&methods, u.password_via_reset).to_owned(),
        amr: methods,
    };
    let key = account_key(user_id);
    let pair = deps
        .sessions
        .open(&u, &m.meta, None, Some(key.as_str()), auth)
        .await?;
    tracing::info!(user_id = %u.id, session_id = %pair.session_id, "passkey login");
    Ok(pair)
}

/// Options to sign with one of `user`'s passkeys as a second factor; `purpose` binds the
/// answer to this login challenge or session.
pub(super) async fn factor_options(
    deps: &Deps,
    user: UserId,
    purpose: String,
) -> Result<CodeSent, HandlerError> {
    let wa = webauthn(deps)?;
    let keys: Vec<Passkey> = passkeys_of(deps, user)
        .await?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    if keys.is_empty() {
        return Err(HandlerError::from(CommandError::NotFound {
            code: "factor_not_found",
            detail: "you have no passkey".into(),
        }));
    }
    let (rcr, state) = wa
        .start_passkey_authentication(&keys)
        .map_err(|e| internal("starting a passkey authentication", e))?;
    let options = serde_json::to_value(&rcr).map_err(|e| internal("serialising options", e))?;
    let public_key = open_ceremony(deps, options, purpose, Some(user), &state).await?;
    Ok(CodeSent {
        expires_in: CHALLENGE_TTL.num_seconds().unsigned_abs(),
        public_key: Some(public_key),
    })
}

/// Checks an assertion made for [`factor_options`] of the same `purpose`: true when one of
/// `user`'s passkeys signed it.
pub(super) async fn prove(
    deps: &Deps,
    user: UserId,
    purpose: &str,
    credential: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, HandlerError> {
    let wa = webauthn(deps)?;
    let cred: PublicKeyCredential = parse(credential)?;
    let state: PasskeyAuthentication = take_ceremony(
        deps,
        &cred.response.client_data_json,
        purpose,
        Some(user),
        now,
    )
    .await?;
    let res = match wa.finish_passkey_authentication(&cred, &state) {
        Ok(res) => res,
        Err(e) => {
            tracing::info!(user_id = %user, error = %e, "a passkey assertion failed its checks");
            return Ok(false);
        }
    };
    let keys = passkeys_of(deps, user).await?;
    let Some((factor, pk)) = keys.into_iter().find(|(_, k)| k.cred_id() == res.cred_id()) else {
        return Ok(false);
    };
    note_use(deps, &factor, pk, &res, now).await?;
    Ok(true)
}

crate::edge::handlers!(Mfa {
    PasskeyRegistrationOptions => PasskeyOptions: registration_options;
    RegisterPasskey => EnrolledFactor: register;
    PasskeyLoginOptions => PasskeyOptions: login_options;
    PasskeyLogin => TokenPair: login;
});
