//! [`Audit`]: appending to the audit log and reading it back.

use keyward_messages::UserId;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::audit;
use super::AuditRecord;
use crate::Result;

/// The audit log's repository, over the pool (`store.audit()`) or a transaction
/// (`tx.audit()`).
pub struct Audit<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> Audit<'_, C> {
    /// Appends a line; through a transaction, it is kept only if the transaction commits.
    pub async fn append(&self, a: &AuditRecord) -> Result<()> {
        audit::ActiveModel {
            id: Set(Uuid::now_v7()),
            at: Set(a.at),
            kind: Set(a.kind.clone()),
            user_id: Set(a.user_id.map(|u| u.0)),
            actor_id: Set(a.actor_id.map(|u| u.0)),
            actor_client_id: Set(a.actor_client_id.clone()),
            ip: Set(a.ip.clone()),
            user_agent: Set(a.user_agent.clone()),
            request_id: Set(a.request_id.clone()),
            details: Set(a.details.clone()),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// The latest `limit` lines, newest first (lines are ordered by when they were appended).
    pub async fn latest(&self, limit: u64) -> Result<Vec<AuditRecord>> {
        Ok(audit::Entity::find()
            .order_by_desc(audit::Column::Id)
            .limit(limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(record)
            .collect())
    }

    /// One user's lines of the given kinds, newest first, older than the line `before` (a
    /// position from an earlier page), with each line's position.
    pub async fn of_user(
        &self,
        user: UserId,
        kinds: &[&str],
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<(Uuid, AuditRecord)>> {
        let mut q = audit::Entity::find()
            .filter(audit::Column::UserId.eq(user.0))
            .filter(audit::Column::Kind.is_in(kinds.iter().copied()));
        if let Some(b) = before {
            q = q.filter(audit::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(audit::Column::Id)
            .limit(limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(|m| (m.id, record(m)))
            .collect())
    }
}

impl<C: ConnectionTrait> Audit<'_, C> {
    /// Lines matching `f`, newest first, older than the line `before`, with their positions.
    pub async fn query(
        &self,
        f: &AuditFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<(Uuid, AuditRecord)>> {
        let mut q = audit::Entity::find();
        if let Some(u) = f.user_id {
            q = q.filter(audit::Column::UserId.eq(u.0));
        }
        if let Some(a) = f.actor_id {
            q = q.filter(audit::Column::ActorId.eq(a.0));
        }
        if let Some(c) = &f.actor_client_id {
            q = q.filter(audit::Column::ActorClientId.eq(c.as_str()));
        }
        if let Some(k) = &f.kind {
            q = q.filter(audit::Column::Kind.eq(k.as_str()));
        }
        if let Some(t) = f.from {
            q = q.filter(audit::Column::At.gte(t));
        }
        if let Some(t) = f.to {
            q = q.filter(audit::Column::At.lt(t));
        }
        if let Some(b) = before {
            q = q.filter(audit::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(audit::Column::Id)
            .limit(limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(|m| (m.id, record(m)))
            .collect())
    }
}

/// What an audit query asks for; every part optional.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub user_id: Option<UserId>,
    pub actor_id: Option<UserId>,
    pub actor_client_id: Option<String>,
    pub kind: Option<String>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

fn record(m: audit::Model) -> AuditRecord {
    AuditRecord {
        at: m.at,
        kind: m.kind,
        user_id: m.user_id.map(UserId),
        actor_id: m.actor_id.map(UserId),
        actor_client_id: m.actor_client_id,
        ip: m.ip,
        user_agent: m.user_agent,
        request_id: m.request_id,
        details: m.details,
    }
}
