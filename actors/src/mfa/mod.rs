//! The mfa context: second factors (TOTP with recovery codes; SMS, email codes and passkeys
//! build on the same rows), the second step of a login, and step-up.
//!
//! Owns: factors and their confirmation, recovery codes (shown once, stored as keyed
//! hashes), login challenges, and the assurance rule: `aal2` needs two factors of different
//! kinds. Refuses: a code twice (a TOTP step is accepted once per factor, a recovery code
//! once), a challenge past its 5 minutes or its 5 wrong tries, changing factors without
//! `aal2` once a user has one, and opening sessions itself (the sessions context does).

mod handlers;
pub mod passkeys;
pub mod totp;

use std::sync::Arc;

use actix::prelude::*;
use chrono::Duration;
use keyward_messages::mfa::{FactorOption, MfaRequired};
use keyward_storage::{ChallengeRecord, Store, UserRecord};
use uuid::Uuid;

use crate::edge::Restart;
use crate::error::HandlerError;
use crate::metrics::Metrics;
use crate::outbox::OutboxWriter;
use crate::sessions::SessionsHandle;
use crate::tokens::{random_token, sha256_hex};
use crate::Clock;

/// How long a login may wait for its second step.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// Wrong codes a challenge takes before it dies.
pub const CHALLENGE_ATTEMPTS: i32 = 5;

/// What the mfa context works with.
pub struct MfaDeps {
    pub store: Store,
    pub clock: Clock,
    pub outbox: OutboxWriter,
    pub sessions: SessionsHandle,
    /// Who may reset another user's factors (`users:write`).
    pub access: crate::access::AccessHandle,
    /// Seals TOTP secrets and keys recovery-code hashes (derived from the master key).
    pub secret_key: [u8; 32],
    /// The `issuer` of otpauth URIs: the host of the public URL.
    pub issuer: String,
    /// Counts second-factor failures under the login throttle's account key.
    pub throttle: crate::accounts::ThrottlePolicy,
    /// What codes by SMS may cost per account, IP and number.
    pub sms_budget: crate::notify::sms::SmsBudget,
    /// The WebAuthn relying party, or why passkeys are unavailable here.
    pub webauthn: passkeys::RelyingParty,
    pub metrics: Metrics,
}

pub struct Mfa {
    pub(crate) deps: Arc<MfaDeps>,
}

impl Mfa {
    pub fn new(deps: Arc<MfaDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Mfa {
    type Context = Context<Self>;
}

impl Supervised for Mfa {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("mfa actor restarting");
    }
}

impl Handler<Restart> for Mfa {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The kinds of proof `amr` values stand for: aal2 needs two different ones. A password set
/// through an email link proves the mailbox, as an email code does. A passkey (always
/// registered and used with user verification) is something held, unlocked by something known
/// or inherent: two kinds on its own.
fn kinds_of(amr: &str, password_via_email: bool) -> &'static [&'static str] {
    match amr {
        "pwd" if password_via_email => &["email"],
        "pwd" => &["know"],
        "email" => &["email"],
        "hwk" => &["have", "verified-user"],
        // Whatever the provider asked of the user, as one kind of its own.
        "fed" => &["federated"],
        _ => &["have"],
    }
}

/// `aal2` when `amr` holds two kinds of proof, else `aal1`.
pub fn acr_of(amr: &[String], password_via_email: bool) -> &'static str {
    let mut kinds: Vec<_> = amr
        .iter()
        .flat_map(|a| kinds_of(a, password_via_email).iter().copied())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.len() >= 2 {
        keyward_messages::access_token::AAL2
    } else {
        keyward_messages::access_token::AAL1
    }
}

/// Once a user has a confirmed factor, changing factors, email or password and deleting the
/// account need a token with `acr: aal2`: 403 `step_up_required` otherwise.
pub async fn require_aal2(
    store: &Store,
    p: &keyward_messages::commands::Principal,
) -> Result<(), HandlerError> {
    if p.aal2 {
        return Ok(());
    }
    let enrolled = store
        .mfa()
        .factors_of(p.user_id)
        .await?
        .iter()
        .any(|f| f.confirmed_at.is_some());
    if enrolled {
        return Err(HandlerError::from(
            keyward_messages::CommandError::Forbidden {
                code: keyward_messages::codes::STEP_UP_REQUIRED,
                detail: "this needs a token with acr aal2: POST /v1/auth/step-up with a second factor first".into(),
            },
        ));
    }
    Ok(())
}

/// After a right password: a challenge when `user` has a confirmed factor, else None.
pub async fn challenge(
    store: &Store,
    clock: &Clock,
    user: &UserRecord,
) -> Result<Option<MfaRequired>, HandlerError> {
    challenge_after(store, clock, user, &["pwd".to_owned()]).await
}

/// After a first factor (`amr`): a challenge when `user` has a confirmed factor, else None.
pub async fn challenge_after(
    store: &Store,
    clock: &Clock,
    user: &UserRecord,
    amr: &[String],
) -> Result<Option<MfaRequired>, HandlerError> {
    let factors: Vec<_> = store
        .mfa()
        .factors_of(user.id)
        .await?
        .into_iter()
        .filter(|f| f.confirmed_at.is_some())
        .collect();
    if factors.is_empty() {
        return Ok(None);
    }
    let now = clock();
    let token = random_token();
    store
        .mfa()
        .insert_challenge(&ChallengeRecord {
            id: Uuid::now_v7(),
            token_hash: sha256_hex(&token),
            user_id: user.id,
            amr: amr.to_vec(),
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            attempts: 0,
        })
        .await?;
    let mut options: Vec<FactorOption> = factors
        .iter()
        .map(|f| FactorOption {
            id: f.id.to_string(),
            kind: f.kind.clone(),
        })
        .collect();
    if store.mfa().recovery_codes_left(user.id).await? > 0 {
        options.push(FactorOption {
            id: "recovery".to_owned(),
            kind: "recovery".to_owned(),
        });
    }
    Ok(Some(MfaRequired {
        mfa_required: true,
        mfa_token: token,
        factors: options,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amr(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn aal2_needs_two_kinds_of_proof() {
        assert_eq!(acr_of(&amr(&["pwd"]), false), "aal1");
        assert_eq!(acr_of(&amr(&["pwd", "otp"]), false), "aal2");
        assert_eq!(acr_of(&amr(&["pwd", "sms"]), false), "aal2");
        assert_eq!(acr_of(&amr(&["pwd", "email"]), false), "aal2");
        assert_eq!(
            acr_of(&amr(&["otp", "sms"]), false),
            "aal1",
            "two things you have"
        );
        assert_eq!(
            acr_of(&amr(&["hwk"]), false),
            "aal2",
            "a user-verified passkey"
        );
        assert_eq!(acr_of(&amr(&["email", "email"]), false), "aal1");
        assert_eq!(acr_of(&amr(&["pwd", "pwd"]), false), "aal1");
        // A password from a reset link and an email code both prove the mailbox only.
        assert_eq!(acr_of(&amr(&["pwd", "email"]), true), "aal1");
        assert_eq!(acr_of(&amr(&["pwd", "otp"]), true), "aal2");
    }
}
