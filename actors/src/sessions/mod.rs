//! The sessions context: issues access/refresh token pairs, rotates refresh tokens, lists and
//! revokes sessions, authenticates bearer tokens, publishes the JWKS.
//!
//! Owns: session rows and refresh-token families, access-token claims, the session gate (what
//! this node remembers of tokens and sessions). Refuses: passwords (accounts checks them before
//! asking for a session through [`SessionsHandle`]) and trusting an access token whose session
//! has ended.

pub mod gate;
mod handlers;
mod issue;
pub mod policy;
pub mod rotation;

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Duration, Utc};
use keyward_messages::commands::TokenPair;
use keyward_messages::events::RevokeReason;
use keyward_messages::{RequestMeta, SessionId, UserId};
use keyward_storage::{StorageError, Store, Tx, UserRecord};

use crate::edge::Restart;
use crate::error::HandlerError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::outbox::{enqueue_at, session_revoked, OutboxWriter};
use crate::Clock;

pub use gate::SessionGate;
pub use issue::Assurance;
pub use policy::AccessClaims;

/// Token lifetimes and identifiers, resolved from settings.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_idle: Duration,
    pub refresh_absolute: Duration,
    pub refresh_grace: Duration,
}

/// What the sessions context works with. Shared by every sessions actor, immutable after start.
pub struct SessionsDeps {
    /// A login that cancels a pending deletion lists the profile again.
    pub index: crate::profiles::ProfileIndex,
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub clock: Clock,
    pub tokens: TokenPolicy,
    /// Key of the refresh-token successor derivation.
    pub refresh_secret: [u8; 32],
    pub outbox: OutboxWriter,
    pub gate: Arc<SessionGate>,
    /// Group commit of refresh-token rotations.
    pub rotator: rotation::Rotator,
    /// Whether a service client still exists, for its tokens.
    pub decisions: Arc<crate::access::Decisions>,
    pub metrics: Metrics,
}

impl SessionsDeps {
    /// After the commit that ended them: this node refuses these sessions from now on (other
    /// nodes hear of it through `session.revoked`).
    fn sessions_ended(&self, ids: &[SessionId]) {
        for &id in ids {
            self.gate.ended(id);
        }
    }

    fn wake_relay(&self) {
        self.outbox.wake();
    }
}

pub struct Sessions {
    pub(crate) deps: Arc<SessionsDeps>,
}

impl Sessions {
    pub fn new(deps: Arc<SessionsDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Sessions {
    type Context = Context<Self>;
}

impl Supervised for Sessions {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("sessions actor restarting");
    }
}

impl Handler<Restart> for Sessions {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The narrow handle other contexts get at start: open a session for a user they have
/// authenticated, end a user's sessions inside their own transaction, and tell this node's gate
/// about sessions so ended once that transaction committed.
#[derive(Clone)]
pub struct SessionsHandle(Arc<SessionsDeps>);

impl SessionsHandle {
    pub fn new(deps: Arc<SessionsDeps>) -> Self {
        Self(deps)
    }

    /// A user's or a service client's bearer token, checked as `AuthenticateCaller` checks it.
    pub async fn authenticate_caller(
        &self,
        token: secrecy::SecretString,
    ) -> Result<keyward_messages::access::Caller, HandlerError> {
        use secrecy::ExposeSecret;
        handlers::authenticate_caller(self.0.clone(), token.expose_secret()).await
    }

    /// A user's bearer token, checked as `Authenticate` checks it.
    pub async fn authenticate(
        &self,
        token: secrecy::SecretString,
    ) -> Result<keyward_messages::commands::Principal, HandlerError> {
        use secrecy::ExposeSecret;
        handlers::authenticate(self.0.clone(), token.expose_secret()).await
    }

    /// Session row, first refresh token and `user.logged_in` in one transaction (see
    /// `issue::open_session`).
    pub async fn open(
        &self,
        user: &UserRecord,
        meta: &RequestMeta,
        rehash: Option<String>,
        clear_failures: Option<&str>,
        auth: Assurance,
    ) -> Result<TokenPair, HandlerError> {
        issue::open_session(&self.0, user, meta, rehash, clear_failures, auth).await
    }

    /// An access token for a live session of `user` with the assurance `auth` (step-up): the
    /// session's own level is unchanged. None when the session is not live.
    pub async fn step_up_token(
        &self,
        user: &UserRecord,
        session: SessionId,
        auth: impl FnOnce(&[String]) -> Assurance,
    ) -> Result<Option<(String, u64)>, HandlerError> {
        let deps = &self.0;
        let now = (deps.clock)();
        let Some(s) = deps.store.sessions().by_id(session).await? else {
            return Ok(None);
        };
        if s.user_id != user.id || !s.is_live(now) {
            return Ok(None);
        }
        let roles = deps.store.users().roles_of(user.id).await?;
        let token = issue::access_token(deps, user, &roles, session, &auth(&s.amr), now).await?;
        let ttl = u64::try_from(deps.tokens.access_ttl.num_seconds()).unwrap_or(0);
        Ok(Some((token, ttl)))
    }

    pub fn ender(&self) -> SessionEnder {
        SessionEnder
    }

    /// After the commit that ended them (see [`SessionsDeps`]).
    pub fn ended(&self, ids: &[SessionId]) {
        self.0.sessions_ended(ids);
    }
}

/// Ends every session of a user inside the caller's transaction: the rows and one
/// `session.revoked` each. Needs nothing of a running node, so the CLI uses it too.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionEnder;

impl SessionEnder {
    /// Ends `user`'s live sessions but `keep`; returns the ones it ended.
    pub async fn end_all(
        &self,
        tx: &Tx,
        now: DateTime<Utc>,
        meta: &RequestMeta,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StorageError> {
        let ended = tx
            .sessions()
            .revoke_all_of(user, keep, now, handlers::reason_str(reason))
            .await?;
        for &sid in &ended {
            enqueue_at(tx, now, meta, session_revoked(meta, user, sid, reason)).await?;
        }
        Ok(ended)
    }
}
