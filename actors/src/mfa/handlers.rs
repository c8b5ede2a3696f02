//! One handler per message of the mfa context.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyward_messages::commands::{Principal, TokenPair};
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::mfa::*;
use keyward_messages::{codes, CommandError, RequestMeta, UserId};
use keyward_storage::{FactorRecord, UserRecord};
use rand::Rng;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{acr_of, totp, Mfa, MfaDeps as Deps, CHALLENGE_ATTEMPTS};
use crate::error::HandlerError;
use crate::notify::templates::MFA_CODE;
use crate::sealed;
use crate::sessions::Assurance;
use crate::tokens::{hmac_hex, sha256_hex};

/// Recovery codes per set.
const RECOVERY_CODES: usize = 10;
/// How long an SMS or email code is good for.
const CODE_TTL: chrono::Duration = chrono::Duration::minutes(5);
/// Wrong tries before a sent code dies.
const CODE_ATTEMPTS: i32 = 5;
/// The least time between two codes for one factor.
const RESEND_AFTER: chrono::Duration = chrono::Duration::seconds(30);
/// Email codes per account in an hour.
const EMAIL_CODES_PER_HOUR: u64 = 5;

fn step_up_required() -> HandlerError {
    HandlerError::from(CommandError::Forbidden {
        code: codes::STEP_UP_REQUIRED,
        detail:
            "this needs a token with acr aal2: POST /v1/auth/step-up with a second factor first"
                .into(),
    })
}

/// Once a user has a factor, changing factors needs aal2.
async fn require_aal2_if_enrolled(deps: &Deps, p: &Principal) -> Result<(), HandlerError> {
    super::require_aal2(&deps.store, p).await
}

fn wrong_code() -> HandlerError {
    HandlerError::from(CommandError::field(
        "code",
        "invalid_code",
        "the code is wrong or was already used",
    ))
}

fn bad_mfa_token() -> HandlerError {
    HandlerError::from(CommandError::unauthenticated(
        codes::INVALID_MFA_TOKEN,
        "the mfa_token is invalid, expired or used up; log in again",
    ))
}

fn no_factor() -> HandlerError {
    HandlerError::from(CommandError::NotFound {
        code: "factor_not_found",
        detail: "you have no factor with this id".into(),
    })
}

pub(super) async fn user(deps: &Deps, id: UserId) -> Result<UserRecord, HandlerError> {
    deps.store.users().by_id(id).await?.ok_or_else(|| {
        HandlerError::from(CommandError::unauthenticated(
            codes::UNAUTHENTICATED,
            "the account no longer exists",
        ))
    })
}

async fn confirmed(deps: &Deps, user: UserId) -> Result<Vec<FactorRecord>, HandlerError> {
    Ok(deps
        .store
        .mfa()
        .factors_of(user)
        .await?
        .into_iter()
        .filter(|f| f.confirmed_at.is_some())
        .collect())
}

fn recovery_hash(deps: &Deps, user: UserId, code: &str) -> String {
    hmac_hex(
        &deps.secret_key,
        &[b"recovery\0", user.0.as_bytes(), code.as_bytes()],
    )
}

/// Ten codes of 10 characters from an alphabet without look-alikes, shown as `xxxxx-xxxxx`
/// (the dash and case are ignored when one is typed).
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let c: String = (0..10)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect();
            format!("{}-{}", &c[..5], &c[5..])
        })
        .collect()
}

async fn store_recovery_codes(
    deps: &Deps,
    tx: &keyward_storage::Tx,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<RecoveryCodes, HandlerError> {
    let codes = new_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| recovery_hash(deps, user, &c.replace('-', "")))
        .collect();
    tx.mfa().replace_recovery_codes(user, &hashes, now).await?;
    Ok(RecoveryCodes {
        recovery_codes: codes,
    })
}

fn enrolled(user: UserId, f: &FactorRecord) -> Outgoing {
    Outgoing::Event(DomainEvent::MfaEnrolled {
        user_id: user,
        factor_id: f.id,
        factor_type: f.kind.clone(),
    })
}

