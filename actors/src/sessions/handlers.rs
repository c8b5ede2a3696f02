//! One handler per message of the sessions context.

use std::sync::Arc;

use actix::prelude::*;
use keyward_messages::access::{AuthenticateCaller, Caller, ClientPrincipal};
use keyward_messages::access_token;
use keyward_messages::commands::*;
use keyward_messages::events::{DomainEvent, Outgoing, RevokeReason};
use keyward_messages::{codes, CommandError, RequestMeta, SessionId, UserId};
use secrecy::ExposeSecret;

use super::gate::{token_key, Liveness, UserToken};
use super::issue::{access_token, pair, pair_signed, Assurance};
use super::rotation::Refreshed;
use super::Sessions;
use super::SessionsDeps as Deps;
use crate::error::HandlerError;
use crate::tokens::{sha256_hex, successor_token};

fn bad_token(why: &str) -> CommandError {
    tracing::debug!(reason = why, "access token refused");
    CommandError::unauthenticated(
        codes::UNAUTHENTICATED,
        "the access token is invalid, expired or revoked",
    )
}

fn bad_refresh() -> CommandError {
    CommandError::unauthenticated(
        codes::INVALID_REFRESH_TOKEN,
        "the refresh token is invalid, expired, used or revoked; log in again",
    )
}

/// A token's claims: remembered ones (only their times checked again), or verified now and
/// remembered.
fn claims<C: access_token::Timed>(
    deps: &Deps,
    token: &str,
    key: [u8; 32],
    now: i64,
    recalled: Option<Arc<C>>,
    remember: impl Fn([u8; 32], Arc<C>),
    verify: impl FnOnce(
        &str,
        &dyn Fn(&str) -> Option<jsonwebtoken::DecodingKey>,
        &str,
        &str,
        i64,
    ) -> Result<C, access_token::Refusal>,
) -> Result<Arc<C>, CommandError> {
    if let Some(c) = recalled {
        access_token::check_times(c.as_ref(), now).map_err(|why| bad_token(&format!("{why:?}")))?;
        return Ok(c);
    }
    let c = verify(
        token,
        &|kid| deps.keys.decoding_key(kid),
        &deps.tokens.issuer,
        &deps.tokens.audience,
        now,
    )
    .map_err(|why| bad_token(&format!("{why:?}")))?;
    let c = Arc::new(c);
    remember(key, c.clone());
    Ok(c)
}

/// Verifies an access token (the pure checks of `access_token::verify`) and that its session
/// is live. The gate remembers both answers, so a repeat costs neither a signature check nor
/// a database read.
pub(super) async fn authenticate(deps: Arc<Deps>, token: &str) -> Result<Principal, HandlerError> {
    let key = token_key(token);
    let recalled = deps.gate.verified(&key);
    authenticate_user(deps, token, key, recalled).await
}

async fn authenticate_user(
    deps: Arc<Deps>,
    token: &str,
    key: [u8; 32],
    recalled: Option<Arc<UserToken>>,
) -> Result<Principal, HandlerError> {
    let now = (deps.clock)();
    let c = claims(
        &deps,
        token,
        key,
        now.timestamp(),
        recalled,
        |k, c| deps.gate.remember_verified(k, c),
        |t, k, i, a, n| {
            let c = access_token::verify(t, k, i, a, n)?;
            UserToken::of(&c).ok_or(access_token::Refusal::Malformed)
        },
    )?;
    let (user_id, session_id) = (c.user_id, c.session_id);
    let principal = || Principal {
        user_id,
        session_id,
        roles: c.roles.clone(),
        aal2: c.aal2,
    };
    match deps.gate.liveness(session_id, user_id, now) {
        Liveness::Live => return Ok(principal()),
        Liveness::Ended => return Err(HandlerError::from(bad_token("session ended"))),
        Liveness::Unknown => {}
    }
    let session = deps.store.reads().sessions().by_id(session_id).await?;
    match session {
        Some(s) if s.user_id == user_id && s.is_live(now) => {
            let ends_at = s.idle_expires_at.min(s.expires_at);
            deps.gate.remember_live(session_id, user_id, ends_at);
            Ok(principal())
        }
        Some(s) if s.user_id == user_id => {
            deps.gate.ended(session_id);
            Err(HandlerError::from(bad_token("session ended")))
        }
        _ => Err(HandlerError::from(bad_token("no such session"))),
    }
}

