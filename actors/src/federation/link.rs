//! Linking: an identity joins an existing account only when its owner proves that account —
//! by being signed in to it when the flow starts, by its password, or by a code sent to its
//! verified email — and every proof is bound to the one identity it was made for (a code sent
//! while linking one identity links no other).

use std::sync::Arc;

use keyward_messages::events::{DomainEvent, EmailJob, Outgoing};
use keyward_messages::federation::*;
use keyward_messages::mfa::{CodeSent, LoginReply};
use keyward_messages::{codes, CommandError, FieldError, RequestMeta, UserId};
use keyward_storage::{FlowRecord, IdentityRecord, LinkProofRecord, UserRecord};
use rand::Rng as _;
use serde_json::json;
use uuid::Uuid;

use super::flow::{allowed_redirect, begin, login_reply, provider, to_app, Asserted};
use super::{Federation, FederationDeps as Deps, Provider};
use crate::error::HandlerError;
use crate::notify::templates::LINK_CODE;
use crate::tokens::{hmac_hex, random_token, sha256_hex};

/// How long a pending link waits for its proof.
const PROOF_TTL: chrono::Duration = chrono::Duration::minutes(15);
/// How long an emailed code is good for.
const CODE_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// Wrong passwords and codes a pending link takes before it is gone.
const MAX_ATTEMPTS: i32 = 5;
/// Codes one pending link may send.
const MAX_CODES: i32 = 3;
/// The wait between two codes.
const RESEND_AFTER: chrono::Duration = chrono::Duration::seconds(60);

fn bad_link_token() -> HandlerError {
    HandlerError::from(CommandError::field(
        "link_token",
        "invalid_link_token",
        "this link is unknown, used, expired (15 minutes) or took too many wrong answers; sign in with the provider again",
    ))
}

fn identity_in_use() -> HandlerError {
    HandlerError::from(CommandError::Conflict {
        code: "identity_in_use",
        detail: "this identity is linked to another account".into(),
        field: None,
    })
}

/// A pending link for `user`, who has the identity's email: the token the app uses to prove
/// the account. Only for an account whose email is verified.
pub(super) async fn offer(
    deps: &Deps,
    p: &Provider,
    user: &UserRecord,
    a: &Asserted,
) -> Result<Option<String>, HandlerError> {
    if !user.email_verified || user.blocked {
        return Ok(None);
    }
    let now = (deps.clock)();
    let token = random_token();
    deps.store
        .federation()
        .insert_link_proof(&LinkProofRecord {
            id: Uuid::now_v7(),
            token_hash: sha256_hex(&token),
            user_id: user.id,
            provider: p.name.clone(),
            subject: a.subject.clone(),
            email: a.email.clone(),
            email_verified: a.email_verified,
            code_hash: None,
            code_sent_at: None,
            codes_sent: 0,
            attempts: 0,
            created_at: now,
            expires_at: now + PROOF_TTL,
        })
        .await?;
    Ok(Some(token))
}

/// Links `a` to `user` in one transaction with `identity.linked` and its audit line.
/// Err(identity_in_use) when the identity is another account's.
async fn link(
    deps: &Deps,
    tx: &keyward_storage::Tx,
    meta: &RequestMeta,
    user: UserId,
    provider: &str,
    a: &IdentityRecord,
) -> Result<(), HandlerError> {
    match tx.federation().insert_identity(a).await {
        Ok(()) => {}
        Err(keyward_storage::StorageError::Conflict { .. }) => return Err(identity_in_use()),
        Err(e) => return Err(e.into()),
    }
    let ev = DomainEvent::IdentityLinked {
        user_id: user,
        identity_id: a.id,
        provider: provider.to_owned(),
    };
    deps.outbox.enqueue(tx, meta, Outgoing::Event(ev)).await?;
    deps.outbox
        .audit(
            tx,
            meta,
            "identity.linked",
            Some(user),
            json!({ "provider": provider, "identity_id": a.id }),
        )
        .await?;
    Ok(())
}