async fn enroll_totp(deps: Arc<Deps>, m: EnrollTotp) -> Result<TotpEnrollment, HandlerError> {
    let p = &m.principal;
    require_aal2_if_enrolled(&deps, p).await?;
    let u = user(&deps, p.user_id).await?;
    let now = (deps.clock)();
    let id = Uuid::now_v7();
    let secret = totp::new_secret();
    let sealed = sealed::seal(&deps.secret_key, id.as_bytes(), &secret).ok_or_else(|| {
        tracing::error!("sealing a TOTP secret failed");
        HandlerError::from(CommandError::Internal)
    })?;
    let tx = deps.store.begin().await?;
    tx.mfa().delete_unconfirmed(p.user_id, "totp").await?;
    tx.mfa()
        .insert_factor(&FactorRecord {
            id,
            user_id: p.user_id,
            kind: "totp".to_owned(),
            label: Some("Authenticator app".to_owned()),
            secret: Some(sealed),
            confirmed_at: None,
            last_step: None,
            created_at: now,
            last_used_at: None,
        })
        .await?;
    tx.commit().await?;
    let uri = totp::uri(&secret, &deps.issuer, u.email.as_str());
    Ok(TotpEnrollment {
        factor_id: id,
        secret: totp::base32(&secret),
        qr_svg: totp::qr_svg(&uri),
        otpauth_uri: uri,
    })
}

/// Checks a TOTP code against factor `f` and takes its time step, once.
async fn check_totp(
    deps: &Deps,
    f: &FactorRecord,
    code: &Code,
    now: DateTime<Utc>,
) -> Result<bool, HandlerError> {
    let Some(secret) = f
        .secret
        .as_deref()
        .and_then(|s| sealed::open(&deps.secret_key, f.id.as_bytes(), s))
    else {
        tracing::error!(factor_id = %f.id, "a TOTP secret does not open: KEYWARD_MASTER_KEY differs from the one that sealed it");
        return Err(HandlerError::from(CommandError::Internal));
    };
    let Some(step) = totp::matching_step(&secret, code.as_str(), now.timestamp()) else {
        return Ok(false);
    };
    Ok(deps.store.mfa().advance_step(f.id, step, now).await?)
}

async fn confirm_totp(
    deps: Arc<Deps>,
    m: ConfirmTotp,
) -> Result<Option<RecoveryCodes>, HandlerError> {
    let p = &m.principal;
    require_aal2_if_enrolled(&deps, p).await?;
    let now = (deps.clock)();
    let factors = deps.store.mfa().factors_of(p.user_id).await?;
    let Some(f) = factors
        .iter()
        .find(|f| f.kind == "totp" && f.confirmed_at.is_none())
    else {
        return Err(HandlerError::from(CommandError::field(
            "code",
            "no_pending_enrollment",
            "start with POST /v1/users/me/mfa/totp",
        )));
    };
    if !check_totp(&deps, f, &m.code, now).await? {
        return Err(wrong_code());
    }
    let first = factors.iter().all(|f| f.confirmed_at.is_none());
    let tx = deps.store.begin().await?;
    tx.users().lock(p.user_id).await?;
    if !tx.mfa().confirm_factor(p.user_id, f.id, now).await? {
        return Err(wrong_code());
    }
    let codes = if first {
        Some(store_recovery_codes(&deps, &tx, p.user_id, now).await?)
    } else {
        None
    };
    deps.outbox
        .enqueue(&tx, &m.meta, enrolled(p.user_id, f))
        .await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(codes)
}

async fn new_codes(deps: Arc<Deps>, m: NewRecoveryCodes) -> Result<RecoveryCodes, HandlerError> {
    let p = &m.principal;
    if confirmed(&deps, p.user_id).await?.is_empty() {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "no_factor",
            detail: "recovery codes back up a second factor: enrol one first".into(),
            field: None,
        }));
    }
    if !p.aal2 {
        return Err(step_up_required());
    }
    let tx = deps.store.begin().await?;
    let codes = store_recovery_codes(&deps, &tx, p.user_id, (deps.clock)()).await?;
    deps.outbox
        .audit(
            &tx,
            &m.meta,
            "mfa.recovery_codes_replaced",
            Some(p.user_id),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(codes)
}

async fn list(deps: Arc<Deps>, m: ListFactors) -> Result<FactorList, HandlerError> {
    let me = m.principal.user_id;
    let factors = confirmed(&deps, me).await?;
    Ok(FactorList {
        factors: factors
            .into_iter()
            .map(|f| FactorView {
                id: f.id,
                kind: f.kind,
                label: f.label,
                created_at: f.created_at,
                last_used_at: f.last_used_at,
            })
            .collect(),
        recovery_codes_left: deps.store.mfa().recovery_codes_left(me).await?,
    })
}

