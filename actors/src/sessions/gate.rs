//! What a node remembers between bearer requests, so that a repeat needs neither a signature
//! check nor a database read: tokens it verified, and sessions it saw live or ended.
//!
//! - A verified token is remembered (by its SHA-256, never the token itself) with its claims;
//!   a hit re-checks only the times, which are all that can change for the same bytes.
//! - A live session is believed until its own idle or absolute expiry while the outbox feed
//!   is current (it caught up within `live_for`): every revocation committed before its last
//!   poll has been applied, so the belief costs no database read however many sessions there
//!   are. While the feed lags (the database is slow or down), a belief lasts `live_for` from
//!   the read that made it, as before the feed existed.
//! - An ended session is final (nothing revives a revoked or expired session), and an "ended"
//!   mark outranks a "live" one, so a read that raced a revocation cannot resurrect it.
//!
//! Revocations reach the gate three ways: the revoking handler marks its sessions after its
//! commit (so that node refuses at once), every node hears `session.revoked` from the bus
//! (in-process in embedded mode, `keyward.broadcast` in distributed mode), and every node reads
//! it from the outbox feed (`caches::follow_outbox`) within a poll interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyward_messages::access_token::{AccessClaims, ClientClaims, Timed};
use keyward_messages::{SessionId, UserId};
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use sha2::{Digest, Sha256};

/// Users erased, whose sessions are refused whatever else the gate believes.
const ERASED: usize = 16_384;

/// What a user's verified access token says that a request needs: its claims without the
/// strings nothing reads again, so a node can remember hundreds of thousands.
#[derive(Clone, Debug)]
pub struct UserToken {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub roles: Arc<[String]>,
    pub aal2: bool,
    exp: i64,
    nbf: i64,
}

impl UserToken {
    /// `None` when `sub` or `sid` is not an id.
    pub fn of(c: &AccessClaims) -> Option<Self> {
        Some(Self {
            user_id: UserId::parse("sub", &c.sub).ok()?,
            session_id: SessionId::parse("sid", &c.sid).ok()?,
            roles: c.roles.as_slice().into(),
            aal2: c.acr == keyward_messages::access_token::AAL2,
            exp: c.exp,
            nbf: c.nbf,
        })
    }
}

impl Timed for UserToken {
    fn exp(&self) -> i64 {
        self.exp
    }
    fn nbf(&self) -> i64 {
        self.nbf
    }
}

#[derive(Clone, Copy)]
struct Live {
    user_id: UserId,
    /// The session's own end: the sooner of its idle and absolute expiry.
    ends_at: DateTime<Utc>,
    /// Without a current feed, when this belief lapses and the database is asked again.
    recheck_at: Instant,
}

/// What the gate believes of a session: live or ended, in one entry so that a bearer request
/// makes one lookup.
#[derive(Clone, Copy)]
enum Belief {
    Live(Live),
    Ended,
}

/// What the gate knows of a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Ended,
    Unknown,
}

pub struct SessionGate {
    tokens: Cache<[u8; 32], Arc<UserToken>>,
    /// Service clients' tokens verified before (whether the client still exists is the
    /// access context's decision cache's to say).
    client_tokens: Cache<[u8; 32], Arc<ClientClaims>>,
    sessions: Cache<SessionId, Belief>,
    erased: Cache<UserId, ()>,
    /// Whether any user was erased since the start: until one is, a request skips `erased`.
    any_erased: AtomicBool,
    live_for: Duration,
    feed: crate::caches::FeedMark,
}

