//! [`Outbox`]: outbox rows and inbox records.

use chrono::{DateTime, Utc};
use keyward_messages::events::Envelope;
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{inbox, outbox};
use super::OutboxRecord;
use crate::{Result, StorageError};

/// The `message_type` of [`Outbox::enqueue_decoy`]'s rows.
pub(crate) const DECOY: &str = "decoy";

/// The bus's repository, over the pool (`store.outbox()`) or a transaction (`tx.outbox()`).
pub struct Outbox<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> Outbox<'_, C> {
    /// Queues a message for the relay; through a transaction, it becomes visible only if the
    /// transaction commits.
    pub async fn enqueue(&self, e: &Envelope) -> Result<()> {
        self.insert(e, e.kind.clone(), None).await
    }

    /// Writes `e` as a row that was never to be sent: born published, so no relay picks it up
    /// and retention removes it with the published rows. It costs what [`Self::enqueue`]
    /// costs, for a path that must not be told apart from one that enqueues by its timing.
    pub async fn enqueue_decoy(&self, e: &Envelope) -> Result<()> {
        self.insert(e, DECOY.to_owned(), Some(e.occurred_at)).await
    }

    async fn insert(
        &self,
        e: &Envelope,
        message_type: String,
        published_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let payload = serde_json::to_string(e)
            .map_err(|err| StorageError::corrupt(format!("outbox {} payload", e.id), err))?;
        outbox::ActiveModel {
            id: Set(e.id),
            message_type: Set(message_type),
            payload: Set(payload),
            created_at: Set(e.occurred_at),
            published_at: Set(published_at),
            attempts: Set(0),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Unpublished messages in commit order, at most `limit`.
    pub async fn pending(&self, limit: u64) -> Result<Vec<OutboxRecord>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(outbox_record)
            .collect())
    }

    /// PostgreSQL, inside a transaction: unpublished rows in commit order, locked until the
    /// transaction ends; another node's relay skips them, so each row is published by one
    /// relay.
    pub async fn claim_pending(&self, limit: u64) -> Result<Vec<OutboxRecord>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(self.0)
            .await?
            .into_iter()
            .map(outbox_record)
            .collect())
    }

    /// Messages of the given types written at or after `since` (by their writer's clock),
    /// published or not, oldest first, at most `limit`: the feed each node polls for changes
    /// its caches may have missed on the broadcast.
    pub async fn recent(
        &self,
        since: DateTime<Utc>,
        kinds: &[&str],
        limit: u64,
    ) -> Result<Vec<OutboxRecord>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::CreatedAt.gte(since))
            .filter(outbox::Column::MessageType.is_in(kinds.iter().copied()))
            .order_by_asc(outbox::Column::CreatedAt)
            .limit(limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(outbox_record)
            .collect())
    }

    /// How many messages wait to be published.
    pub async fn backlog(&self) -> Result<u64> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(self.0)
            .await?)
    }

    /// Marks these messages published, in one statement however many.
    pub async fn mark_published(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let among = crate::lists::uuid_among(
            self.0.get_database_backend(),
            outbox::Column::Id,
            r#""outbox"."id""#,
            ids,
        );
        outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(now))
            .filter(among)
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Counts a failed delivery of the message; it stays pending.
    pub async fn record_failed_attempt(&self, id: Uuid) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .filter(outbox::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// What the relay writes after a batch: `published` marked at `now`, and a failed
    /// delivery of `failed` counted.
    pub async fn settle(
        &self,
        published: &[Uuid],
        failed: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.mark_published(published, now).await?;
        match failed {
            Some(id) => self.record_failed_attempt(id).await,
            None => Ok(()),
        }
    }

    /// Whether `consumer` already processed message `id` (consumers dedupe on this).
    pub async fn inbox_contains(&self, consumer: &str, id: Uuid) -> Result<bool> {
        Ok(inbox::Entity::find_by_id((consumer.to_owned(), id))
            .one(self.0)
            .await?
            .is_some())
    }

    /// Records that `consumer` processed message `id`; a second record is a no-op.
    pub async fn inbox_record(&self, consumer: &str, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let row = inbox::ActiveModel {
            consumer: Set(consumer.to_owned()),
            message_id: Set(id),
            processed_at: Set(now),
        };
        match row.insert(self.0).await.map_err(StorageError::from) {
            Ok(_) | Err(StorageError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn outbox_record(m: outbox::Model) -> OutboxRecord {
    OutboxRecord {
        id: m.id,
        message_type: m.message_type,
        payload: m.payload,
        created_at: m.created_at,
        attempts: m.attempts,
    }
}