async fn remove(deps: Arc<Deps>, m: RemoveFactor) -> Result<(), HandlerError> {
    let p = &m.principal;
    if !p.aal2 {
        return Err(step_up_required());
    }
    let factors = deps.store.mfa().factors_of(p.user_id).await?;
    let Some(f) = factors.iter().find(|f| f.id == m.factor_id) else {
        return Err(no_factor());
    };
    let tx = deps.store.begin().await?;
    tx.users().lock(p.user_id).await?;
    if !tx.mfa().delete_factor(p.user_id, f.id).await? {
        return Err(no_factor());
    }
    let left = factors
        .iter()
        .filter(|o| o.id != f.id && o.confirmed_at.is_some())
        .count();
    if left == 0 {
        // Codes back up a factor; with none left they would be a factor of their own.
        tx.mfa()
            .replace_recovery_codes(p.user_id, &[], (deps.clock)())
            .await?;
    }
    let ev = DomainEvent::MfaRemoved {
        user_id: p.user_id,
        factor_id: Some(f.id),
        factor_type: f.kind.clone(),
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Event(ev))
        .await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(())
}

/// A sent code's keyed hash, bound to the request it was sent for (`purpose`: this login
/// challenge, or this session's step-up), so it answers no other.
fn code_hash(deps: &Deps, factor: Uuid, purpose: &str, code: &str) -> String {
    hmac_hex(
        &deps.secret_key,
        &[
            b"code\0",
            factor.as_bytes(),
            purpose.as_bytes(),
            b"\0",
            code.as_bytes(),
        ],
    )
}

/// Checks the code last sent for an SMS or email factor, and uses it up when right.
async fn check_code(
    deps: &Deps,
    f: &FactorRecord,
    code: &Code,
    purpose: &str,
    now: DateTime<Utc>,
) -> Result<bool, HandlerError> {
    let Some(sent) = deps.store.mfa().code(f.id).await? else {
        return Ok(false);
    };
    if sent.expires_at <= now || sent.attempts >= CODE_ATTEMPTS {
        deps.store.mfa().delete_code(f.id).await?;
        return Ok(false);
    }
    let given = code_hash(deps, f.id, purpose, code.as_str());
    if !bool::from(given.as_bytes().ct_eq(sent.code_hash.as_bytes())) {
        deps.store.mfa().code_failed(f.id).await?;
        return Ok(false);
    }
    // Of two uses of one code, only one takes it.
    if !deps.store.mfa().delete_code(f.id).await? {
        return Ok(false);
    }
    deps.store.mfa().touch_factor(f.id, now).await?;
    Ok(true)
}

fn code_of(proof: &Proof) -> Result<&Code, HandlerError> {
    match proof {
        Proof::Code(c) => Ok(c),
        Proof::Passkey(_) => Err(HandlerError::from(CommandError::field(
            "code",
            "code_required",
            "this factor takes a code, not a passkey credential",
        ))),
    }
}