fn identity_record(
    user: UserId,
    provider: &str,
    a: &Asserted,
    now: chrono::DateTime<chrono::Utc>,
) -> IdentityRecord {
    IdentityRecord {
        id: Uuid::now_v7(),
        user_id: user,
        provider: provider.to_owned(),
        subject: a.subject.clone(),
        email: a.email.clone(),
        email_verified: a.email_verified,
        created_at: now,
        last_login_at: Some(now),
    }
}

async fn start_link(deps: Arc<Deps>, m: StartLink) -> Result<Redirect, HandlerError> {
    let p = provider(&deps, &m.provider)?;
    // A new way into the account: as strong a token as changing the password takes.
    crate::mfa::require_aal2(&deps.store, &m.principal).await?;
    let redirect_uri = allowed_redirect(&deps, &m.redirect_uri)?;
    begin(
        &deps,
        p,
        redirect_uri,
        m.app_state,
        Some(m.principal.user_id),
    )
    .await
}

/// The callback of a link started while signed in: the identity joins that account, and the
/// browser goes back to the app with `linked=<provider>` (no code: the app is signed in).
pub(super) async fn link_signed_in(
    deps: &Deps,
    p: &Provider,
    flow: &FlowRecord,
    user: UserId,
    a: &Asserted,
    meta: &RequestMeta,
) -> Result<Redirect, HandlerError> {
    if let Some(known) = deps
        .store
        .federation()
        .identity(&p.name, &a.subject)
        .await?
    {
        return if known.user_id == user {
            to_app(flow, &[("linked", &p.name)])
        } else {
            to_app(flow, &[("error", "identity_in_use")])
        };
    }
    let Some(u) = deps.store.users().by_id(user).await? else {
        return to_app(flow, &[("error", "account_deleted")]);
    };
    if u.blocked {
        return to_app(flow, &[("error", "account_blocked")]);
    }
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    tx.users().lock(user).await?;
    let identity = identity_record(user, &p.name, a, now);
    match link(deps, &tx, meta, user, &p.name, &identity).await {
        Ok(()) => {}
        Err(HandlerError::Command(CommandError::Conflict { .. })) => {
            return to_app(flow, &[("error", "identity_in_use")]);
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    deps.outbox.wake();
    tracing::info!(user_id = %user, provider = %p.name, "identity linked while signed in");
    to_app(flow, &[("linked", &p.name)])
}

/// The pending link of `token` and the account it would join.
async fn pending(deps: &Deps, token: &str) -> Result<(LinkProofRecord, UserRecord), HandlerError> {
    let now = (deps.clock)();
    let Some(proof) = deps
        .store
        .federation()
        .link_proof(&sha256_hex(token), now)
        .await?
        .filter(|l| l.attempts < MAX_ATTEMPTS)
    else {
        return Err(bad_link_token());
    };
    // Its email may have changed since: the proof is for a verified one only.
    let Some(u) = deps
        .store
        .users()
        .by_id(proof.user_id)
        .await?
        .filter(|u| u.email_verified)
    else {
        return Err(bad_link_token());
    };
    if u.blocked {
        return Err(HandlerError::from(CommandError::Forbidden {
            code: codes::ACCOUNT_BLOCKED,
            detail: "this account is blocked".into(),
        }));
    }
    Ok((proof, u))
}

fn code_hash(deps: &Deps, proof: Uuid, code: &str) -> String {
    hmac_hex(
        &deps.secret_key,
        &[b"link-code\0", proof.as_bytes(), code.as_bytes()],
    )
}

async fn send_code(deps: Arc<Deps>, m: SendLinkCode) -> Result<CodeSent, HandlerError> {
    let (proof, u) = pending(&deps, &m.link_token).await?;
    let now = (deps.clock)();
    if proof.codes_sent >= MAX_CODES {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs: u64::try_from((proof.expires_at - now).num_seconds().max(1))
                .unwrap_or(1),
        }));
    }
    if let Some(wait) = proof
        .code_sent_at
        .map(|at| at + RESEND_AFTER - now)
        .filter(|w| *w > chrono::Duration::zero())
    {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs: u64::try_from(wait.num_seconds().max(1)).unwrap_or(1),
        }));
    }
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let variables = [
        ("code".to_owned(), json!(code)),
        ("provider".to_owned(), json!(proof.provider)),
    ]
    .into();
    let job = Outgoing::Email(EmailJob {
        to: u.email.as_str().to_owned(),
        template: LINK_CODE.to_owned(),
        locale: keyward_messages::commands::Locale::from_accept_language(Some(&u.locale)),
        variables,
        delivery: None,
    });
    let tx = deps.store.begin().await?;
    tx.federation()
        .set_link_code(proof.id, &code_hash(&deps, proof.id, &code), now)
        .await?;
    deps.outbox.enqueue(&tx, &m.meta, job).await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(CodeSent {
        expires_in: CODE_TTL.num_seconds().unsigned_abs(),
        public_key: None,
    })
}