/// The key a token is remembered under.
pub fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl SessionGate {
    /// `live_for`: how long a session read as live is believed without asking again.
    /// `tokens` and `sessions`: capacities (`KEYWARD_CACHE__TOKENS`, `__SESSIONS`); beyond
    /// them the least useful entries are dropped, and a dropped token is verified again, a
    /// dropped session read again. A token costs about 250 B, a session, live or ended, about
    /// 90 B (measured by the bench's `cache_cost`).
    pub fn new(live_for: Duration, tokens: usize, sessions: usize) -> Self {
        Self {
            tokens: Cache::new(tokens),
            client_tokens: Cache::new(1024),
            sessions: Cache::new(sessions),
            erased: Cache::new(ERASED),
            any_erased: AtomicBool::new(false),
            live_for,
            feed: crate::caches::FeedMark::default(),
        }
    }

    /// A token verified before, if remembered.
    pub fn verified(&self, key: &[u8; 32]) -> Option<Arc<UserToken>> {
        self.tokens.get(key)
    }

    pub fn remember_verified(&self, key: [u8; 32], token: Arc<UserToken>) {
        self.tokens.insert(key, token);
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
        if self.any_erased.load(Ordering::Acquire) && self.erased.get(&user).is_some() {
            return Liveness::Ended;
        }
        match self.sessions.get(&session) {
            None => Liveness::Unknown,
            Some(Belief::Ended) => Liveness::Ended,
            Some(Belief::Live(l)) if l.user_id != user => Liveness::Ended,
            // NOTE: not marked ended: a refresh on another node may have moved the idle expiry
            // (no message says so), so the database decides.
            Some(Belief::Live(l)) if now >= l.ends_at => {
                self.sessions
                    .remove_if(&session, |b| matches!(b, Belief::Live(_)));
                Liveness::Unknown
            }
            Some(Belief::Live(l))
                if self.feed.current_within(self.live_for) || Instant::now() < l.recheck_at =>
            {
                Liveness::Live
            }
            Some(Belief::Live(_)) => Liveness::Unknown,
        }
    }

    /// The database says `session` of `user` is live until `ends_at`. An ended mark stays:
    /// the read may have raced the revocation.
    pub fn remember_live(&self, session: SessionId, user: UserId, ends_at: DateTime<Utc>) {
        let live = Belief::Live(Live {
            user_id: user,
            ends_at,
            recheck_at: Instant::now() + self.live_for,
        });
        // NOTE: read and write under the shard's lock, so an `ended` in between cannot be
        // overwritten.
        let found = self.sessions.entry(&session, None, |_, b| {
            if matches!(b, Belief::Live(_)) {
                *b = live;
            }
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = found {
            let _ = slot.insert(live);
        }
    }

    /// `session` has ended (revoked, or read as no longer live): refuse it from now on.
    pub fn ended(&self, session: SessionId) {
        let found = self.sessions.entry(&session, None, |_, b| {
            *b = Belief::Ended;
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = found {
            if slot.insert(Belief::Ended).is_err() {
                self.sessions.insert(session, Belief::Ended);
            }
        }
    }

    /// Forgets every live belief, for when revocations may have been missed (the broadcast
    /// link was down). Ended marks stay: they are final.
    pub fn forget_live(&self) {
        self.sessions.retain(|_, b| matches!(b, Belief::Ended));
    }
}

impl crate::caches::NodeCache for SessionGate {
    fn apply(&self, env: &keyward_messages::events::Envelope) {
        use keyward_messages::events::{DomainEvent, Outgoing};
        match env.decode() {
            Ok(Outgoing::Event(DomainEvent::SessionRevoked { session_id, .. })) => {
                self.ended(session_id);
            }
            // Its sessions ended with their own messages when the deletion was asked for;
            // this covers a session opened in between that the erasure removed.
            Ok(Outgoing::Event(DomainEvent::UserDeleted { user_id })) => {
                self.any_erased.store(true, Ordering::Release);
                self.erased.insert(user_id, ());
            }
            _ => {}
        }
    }

    fn forget_beliefs(&self) {
        self.forget_live();
    }

    fn caught_up(&self, poll_started: Instant) {
        self.feed.caught_up(poll_started);
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
        let gate = SessionGate::new(Duration::from_secs(60), 1024, 1024);
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
    fn a_revocation_racing_live_readings_on_other_threads_always_wins() {
        let gate = Arc::new(SessionGate::new(Duration::from_secs(60), 1024, 1024));
        let now = Utc::now();
        let sessions: Vec<_> = (0..500).map(|_| ids()).collect();
        let sessions = Arc::new(sessions);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (gate, sessions) = (gate.clone(), sessions.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        for &(s, u) in sessions.iter() {
                            gate.remember_live(s, u, now + chrono::Duration::hours(1));
                        }
                    }
                })
            })
            .collect();
        for &(s, _) in sessions.iter() {
            gate.ended(s);
        }
        for r in readers {
            assert!(r.join().is_ok());
        }
        for &(s, u) in sessions.iter() {
            assert_eq!(gate.liveness(s, u, now), Liveness::Ended);
        }
    }

    #[test]
    fn a_live_belief_lapses_never_outlives_the_session_and_names_no_other_user() {
        let (s, u) = ids();
        let now = Utc::now();
        let lapsing = SessionGate::new(Duration::ZERO, 1024, 1024);
        lapsing.remember_live(s, u, now + chrono::Duration::hours(1));
        assert_eq!(lapsing.liveness(s, u, now), Liveness::Unknown);

        let gate = SessionGate::new(Duration::from_secs(60), 1024, 1024);
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
    fn a_current_feed_keeps_a_live_belief_until_the_session_ends_and_a_lagging_one_does_not() {
        use crate::caches::NodeCache;
        let live_for = Duration::from_millis(40);
        let gate = SessionGate::new(live_for, 1024, 1024);
        let (s, u) = ids();
        let now = Utc::now();
        gate.remember_live(s, u, now + chrono::Duration::hours(1));
        std::thread::sleep(live_for * 2);
        // The read is older than `live_for` and the feed never caught up: ask again.
        assert_eq!(gate.liveness(s, u, now), Liveness::Unknown);
        gate.caught_up(Instant::now());
        assert_eq!(gate.liveness(s, u, now), Liveness::Live);
        // The feed stopped catching up (the database is slow or gone): the belief lapses.
        std::thread::sleep(live_for * 2);
        assert_eq!(gate.liveness(s, u, now), Liveness::Unknown);
        // A poll that started before an older one finished moves nothing back.
        gate.caught_up(Instant::now());
        gate.caught_up(Instant::now() - live_for * 4);
        assert_eq!(gate.liveness(s, u, now), Liveness::Live);
        assert_eq!(
            gate.liveness(s, u, now + chrono::Duration::hours(1)),
            Liveness::Unknown
        );
    }

    #[test]
    fn an_erased_users_sessions_are_refused() {
        use crate::caches::NodeCache;
        use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
        let gate = SessionGate::new(Duration::from_secs(60), 1024, 1024);
        let (s, u) = ids();
        let now = Utc::now();
        gate.remember_live(s, u, now + chrono::Duration::hours(1));
        let erased = Outgoing::Event(DomainEvent::UserDeleted { user_id: u });
        gate.apply(&Envelope::new(Uuid::now_v7(), now, None, &erased));
        assert_eq!(gate.liveness(s, u, now), Liveness::Ended);
    }

    #[test]
    fn forgetting_live_beliefs_keeps_ended_marks() {
        let gate = SessionGate::new(Duration::from_secs(60), 1024, 1024);
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