/// A user's token (as [`authenticate`]) or a service client's: verified the same way, and
/// refused once the client is deleted; its scopes are those the client still holds.
pub(super) async fn authenticate_caller(
    deps: Arc<Deps>,
    token: &str,
) -> Result<Caller, HandlerError> {
    let key = token_key(token);
    // NOTE: a token remembered as either kind needs no look inside it; the look decodes
    // and parses its claims, which costs more than the rest of a remembered check. Users'
    // tokens are the many, so their cache is asked first.
    let user = deps.gate.verified(&key);
    let client = match &user {
        Some(_) => None,
        None => deps.gate.verified_client(&key),
    };
    if user.is_some() || (client.is_none() && !access_token::names_client(token)) {
        return Ok(Caller::User(
            authenticate_user(deps, token, key, user).await?,
        ));
    }
    let now = (deps.clock)();
    let c = claims(
        &deps,
        token,
        key,
        now.timestamp(),
        client,
        |k, c| deps.gate.remember_verified_client(k, c),
        |t, k, i, a, n| access_token::verify_client(t, k, i, a, n),
    )?;
    match crate::access::clients::live_scopes(&deps.store, &deps.decisions, &c).await? {
        Some(scopes) => Ok(Caller::Client(ClientPrincipal {
            client_id: c.client_id.clone(),
            scopes,
        })),
        None => Err(HandlerError::from(bad_token("client deleted"))),
    }
}

async fn revoke(
    deps: &Deps,
    meta: &RequestMeta,
    user_id: UserId,
    session_id: SessionId,
    reason: RevokeReason,
) -> Result<bool, HandlerError> {
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    let done = tx
        .sessions()
        .revoke(session_id, now, reason_str(reason))
        .await?;
    if done {
        deps.outbox
            .enqueue(
                &tx,
                meta,
                crate::outbox::session_revoked(meta, user_id, session_id, reason),
            )
            .await?;
    }
    tx.commit().await?;
    if done {
        deps.sessions_ended(&[session_id]);
    }
    deps.wake_relay();
    Ok(done)
}

pub(super) fn reason_str(r: RevokeReason) -> &'static str {
    match r {
        RevokeReason::Logout => "logout",
        RevokeReason::RevokedByUser => "revoked_by_user",
        RevokeReason::PasswordChanged => "password_changed",
        RevokeReason::PasswordReset => "password_reset",
        RevokeReason::ReuseDetected => "reuse_detected",
        RevokeReason::AccountBlocked => "account_blocked",
        RevokeReason::AccountDeleted => "account_deleted",
        RevokeReason::RevokedByAdmin => "revoked_by_admin",
    }
}

/// Rotation. A live token yields a successor derived from it; the same predecessor inside the
/// grace window yields the same successor again; outside it, presenting a rotated token is
/// reuse and ends the session.
async fn refresh(
    deps: Arc<Deps>,
    meta: RequestMeta,
    presented: String,
) -> Result<TokenPair, HandlerError> {
    let now = (deps.clock)();
    let successor = successor_token(&deps.refresh_secret, &presented);
    let mut pending = deps
        .rotator
        .submit(sha256_hex(&presented), sha256_hex(&successor))
        .await?;
    // Signed before the rotation is written (an error here drops the prospect, so the token
    // stays unrotated), while the group before this one commits. No prospect comes when the
    // node rotates first (PostgreSQL, keys signing here): it signs once rotated, below.
    let signed = match pending.prospect().await {
        Some(p) => {
            let auth = Assurance::of(&p.session);
            let token =
                access_token(&deps, &p.user, &p.grants.roles, p.session.id, &auth, now).await?;
            p.consent();
            Some(token)
        }
        None => None,
    };
    let (session, user, rotated_at) = match pending.answer().await? {
        Refreshed::Refused => return Err(HandlerError::from(bad_refresh())),
        Refreshed::Rotated {
            mut session,
            user,
            at,
            grants,
        } => {
            session.idle_expires_at = (at + deps.tokens.refresh_idle).min(session.expires_at);
            // Signed before the rotation (it consented), or rotated first: signed now, by the
            // keys in this process.
            let access = match (signed, grants) {
                (Some(access), _) => access,
                (None, Some(g)) => {
                    let auth = Assurance::of(&session);
                    access_token(&deps, &user, &g.roles, session.id, &auth, now).await?
                }
                (None, None) => return Err(CommandError::Internal.into()),
            };
            return Ok(pair_signed(&deps, access, &session, successor, now));
        }
        Refreshed::Earlier { session, user, at } => (session, user, at),
    };
    if now - rotated_at <= deps.tokens.refresh_grace {
        // Same predecessor, same successor: a second tab refreshing at once stays logged in.
        let current = deps
            .store
            .sessions()
            .refresh_token_by_hash(&sha256_hex(&successor))
            .await?;
        if current.is_some() {
            let session = deps
                .store
                .sessions()
                .by_id(session.id)
                .await?
                .unwrap_or(session);
            let grants = deps.decisions.grants(&deps.store, user.id).await?;
            return Ok(pair(&deps, &user, &grants.roles, &session, successor, now).await?);
        }
    }
    tracing::warn!(session_id = %session.id, user_id = %user.id, "refresh token reuse detected; revoking the session");
    let tx = deps.store.begin().await?;
    if tx
        .sessions()
        .revoke(session.id, now, reason_str(RevokeReason::ReuseDetected))
        .await?
    {
        let detected = DomainEvent::SessionReuseDetected {
            user_id: user.id,
            session_id: session.id,
            ip: meta.client_ip.map(|i| i.to_string()),
            user_agent: meta.user_agent.clone(),
        };
        deps.outbox
            .enqueue(&tx, &meta, Outgoing::Event(detected))
            .await?;
        let revoked =
            crate::outbox::session_revoked(&meta, user.id, session.id, RevokeReason::ReuseDetected);
        deps.outbox.enqueue(&tx, &meta, revoked).await?;
    }
    tx.commit().await?;
    deps.sessions_ended(&[session.id]);
    deps.wake_relay();
    Err(HandlerError::from(bad_refresh()))
}

