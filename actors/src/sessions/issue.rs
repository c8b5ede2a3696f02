//! Issuing tokens: opening a session (called by accounts after a successful login) and
//! minting access tokens for a live session.

use chrono::{DateTime, Utc};
use keyward_messages::commands::TokenPair;
use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::{CommandError, RequestMeta, SessionId};
use keyward_storage::{SessionRecord, UserRecord};
use uuid::Uuid;

use super::policy::{secs_until, AccessClaims};
use super::SessionsDeps as Deps;
use crate::error::HandlerError;
use crate::tokens::{random_token, sha256_hex};
use keyward_messages::access_token::{AAL1, MAX_ISSUED_BYTES};

/// How a session's user proved who they are: the `amr` and `acr` its tokens carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assurance {
    pub amr: Vec<String>,
    pub acr: String,
}

impl Assurance {
    /// A password alone.
    pub fn password() -> Self {
        Self {
            amr: vec!["pwd".to_owned()],
            acr: AAL1.to_owned(),
        }
    }

    pub(crate) fn of(session: &SessionRecord) -> Self {
        Self {
            amr: session.amr.clone(),
            acr: session.acr.clone(),
        }
    }
}

/// Signs an access token for `user` in session `sid`. Roles are listed while the token stays
/// under `MAX_ISSUED_BYTES`; the rest are cut and `roles_truncated` says so.
pub(crate) async fn access_token(
    deps: &Deps,
    user: &UserRecord,
    roles: &[String],
    sid: SessionId,
    auth: &Assurance,
    now: DateTime<Utc>,
) -> Result<String, CommandError> {
    let mut claims = AccessClaims {
        iss: deps.tokens.issuer.clone(),
        sub: user.id.to_string(),
        aud: deps.tokens.audience.clone(),
        exp: (now + deps.tokens.access_ttl).timestamp(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: Uuid::now_v7().to_string(),
        sid: sid.to_string(),
        email: user.email.as_str().to_owned(),
        email_verified: user.email_verified,
        roles: Vec::new(),
        roles_truncated: false,
        amr: auth.amr.clone(),
        acr: auth.acr.clone(),
    };
    let bare = deps.keys.signed_len(&claims)?;
    // Each role costs its JSON (quotes and a comma) in base64: 4 bytes per 3.
    let mut room = MAX_ISSUED_BYTES.saturating_sub(bare + "\"roles\":[],".len() * 4 / 3 + 1);
    for r in roles {
        let cost = (r.len() + 3) * 4 / 3 + 1;
        if cost > room {
            claims.roles_truncated = true;
            break;
        }
        room -= cost;
        claims.roles.push(r.clone());
    }
    loop {
        if claims.roles.is_empty() || deps.keys.signed_len(&claims)? <= MAX_ISSUED_BYTES {
            return deps.keys.sign(&claims).await;
        }
        claims.roles.pop();
        claims.roles_truncated = true;
    }
}

pub(crate) async fn pair(
    deps: &Deps,
    user: &UserRecord,
    roles: &[String],
    session: &SessionRecord,
    refresh_token: String,
    now: DateTime<Utc>,
) -> Result<TokenPair, CommandError> {
    let access = access_token(deps, user, roles, session.id, &Assurance::of(session), now).await?;
    Ok(pair_signed(deps, access, session, refresh_token, now))
}

/// The pair of an access token signed already.
pub(crate) fn pair_signed(
    deps: &Deps,
    access_token: String,
    session: &SessionRecord,
    refresh_token: String,
    now: DateTime<Utc>,
) -> TokenPair {
    TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: u64::try_from(deps.tokens.access_ttl.num_seconds()).unwrap_or(0),
        refresh_token,
        refresh_expires_in: secs_until(now, session.idle_expires_at.min(session.expires_at)),
        session_id: session.id,
    }
}

/// Opens a session for an authenticated user: session row, first refresh token and
/// `user.logged_in` in one transaction. `rehash` replaces the stored password hash in the same
/// transaction when the parameters changed; `clear_failures` names a throttle key whose failed
/// logins it clears.
pub(super) async fn open_session(
    deps: &Deps,
    user: &UserRecord,
    meta: &RequestMeta,
    rehash: Option<String>,
    clear_failures: Option<&str>,
    auth: Assurance,
) -> Result<TokenPair, HandlerError> {
    let now = (deps.clock)();
    let session = SessionRecord {
        id: SessionId::new(),
        user_id: user.id,
        created_at: now,
        last_used_at: now,
        idle_expires_at: (now + deps.tokens.refresh_idle).min(now + deps.tokens.refresh_absolute),
        expires_at: now + deps.tokens.refresh_absolute,
        revoked_at: None,
        user_agent: meta.user_agent.clone(),
        ip: meta.client_ip.map(|ip| ip.to_string()),
        amr: auth.amr,
        acr: auth.acr,
    };
    let refresh = random_token();
    let roles = deps.store.users().roles_of(user.id).await?;
    // Signed before anything is written: a key service that does not answer leaves no
    // session behind its 503.
    let tokens = pair(deps, user, &roles, &session, refresh.clone(), now).await?;
    let tx = deps.store.begin().await?;
    if let Some(hash) = rehash {
        tx.users().set_password_hash(user.id, &hash, now).await?;
    }
    if let Some(key) = clear_failures {
        tx.login_failures().clear(key).await?;
    }
    tx.sessions().insert(&session).await?;
    tx.sessions()
        .insert_refresh_token(session.id, &sha256_hex(&refresh), now)
        .await?;
    let ev = DomainEvent::UserLoggedIn {
        user_id: user.id,
        session_id: session.id,
        ip: session.ip.clone(),
        user_agent: session.user_agent.clone(),
        amr: session.amr.clone(),
    };
    deps.outbox.enqueue(&tx, meta, Outgoing::Event(ev)).await?;
    // Logging in during a self-deletion's grace period cancels the deletion.
    if tx.profiles().cancel_deletion(user.id, now).await? {
        let details = serde_json::json!({ "session_id": session.id });
        deps.outbox
            .audit(&tx, meta, "user.deletion_cancelled", Some(user.id), details)
            .await?;
        deps.index.sync(&tx, user.id).await?;
    }
    tx.commit().await?;
    deps.wake_relay();
    Ok(tokens)
}