/// Checks a proof for `user` against `factor`: the `amr` value it proves, or None when wrong.
/// `purpose` is the passkey ceremony an assertion must answer.
async fn prove(
    deps: &Deps,
    user: UserId,
    factor: FactorRef,
    proof: &Proof,
    purpose: &str,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, HandlerError> {
    match factor {
        FactorRef::Recovery => {
            let code = code_of(proof)?;
            let hash = recovery_hash(deps, user, code.as_str());
            let used = deps.store.mfa().use_recovery_code(user, &hash, now).await?;
            Ok(used.then_some("otp"))
        }
        FactorRef::Factor(id) => {
            let factors = confirmed(deps, user).await?;
            let Some(f) = factors.iter().find(|f| f.id == id) else {
                return Err(no_factor());
            };
            if f.kind == "passkey" {
                let Proof::Passkey(credential) = proof else {
                    return Err(HandlerError::from(CommandError::field(
                        "credential",
                        "credential_required",
                        "a passkey factor takes `credential`: the assertion for the options POST /v1/auth/mfa/challenge gave",
                    )));
                };
                let ok = super::passkeys::prove(deps, user, purpose, credential, now).await?;
                return Ok(ok.then_some(super::passkeys::HWK));
            }
            let code = code_of(proof)?;
            match f.kind.as_str() {
                "totp" => Ok(check_totp(deps, f, code, now).await?.then_some("otp")),
                "sms" => Ok(check_code(deps, f, code, purpose, now)
                    .await?
                    .then_some("sms")),
                "email" => Ok(check_code(deps, f, code, purpose, now)
                    .await?
                    .then_some("email")),
                other => {
                    tracing::warn!(kind = other, "a factor of a kind this node cannot check");
                    Err(no_factor())
                }
            }
        }
    }
}

pub(super) use crate::accounts::account_key;

pub(super) async fn throttled(deps: &Deps, user: UserId) -> Result<Option<u64>, HandlerError> {
    crate::accounts::account_throttled(&deps.store, (deps.clock)(), &deps.throttle, user).await
}

pub(super) async fn count_failure(
    deps: &Deps,
    meta: &RequestMeta,
    user: UserId,
) -> Result<(), HandlerError> {
    crate::accounts::count_account_failure(&deps.store, &deps.outbox, meta, (deps.clock)(), user)
        .await
}

async fn verify(deps: Arc<Deps>, m: VerifyMfa) -> Result<TokenPair, HandlerError> {
    let now = (deps.clock)();
    let Some(c) = deps
        .store
        .mfa()
        .challenge(&sha256_hex(&m.mfa_token))
        .await?
    else {
        return Err(bad_mfa_token());
    };
    if c.expires_at <= now || c.attempts >= CHALLENGE_ATTEMPTS {
        deps.store.mfa().delete_challenge(c.id).await?;
        return Err(bad_mfa_token());
    }
    if let Some(retry_after_secs) = throttled(&deps, c.user_id).await? {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    let u = user(&deps, c.user_id).await?;
    let purpose = factor_purpose(c.id);
    let Some(amr) = prove(&deps, c.user_id, m.factor, &m.proof, &purpose, now).await? else {
        deps.store.mfa().challenge_failed(c.id).await?;
        count_failure(&deps, &m.meta, c.user_id).await?;
        return Err(wrong_code());
    };
    // Only one verification of a challenge opens a session.
    if !deps.store.mfa().delete_challenge(c.id).await? {
        return Err(bad_mfa_token());
    }
    if u.blocked {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::ACCOUNT_BLOCKED,
            detail: "this account is blocked".into(),
        }));
    }
    let mut methods = c.amr.clone();
    methods.push(amr.to_owned());
    let auth = Assurance {
        acr: acr_of(&methods, u.password_via_reset).to_owned(),
        amr: methods,
    };
    let key = account_key(c.user_id);
    let pair = deps
        .sessions
        .open(&u, &m.meta, None, Some(key.as_str()), auth)
        .await?;
    tracing::info!(user_id = %u.id, session_id = %pair.session_id, "second factor accepted; logged in");
    Ok(pair)
}

async fn step_up(deps: Arc<Deps>, m: StepUp) -> Result<StepUpToken, HandlerError> {
    let p = &m.principal;
    let now = (deps.clock)();
    if let Some(retry_after_secs) = throttled(&deps, p.user_id).await? {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    let u = user(&deps, p.user_id).await?;
    let purpose = step_up_purpose(p);
    let Some(amr) = prove(&deps, p.user_id, m.factor, &m.proof, &purpose, now).await? else {
        count_failure(&deps, &m.meta, p.user_id).await?;
        return Err(wrong_code());
    };
    let minted = deps
        .sessions
        .step_up_token(&u, p.session_id, |had| {
            let mut methods = had.to_vec();
            if !methods.iter().any(|a| a == amr) {
                methods.push(amr.to_owned());
            }
            Assurance {
                acr: acr_of(&methods, u.password_via_reset).to_owned(),
                amr: methods,
            }
        })
        .await?;
    let Some((access_token, expires_in)) = minted else {
        return Err(HandlerError::from(CommandError::unauthenticated(
            codes::UNAUTHENTICATED,
            "the session ended",
        )));
    };
    Ok(StepUpToken {
        access_token,
        token_type: "Bearer",
        expires_in,
    })
}

async fn reset(deps: Arc<Deps>, m: ResetFactors) -> Result<(), HandlerError> {
    if !deps
        .access
        .allows(m.principal.user_id, "users:write")
        .await?
    {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::FORBIDDEN,
            detail: "this needs the users:write permission".into(),
        }));
    }
    if deps.store.users().by_id(m.user_id).await?.is_none() {
        return Err(HandlerError::from(CommandError::NotFound {
            code: codes::USER_NOT_FOUND,
            detail: "no user has this id".into(),
        }));
    }
    let meta = m.meta.acting(m.principal.user_id);
    let tx = deps.store.begin().await?;
    tx.users().lock(m.user_id).await?;
    let removed = tx.mfa().erase_user(m.user_id).await?;
    let ev = DomainEvent::MfaRemoved {
        user_id: m.user_id,
        factor_id: None,
        factor_type: "all".to_owned(),
    };
    deps.outbox.enqueue(&tx, &meta, Outgoing::Event(ev)).await?;
    tx.commit().await?;
    deps.outbox.wake();
    tracing::info!(user_id = %m.user_id, removed, "an administrator reset the user's factors");
    Ok(())
}