async fn logout(deps: Arc<Deps>, m: Logout) -> Result<(), HandlerError> {
    let p = m.principal;
    revoke(
        &deps,
        &m.meta,
        p.user_id,
        p.session_id,
        RevokeReason::Logout,
    )
    .await?;
    Ok(())
}

async fn list(deps: Arc<Deps>, m: ListSessions) -> Result<Vec<SessionView>, HandlerError> {
    let p = m.principal;
    let rows = deps
        .store
        .sessions()
        .live_of(p.user_id, (deps.clock)())
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == p.session_id,
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.idle_expires_at.min(s.expires_at),
            user_agent: s.user_agent,
            ip: s.ip.and_then(|i| i.parse().ok()),
        })
        .collect())
}

async fn revoke_one(deps: Arc<Deps>, m: RevokeSession) -> Result<(), HandlerError> {
    let p = m.principal;
    let owned_and_live = deps
        .store
        .sessions()
        .by_id(m.session_id)
        .await?
        .is_some_and(|s| s.user_id == p.user_id && s.is_live((deps.clock)()));
    let not_found = || CommandError::NotFound {
        code: codes::SESSION_NOT_FOUND,
        detail: "no live session with this id belongs to you".into(),
    };
    if !owned_and_live {
        return Err(not_found().into());
    }
    let reason = if m.session_id == p.session_id {
        RevokeReason::Logout
    } else {
        RevokeReason::RevokedByUser
    };
    if revoke(&deps, &m.meta, p.user_id, m.session_id, reason).await? {
        Ok(())
    } else {
        Err(not_found().into())
    }
}

async fn revoke_others(deps: Arc<Deps>, m: RevokeOtherSessions) -> Result<(), HandlerError> {
    let p = m.principal;
    let why = RevokeReason::RevokedByUser;
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    let ended = super::SessionEnder
        .end_all(&tx, now, &m.meta, p.user_id, Some(p.session_id), why)
        .await?;
    tx.commit().await?;
    deps.sessions_ended(&ended);
    deps.wake_relay();
    Ok(())
}

crate::edge::handlers!(Sessions {
    Authenticate => Principal: |deps, m| async move { authenticate(deps, m.token.expose_secret()).await };
    AuthenticateCaller => Caller: |deps, m| async move { authenticate_caller(deps, m.token.expose_secret()).await };
    Refresh => TokenPair: |deps, m| refresh(deps, m.meta, m.refresh_token.expose_secret().to_owned());
    Logout => (): logout;
    ListSessions => Vec<SessionView>: list;
    RevokeSession => (): revoke_one;
    RevokeOtherSessions => (): revoke_others;
});

impl Handler<GetJwks> for Sessions {
    type Result = Result<serde_json::Value, CommandError>;
    fn handle(&mut self, _: GetJwks, _: &mut Context<Self>) -> Self::Result {
        Ok(self.deps.keys.jwks())
    }
}

impl Handler<CheckReady> for Sessions {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, _: CheckReady, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move {
            deps.store.ping().await.map_err(|e| {
                tracing::warn!(error = ?e, "database ping failed");
                CommandError::unavailable("the database does not answer")
            })
        })
    }
}