/// A wrong answer: counted against the pending link and the account's login throttle.
async fn wrong(
    deps: &Deps,
    meta: &RequestMeta,
    proof: &LinkProofRecord,
    err: HandlerError,
) -> Result<LoginReply, HandlerError> {
    deps.store.federation().fail_link_proof(proof.id).await?;
    crate::accounts::count_account_failure(
        &deps.store,
        &deps.outbox,
        meta,
        (deps.clock)(),
        proof.user_id,
    )
    .await?;
    Err(err)
}

async fn confirm(deps: Arc<Deps>, m: ConfirmLink) -> Result<LoginReply, HandlerError> {
    let (proof, u) = pending(&deps, &m.link_token).await?;
    let now = (deps.clock)();
    if let Some(retry_after_secs) =
        crate::accounts::account_throttled(&deps.store, now, &deps.throttle, u.id).await?
    {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    match &m.proof {
        LinkProof::Password(pw) => {
            // A password nobody knows (a social login's account) proves nothing, and costs the
            // same to check.
            let set = deps.store.users().has_password(u.id).await?;
            let v = deps.hasher.verify(pw.expose(), &u.password_hash).await?;
            if !(set && v.matches) {
                let e = HandlerError::from(crate::accounts::policy::invalid_credentials());
                return wrong(&deps, &m.meta, &proof, e).await;
            }
        }
        LinkProof::Code(code) => {
            let fresh = proof.code_sent_at.is_some_and(|at| at + CODE_TTL > now);
            let right = proof.code_hash.as_deref().is_some_and(|h| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    h.as_bytes(),
                    code_hash(&deps, proof.id, code.trim()).as_bytes(),
                ))
            });
            if !(fresh && right) {
                let e = HandlerError::from(CommandError::from(FieldError::new(
                    "code",
                    "invalid_code",
                    "the code is wrong or older than 10 minutes; ask for a new one",
                )));
                return wrong(&deps, &m.meta, &proof, e).await;
            }
        }
    }
    let asserted = Asserted {
        subject: proof.subject.clone(),
        email: proof.email.clone(),
        email_verified: proof.email_verified,
        ..Asserted::default()
    };
    let tx = deps.store.begin().await?;
    tx.users().lock(u.id).await?;
    // Taken once: a second answer racing this one finds nothing.
    if !tx.federation().take_link_proof(proof.id).await? {
        return Err(bad_link_token());
    }
    let identity = identity_record(u.id, &proof.provider, &asserted, now);
    link(&deps, &tx, &m.meta, u.id, &proof.provider, &identity).await?;
    tx.commit().await?;
    deps.outbox.wake();
    tracing::info!(user_id = %u.id, provider = %proof.provider, "identity linked after proving the account");
    login_reply(&deps, &u, &m.meta, &proof.provider).await
}

crate::edge::handlers!(Federation {
    StartLink => Redirect: start_link;
    SendLinkCode => CodeSent: send_code;
    ConfirmLink => LoginReply: confirm;
});
