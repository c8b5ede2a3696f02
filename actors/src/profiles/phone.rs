//! Proving a phone number: a 6-digit code by SMS, valid for five minutes, single use, five
//! wrong tries at most; each send takes a place in the SMS budget per account, client IP and
//! number (`notify::sms::SmsBudget`). Only the code's keyed
//! hash is stored. A proven number becomes the profile's verified phone, where SMS
//! notifications (and later SMS second factors) go.

use std::sync::Arc;

use chrono::Duration;
use keyward_messages::commands::Locale;
use keyward_messages::events::{DomainEvent, Outgoing, SmsJob};
use keyward_messages::profiles::{
    ConfirmPhone, PhoneCodeSent, PhoneVerified, StartPhoneVerification,
};
use keyward_messages::{CommandError, UserId};
use keyward_storage::{PhoneCodeRecord, ProfileRecord};
use rand::Rng;
use serde_json::Map;
use subtle::ConstantTimeEq;

use super::ProfilesDeps as Deps;
use crate::error::HandlerError;
use crate::notify::templates::PHONE_CODE;

/// How long a code is good for.
pub const CODE_TTL: Duration = Duration::minutes(5);
/// Wrong codes before the code dies.
const MAX_ATTEMPTS: i32 = 5;
/// The least time between two codes for one account.
const RESEND_AFTER: Duration = Duration::seconds(30);

fn code_hash(key: &[u8; 32], user: UserId, phone: &str, code: &str) -> String {
    crate::tokens::hmac_hex(
        key,
        &[user.0.as_bytes(), phone.as_bytes(), b"\0", code.as_bytes()],
    )
}

fn rate_limited(retry_after: Duration) -> HandlerError {
    HandlerError::from(CommandError::RateLimited {
        retry_after_secs: u64::try_from(retry_after.num_seconds().max(1)).unwrap_or(1),
    })
}

pub(super) async fn start(
    deps: Arc<Deps>,
    m: StartPhoneVerification,
) -> Result<PhoneCodeSent, HandlerError> {
    let me = m.principal.user_id;
    let now = (deps.clock)();
    if let Some(prev) = deps.store.profiles().phone_code(me).await? {
        let wait = prev.sent_at + RESEND_AFTER - now;
        if wait > Duration::zero() {
            return Err(rate_limited(wait));
        }
    }
    let user = deps
        .store
        .users()
        .by_id(me)
        .await?
        .ok_or_else(super::handlers::gone)?;
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
    let phone = m.phone.as_str().to_owned();
    let tx = deps.store.begin().await?;
    if let Err(retry_after_secs) = deps
        .sms_budget
        .spend(&tx, me, m.meta.client_ip, m.phone.as_str(), now)
        .await?
    {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    tx.profiles()
        .put_phone_code(&PhoneCodeRecord {
            user_id: me,
            phone: phone.clone(),
            code_hash: code_hash(&deps.code_key, me, &phone, &code),
            expires_at: now + CODE_TTL,
            attempts: 0,
            sent_at: now,
        })
        .await?;
    let job = SmsJob {
        delivery: None,
        to: phone.clone(),
        text: None,
        template: PHONE_CODE.to_owned(),
        locale: Locale::from_accept_language(Some(&user.locale)),
        variables: [("code".to_owned(), code.into())].into(),
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Sms(job))
        .await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(PhoneCodeSent {
        phone,
        expires_in: CODE_TTL.num_seconds().unsigned_abs(),
    })
}

fn bad_code(code: &'static str, message: &str) -> HandlerError {
    HandlerError::from(CommandError::field("code", code, message))
}

pub(super) async fn confirm(
    deps: Arc<Deps>,
    m: ConfirmPhone,
) -> Result<PhoneVerified, HandlerError> {
    let me = m.principal.user_id;
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    tx.users().lock(me).await?;
    let Some(pending) = tx.profiles().phone_code(me).await? else {
        return Err(bad_code(
            "no_pending_code",
            "no code is waiting; request one with POST /v1/users/me/phone",
        ));
    };
    if pending.expires_at <= now || pending.attempts >= MAX_ATTEMPTS {
        tx.profiles().delete_phone_code(me).await?;
        tx.commit().await?;
        return Err(bad_code(
            "code_expired",
            "the code expired or was tried too often; request a new one",
        ));
    }
    let given = code_hash(&deps.code_key, me, &pending.phone, m.code.trim());
    if !bool::from(given.as_bytes().ct_eq(pending.code_hash.as_bytes())) {
        tx.profiles().phone_code_failed(me).await?;
        tx.commit().await?;
        return Err(bad_code(
            "invalid_code",
            "the code is wrong; enter the 6 digits of the latest SMS",
        ));
    }
    let mut p = match tx.profiles().get(me).await? {
        Some(p) => p,
        None => ProfileRecord::empty(me, deps.policy.default_visibility, now),
    };
    p.phone = Some(pending.phone.clone());
    p.phone_verified = true;
    p.updated_at = now;
    tx.profiles().put(&p).await?;
    tx.profiles().delete_phone_code(me).await?;
    // The number itself is private: the event names the change only.
    let ev = DomainEvent::ProfileUpdated {
        user_id: me,
        changed: vec!["phone".to_owned()],
        values: Map::new(),
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Event(ev))
        .await?;
    tx.commit().await?;
    deps.cache.forget(me);
    deps.outbox.wake();
    Ok(PhoneVerified {
        phone: pending.phone,
        phone_verified: true,
    })
}