/// Whether a new factor replaces the user's factor of its kind (SMS, email) or joins them
/// (passkeys: one per device).
pub(super) enum EnrollMode {
    Replace,
    Add,
}

/// The passkey ceremony a login challenge's second step answers.
fn factor_purpose(challenge: Uuid) -> String {
    format!("factor:{challenge}")
}

/// The passkey ceremony a step-up of session `p.session_id` answers.
fn step_up_purpose(p: &Principal) -> String {
    format!("step-up:{}", p.session_id)
}

/// Adds a confirmed factor of `kind`, with the first factor's recovery codes.
pub(super) async fn enroll_confirmed(
    deps: &Deps,
    meta: &RequestMeta,
    user: UserId,
    kind: &str,
    secret: Option<String>,
    label: Option<String>,
    mode: EnrollMode,
) -> Result<EnrolledFactor, HandlerError> {
    let now = (deps.clock)();
    let factors = deps.store.mfa().factors_of(user).await?;
    let first = factors.iter().all(|f| f.confirmed_at.is_none());
    let f = FactorRecord {
        id: Uuid::now_v7(),
        user_id: user,
        kind: kind.to_owned(),
        label,
        secret,
        confirmed_at: Some(now),
        last_step: None,
        created_at: now,
        last_used_at: None,
    };
    let tx = deps.store.begin().await?;
    tx.users().lock(user).await?;
    if matches!(mode, EnrollMode::Replace) {
        for old in factors.iter().filter(|o| o.kind == kind) {
            tx.mfa().delete_factor(user, old.id).await?;
        }
    }
    tx.mfa().insert_factor(&f).await?;
    let codes = if first {
        Some(
            store_recovery_codes(deps, &tx, user, now)
                .await?
                .recovery_codes,
        )
    } else {
        None
    };
    deps.outbox.enqueue(&tx, meta, enrolled(user, &f)).await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(EnrolledFactor {
        factor_id: f.id,
        kind: f.kind,
        recovery_codes: codes,
    })
}

async fn enroll_sms(deps: Arc<Deps>, m: EnrollSms) -> Result<EnrolledFactor, HandlerError> {
    let p = &m.principal;
    super::require_aal2(&deps.store, p).await?;
    let phone = deps
        .store
        .profiles()
        .get(p.user_id)
        .await?
        .filter(|pr| pr.phone_verified)
        .and_then(|pr| pr.phone);
    let Some(phone) = phone else {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "phone_not_verified",
            detail: "prove a phone number first: POST /v1/users/me/phone and /confirm".into(),
            field: None,
        }));
    };
    let label = format!("SMS to …{}", &phone[phone.len().saturating_sub(4)..]);
    enroll_confirmed(
        &deps,
        &m.meta,
        p.user_id,
        "sms",
        Some(phone),
        Some(label),
        EnrollMode::Replace,
    )
    .await
}

async fn enroll_email(deps: Arc<Deps>, m: EnrollEmail) -> Result<EnrolledFactor, HandlerError> {
    let p = &m.principal;
    super::require_aal2(&deps.store, p).await?;
    let u = user(&deps, p.user_id).await?;
    if !u.email_verified {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "email_not_verified",
            detail: "verify the email address first".into(),
            field: None,
        }));
    }
    let label = Some(format!("Email to {}", u.email.as_str()));
    enroll_confirmed(
        &deps,
        &m.meta,
        p.user_id,
        "email",
        None,
        label,
        EnrollMode::Replace,
    )
    .await
}

fn rate_limited(secs: i64) -> HandlerError {
    HandlerError::from(CommandError::RateLimited {
        retry_after_secs: u64::try_from(secs.max(1)).unwrap_or(1),
    })
}

