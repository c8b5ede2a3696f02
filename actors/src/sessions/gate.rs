//! What a node remembers between bearer requests, so that a repeat needs neither a signature
//! check nor a database read: tokens it verified, and sessions it saw live or ended.
//!
//! - A verified token is remembered (by its SHA-256, never the token itself) with its claims;
//!   a hit re-checks only the times, which are all that can change for the same bytes.
//! - A live session is believed for at most `live_for` (the fallback bound when a revocation
//!   broadcast is lost), and never past its own idle or absolute expiry.
//! - An ended session is final (nothing revives a revoked or expired session), and an "ended"
//!   mark outranks a "live" one, so a read that raced a revocation cannot resurrect it.
//!
//! Revocations reach the gate three ways: the revoking handler marks its sessions after its
//! commit (so that node refuses at once), and every node hears `session.revoked` from the bus
//! (in-process in embedded mode, `keyward.broadcast` in distributed mode).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyward_messages::access_token::{AccessClaims, ClientClaims};
use keyward_messages::{SessionId, UserId};
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

/// Tokens remembered at once; beyond it the least useful are dropped (and re-verified).
const TOKENS: usize = 16_384;
/// Sessions remembered live, and ended, at once.
const SESSIONS: usize = 65_536;

#[derive(Clone, Copy)]
struct Live {
    user_id: UserId,
    /// The session's own end: the sooner of its idle and absolute expiry.
    ends_at: DateTime<Utc>,
    /// When this belief lapses and the database is asked again.
    recheck_at: Instant,
}

/// What the gate knows of a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Ended,
    Unknown,
}

pub struct SessionGate {
    tokens: Cache<[u8; 32], Arc<AccessClaims>>,
    /// Service clients' tokens verified before (whether the client still exists is the
    /// access context's decision cache's to say).
    client_tokens: Cache<[u8; 32], Arc<ClientClaims>>,
    live: Cache<SessionId, Live>,
    ended: Cache<SessionId, ()>,
    live_for: Duration,
}

/// The key a token is remembered under.
pub fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl SessionGate {
    /// `live_for`: how long a session read as live is believed without asking again.
    pub fn new(live_for: Duration) -> Self {
        Self {
            tokens: Cache::new(TOKENS),
            client_tokens: Cache::new(1024),
            live: Cache::new(SESSIONS),
            ended: Cache::new(SESSIONS),
            live_for,
        }
    }

    /// Claims of a token verified before, if remembered.
    pub fn verified(&self, key: &[u8; 32]) -> Option<Arc<AccessClaims>> {
        self.tokens.get(key)
    }

    pub fn remember_verified(&self, key: [u8; 32], claims: Arc<AccessClaims>) {
        self.tokens.insert(key, claims);
    }

    /// A client's token verified before, if remembered.
    pub fn verified_client(&self, key: &[u8; 32]) -> Option<Arc<ClientClaims>> {
        self.client_tokens.get(key)
    }

    pub fn remember_verified_client(&self, key: [u8; 32], claims: Arc<ClientClaims>) {
        self.client_tokens.insert(key, claims);
    }

    /// Whether `session` of `user` is live at `now`, as far as the gate knows.
    pub fn liveness(&self, session: SessionId, user: UserId, now: DateTime<Utc>) -> Liveness {
        if self.ended.get(&session).is_some() {
            return Liveness::Ended;
        }
        match self.live.get(&session) {
            Some(l) if l.user_id != user => Liveness::Ended,
            // NOTE: not marked ended: a refresh on another node may have moved the idle expiry
            // (no message says so), so the database decides.
            Some(l) if now >= l.ends_at => {
                self.live.remove(&session);
                Liveness::Unknown
            }
            Some(l) if Instant::now() < l.recheck_at => Liveness::Live,
            _ => Liveness::Unknown,
        }
    }

    /// The database says `session` of `user` is live until `ends_at`.
    pub fn remember_live(&self, session: SessionId, user: UserId, ends_at: DateTime<Utc>) {
        if self.ended.get(&session).is_some() {
            return;
        }
        let recheck_at = Instant::now() + self.live_for;
        self.live.insert(
            session,
            Live {
                user_id: user,
                ends_at,
                recheck_at,
            },
        );
    }

    /// `session` has ended (revoked, or read as no longer live): refuse it from now on.
    pub fn ended(&self, session: SessionId) {
        self.ended.insert(session, ());
        self.live.remove(&session);
    }

    /// Forgets every live belief, for when revocations may have been missed (the broadcast
    /// link was down). Ended marks stay: they are final.
    pub fn forget_live(&self) {
        self.live.clear();
    }
}

impl crate::caches::NodeCache for SessionGate {
    fn apply(&self, env: &keyward_messages::events::Envelope) {
        use keyward_messages::events::{DomainEvent, Outgoing};
        if let Ok(Outgoing::Event(DomainEvent::SessionRevoked { session_id, .. })) = env.decode() {
            self.ended(session_id);
        }
    }

    fn forget_beliefs(&self) {
        self.forget_live();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn ids() -> (SessionId, UserId) {
        (SessionId(Uuid::new_v4()), UserId(Uuid::new_v4()))
    }

    #[test]
    fn an_ended_mark_outranks_a_late_live_reading() {
        let gate = SessionGate::new(Duration::from_secs(60));
        let (s, u) = ids();
        let now = Utc::now();
        assert_eq!(gate.liveness(s, u, now), Liveness::Unknown);
        gate.remember_live(s, u, now + chrono::Duration::hours(1));
        assert_eq!(gate.liveness(s, u, now), Liveness::Live);
        gate.ended(s);
        // A read that started before the revocation committed comes back "live".
        gate.remember_live(s, u, now + chrono::Duration::hours(1));
        assert_eq!(gate.liveness(s, u, now), Liveness::Ended);
    }

    #[test]
    fn a_live_belief_lapses_never_outlives_the_session_and_names_no_other_user() {
        let (s, u) = ids();
        let now = Utc::now();
        let lapsing = SessionGate::new(Duration::ZERO);
        lapsing.remember_live(s, u, now + chrono::Duration::hours(1));
        assert_eq!(lapsing.liveness(s, u, now), Liveness::Unknown);

        let gate = SessionGate::new(Duration::from_secs(60));
        gate.remember_live(s, u, now + chrono::Duration::seconds(5));
        assert_eq!(
            gate.liveness(s, UserId(Uuid::new_v4()), now),
            Liveness::Ended
        );
        assert_eq!(gate.liveness(s, u, now), Liveness::Live);
        // Past the expiry it read, the gate asks the database again: a refresh elsewhere may
        // have extended the session.
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(gate.liveness(s, u, later), Liveness::Unknown);
        assert_eq!(gate.liveness(s, u, now), Liveness::Unknown);
    }

    #[test]
    fn forgetting_live_beliefs_keeps_ended_marks() {
        let gate = SessionGate::new(Duration::from_secs(60));
        let (a, u) = ids();
        let (b, _) = ids();
        let now = Utc::now();
        gate.remember_live(a, u, now + chrono::Duration::hours(1));
        gate.ended(b);
        gate.forget_live();
        assert_eq!(gate.liveness(a, u, now), Liveness::Unknown);
        assert_eq!(gate.liveness(b, u, now), Liveness::Ended);
    }
}
