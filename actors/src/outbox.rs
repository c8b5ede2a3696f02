//! The one place where a change writes what it causes, inside its own transaction: outbox
//! messages (events and email jobs, published by the relay only once the transaction commits)
//! and audit-log lines. Every context writes through here.
//!
//! Refuses: publishing (the relay's job) and deciding what a change causes (the context's).

use actix::Recipient;
use keyward_messages::events::{DomainEvent, Envelope, Outgoing, RevokeReason};
use keyward_messages::{RequestMeta, SessionId, UserId};
use keyward_storage::{AuditRecord, StorageError, Tx};
use uuid::Uuid;

use crate::bus::Wake;
use crate::Clock;

/// A context's writer: its clock, and the relay to wake after a commit.
#[derive(Clone)]
pub struct OutboxWriter {
    clock: Clock,
    relay: Recipient<Wake>,
}

impl OutboxWriter {
    pub fn new(clock: Clock, relay: Recipient<Wake>) -> Self {
        Self { clock, relay }
    }

    /// Writes `msg` to the outbox inside `tx` (see [`enqueue_at`]).
    pub async fn enqueue(
        &self,
        tx: &Tx,
        meta: &RequestMeta,
        msg: Outgoing,
    ) -> Result<(), StorageError> {
        enqueue_at(tx, (self.clock)(), meta, msg).await
    }

    /// Appends an audit-log line inside `tx` (see [`audit_at`]).
    pub async fn audit(
        &self,
        tx: &Tx,
        meta: &RequestMeta,
        kind: &str,
        user_id: Option<UserId>,
        details: serde_json::Value,
    ) -> Result<(), StorageError> {
        audit_at(tx, (self.clock)(), meta, kind, user_id, details).await
    }

    /// Writes `msg` inside `tx` as a row that is never sent (`Outbox::enqueue_decoy`): the
    /// same write as [`Self::enqueue`], for a path whose timing must not differ from one that
    /// enqueues `msg`.
    pub async fn enqueue_decoy(
        &self,
        tx: &Tx,
        meta: &RequestMeta,
        msg: Outgoing,
    ) -> Result<(), StorageError> {
        let env = envelope((self.clock)(), meta, &msg);
        tx.outbox().enqueue_decoy(&env).await
    }

    /// Tells the relay that a transaction with outbox rows committed.
    pub fn wake(&self) {
        self.relay.do_send(Wake);
    }
}

/// Writes `msg` to the outbox inside `tx`, correlated with the request that caused it: it is
/// published only if `tx` commits. A security event also gets its audit-log line (time, kind,
/// user, client, request id, details) in the same transaction.
pub async fn enqueue_at(
    tx: &Tx,
    now: chrono::DateTime<chrono::Utc>,
    meta: &RequestMeta,
    msg: Outgoing,
) -> Result<(), StorageError> {
    if let Outgoing::Event(ev) = &msg {
        if is_security_event(ev) {
            audit_at(tx, now, meta, ev.event_type(), ev.user_id(), ev.data()).await?;
        }
    }
    tx.outbox().enqueue(&envelope(now, meta, &msg)).await
}

/// `msg`'s envelope, correlated with the request that caused it.
fn envelope(now: chrono::DateTime<chrono::Utc>, meta: &RequestMeta, msg: &Outgoing) -> Envelope {
    let request_id = (!meta.request_id.is_empty()).then(|| meta.request_id.clone());
    let correlation = Some(meta.correlation_id.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| request_id.clone());
    Envelope::new(Uuid::now_v7(), now, correlation, msg).with_request_id(request_id)
}

/// Appends an audit-log line (time, kind, user, client, request id, details) inside `tx`.
pub async fn audit_at(
    tx: &Tx,
    now: chrono::DateTime<chrono::Utc>,
    meta: &RequestMeta,
    kind: &str,
    user_id: Option<UserId>,
    details: serde_json::Value,
) -> Result<(), StorageError> {
    let line = AuditRecord {
        at: now,
        kind: kind.to_owned(),
        user_id,
        actor_id: meta.actor,
        actor_client_id: meta.actor_client.clone(),
        ip: meta.client_ip.map(|i| i.to_string()),
        user_agent: meta.user_agent.clone(),
        request_id: (!meta.request_id.is_empty()).then(|| meta.request_id.clone()),
        details: details.to_string(),
    };
    tx.audit().append(&line).await
}

/// `session.revoked` for one session, naming the client that caused it.
pub fn session_revoked(
    meta: &RequestMeta,
    user_id: UserId,
    session_id: SessionId,
    reason: RevokeReason,
) -> Outgoing {
    Outgoing::Event(DomainEvent::SessionRevoked {
        user_id,
        session_id,
        reason,
        ip: meta.client_ip.map(|i| i.to_string()),
        user_agent: meta.user_agent.clone(),
    })
}

/// Events that belong in the audit log.
fn is_security_event(ev: &DomainEvent) -> bool {
    matches!(
        ev,
        DomainEvent::UserLoggedIn { .. }
            | DomainEvent::UserLoginFailed { .. }
            | DomainEvent::UserThrottled { .. }
            | DomainEvent::UserPasswordChanged { .. }
            | DomainEvent::UserBlocked { .. }
            | DomainEvent::UserUnblocked { .. }
            | DomainEvent::SessionRevoked { .. }
            | DomainEvent::SessionReuseDetected { .. }
            | DomainEvent::ProfileUpdated { .. }
            | DomainEvent::UserDeleted { .. }
            | DomainEvent::RoleGranted { .. }
            | DomainEvent::RoleRevoked { .. }
            | DomainEvent::RoleUpdated { .. }
            | DomainEvent::ClientUpdated { .. }
            | DomainEvent::MfaEnrolled { .. }
            | DomainEvent::MfaRemoved { .. }
            | DomainEvent::KeysRotated { .. }
    )
}