async fn send_code(deps: Arc<Deps>, m: SendCode) -> Result<CodeSent, HandlerError> {
    let now = (deps.clock)();
    let (user_id, purpose) = match (&m.principal, &m.mfa_token) {
        (Some(p), _) => (p.user_id, step_up_purpose(p)),
        (None, Some(t)) => {
            let c = deps.store.mfa().challenge(&sha256_hex(t)).await?;
            match c {
                Some(c) if c.expires_at > now && c.attempts < CHALLENGE_ATTEMPTS => {
                    (c.user_id, factor_purpose(c.id))
                }
                _ => return Err(bad_mfa_token()),
            }
        }
        (None, None) => return Err(bad_mfa_token()),
    };
    let factors = confirmed(&deps, user_id).await?;
    let Some(f) = factors.iter().find(|f| f.id == m.factor_id) else {
        return Err(no_factor());
    };
    if f.kind == "passkey" {
        return super::passkeys::factor_options(&deps, user_id, purpose).await;
    }
    if let Some(prev) = deps.store.mfa().code(f.id).await? {
        let wait = prev.sent_at + RESEND_AFTER - now;
        if wait > chrono::Duration::zero() {
            return Err(rate_limited(wait.num_seconds()));
        }
    }
    let u = user(&deps, user_id).await?;
    let locale = keyward_messages::commands::Locale::from_accept_language(Some(&u.locale));
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let variables: std::collections::BTreeMap<String, serde_json::Value> =
        [("code".to_owned(), code.clone().into())].into();
    // What the code costs, spent in the transaction that queues it.
    enum Budget {
        Sms(String),
        Email(String),
    }
    let (budget, job) = match f.kind.as_str() {
        "sms" => {
            let phone = f.secret.clone().unwrap_or_default();
            let budget = Budget::Sms(phone.clone());
            let job = Outgoing::Sms(keyward_messages::events::SmsJob {
                delivery: None,
                to: phone,
                text: None,
                template: MFA_CODE.to_owned(),
                locale,
                variables,
            });
            (budget, job)
        }
        "email" => {
            let budget = Budget::Email(format!("email-code:user:{user_id}"));
            let job = Outgoing::Email(keyward_messages::events::EmailJob {
                to: u.email.as_str().to_owned(),
                template: MFA_CODE.to_owned(),
                locale,
                variables,
                delivery: None,
            });
            (budget, job)
        }
        _ => {
            return Err(HandlerError::from(CommandError::field(
                "factor_id",
                "no_code_to_send",
                "this factor makes its own codes (an authenticator app); enter one",
            )))
        }
    };
    let tx = deps.store.begin().await?;
    match budget {
        Budget::Sms(phone) => {
            if let Err(wait) = deps
                .sms_budget
                .spend(&tx, user_id, m.meta.client_ip, &phone, now)
                .await?
            {
                return Err(HandlerError::from(CommandError::RateLimited {
                    retry_after_secs: wait,
                }));
            }
        }
        Budget::Email(key) => {
            let spent = tx
                .login_failures()
                .spend_hourly(&[(key.as_str(), EMAIL_CODES_PER_HOUR)], now)
                .await?;
            if spent.is_some() {
                return Err(rate_limited(600));
            }
        }
    }
    tx.mfa()
        .put_code(&keyward_storage::CodeRecord {
            factor_id: f.id,
            user_id,
            code_hash: code_hash(&deps, f.id, &purpose, &code),
            expires_at: now + CODE_TTL,
            attempts: 0,
            sent_at: now,
        })
        .await?;
    deps.outbox.enqueue(&tx, &m.meta, job).await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(CodeSent {
        expires_in: CODE_TTL.num_seconds().unsigned_abs(),
        public_key: None,
    })
}

crate::edge::handlers!(Mfa {
    EnrollSms => EnrolledFactor: enroll_sms;
    EnrollEmail => EnrolledFactor: enroll_email;
    SendCode => CodeSent: send_code;
    EnrollTotp => TotpEnrollment: enroll_totp;
    ConfirmTotp => Option<RecoveryCodes>: confirm_totp;
    NewRecoveryCodes => RecoveryCodes: new_codes;
    ListFactors => FactorList: list;
    RemoveFactor => (): remove;
    VerifyMfa => TokenPair: verify;
    StepUp => StepUpToken: step_up;
    ResetFactors => (): reset;
});
