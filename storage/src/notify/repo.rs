//! [`Notices`]: templates, the delivery log, inboxes, preferences and send requests.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{delivery, inbox, preference, push, schedule, send, template, unread};
use super::{
    DeliveryFilter, DeliveryRecord, InboxRecord, PushSubscriptionRecord, ScheduledRecord,
    SendRecord, TemplateRecord,
};
use crate::error::BadValue;
use crate::{Result, StorageError};

/// Rows per INSERT: far below SQLite's bound on variables per statement.
const CHUNK: usize = 500;

/// Preferences: category → channel → wanted.
pub type Preferences = BTreeMap<String, BTreeMap<String, bool>>;

/// The notify context's repository, over the pool (`store.notices()`) or a transaction
/// (`tx.notices()`).
pub struct Notices<'a, C>(pub(crate) &'a C);

fn json<T: serde::de::DeserializeOwned>(what: impl FnOnce() -> String, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| StorageError::corrupt(what(), BadValue::Json(e)))
}

fn template_record(m: template::Model) -> Result<TemplateRecord> {
    let what = || {
        format!(
            "notification_templates {}/{}/{}",
            m.key, m.channel, m.locale
        )
    };
    Ok(TemplateRecord {
        parts: json(what, &m.parts)?,
        variables: json(what, &m.variables)?,
        key: m.key,
        channel: m.channel,
        locale: m.locale,
        source: m.source,
        updated_at: m.updated_at,
        updated_by: m.updated_by.map(UserId),
    })
}

fn delivery_record(m: delivery::Model) -> DeliveryRecord {
    DeliveryRecord {
        id: m.id,
        notification_id: m.notification_id,
        user_id: UserId(m.user_id),
        channel: m.channel,
        category: m.category,
        template: m.template,
        status: m.status,
        attempts: m.attempts,
        answer: m.answer,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn inbox_record(m: inbox::Model) -> InboxRecord {
    InboxRecord {
        id: m.id,
        user_id: UserId(m.user_id),
        category: m.category,
        title: m.title,
        body: m.body,
        action_url: m.action_url,
        created_at: m.created_at,
        read_at: m.read_at,
    }
}

impl<C: ConnectionTrait> Notices<'_, C> {
    /// The template of (key, channel, locale), if stored.
    pub async fn template(
        &self,
        key: &str,
        channel: &str,
        locale: &str,
    ) -> Result<Option<TemplateRecord>> {
        template::Entity::find_by_id((key.to_owned(), channel.to_owned(), locale.to_owned()))
            .one(self.0)
            .await?
            .map(template_record)
            .transpose()
    }

    /// Every stored template.
    pub async fn templates(&self) -> Result<Vec<TemplateRecord>> {
        template::Entity::find()
            .order_by_asc(template::Column::Key)
            .order_by_asc(template::Column::Channel)
            .order_by_asc(template::Column::Locale)
            .all(self.0)
            .await?
            .into_iter()
            .map(template_record)
            .collect()
    }

    /// Creates or replaces a template.
    pub async fn put_template(&self, t: &TemplateRecord) -> Result<()> {
        let am = template::ActiveModel {
            key: Set(t.key.clone()),
            channel: Set(t.channel.clone()),
            locale: Set(t.locale.clone()),
            parts: Set(serde_json::to_string(&t.parts).unwrap_or_default()),
            variables: Set(serde_json::to_string(&t.variables).unwrap_or_default()),
            source: Set(t.source.clone()),
            updated_at: Set(t.updated_at),
            updated_by: Set(t.updated_by.map(|u| u.0)),
        };
        template::Entity::insert(am)
            .on_conflict(
                OnConflict::columns([
                    template::Column::Key,
                    template::Column::Channel,
                    template::Column::Locale,
                ])
                .update_columns([
                    template::Column::Parts,
                    template::Column::Variables,
                    template::Column::Source,
                    template::Column::UpdatedAt,
                    template::Column::UpdatedBy,
                ])
                .to_owned(),
            )
            .exec_without_returning(self.0)
            .await?;
        Ok(())
    }

    /// Appends rows to the delivery log.
    pub async fn insert_deliveries(&self, rows: &[DeliveryRecord]) -> Result<()> {
        for chunk in rows.chunks(CHUNK) {
            let models = chunk.iter().map(|d| delivery::ActiveModel {
                id: Set(d.id),
                notification_id: Set(d.notification_id),
                user_id: Set(d.user_id.0),
                channel: Set(d.channel.clone()),
                category: Set(d.category.clone()),
                template: Set(d.template.clone()),
                status: Set(d.status.clone()),
                attempts: Set(d.attempts),
                answer: Set(d.answer.clone()),
                created_at: Set(d.created_at),
                updated_at: Set(d.updated_at),
            });
            delivery::Entity::insert_many(models)
                .exec_without_returning(self.0)
                .await?;
        }
        Ok(())
    }

    pub async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>> {
        Ok(delivery::Entity::find_by_id(id)
            .one(self.0)
            .await?
            .map(delivery_record))
    }

    /// Records an attempt's outcome: the new status and answer, one more attempt. False when
    /// the row is gone (its user was erased).
    pub async fn record_attempt(
        &self,
        id: Uuid,
        status: &str,
        answer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let res = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(status))
            .col_expr(
                delivery::Column::Answer,
                Expr::value(answer.map(str::to_owned)),
            )
            .col_expr(
                delivery::Column::Attempts,
                Expr::col(delivery::Column::Attempts).add(1),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            .filter(delivery::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// The log, newest first, as `f` filters it.
    pub async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRecord>> {
        let mut q = delivery::Entity::find();
        if let Some(u) = f.user_id {
            q = q.filter(delivery::Column::UserId.eq(u.0));
        }
        if let Some(s) = &f.status {
            q = q.filter(delivery::Column::Status.eq(s.clone()));
        }
        if let Some(b) = f.before {
            q = q.filter(delivery::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(delivery::Column::Id)
            .limit(f.limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(delivery_record)
            .collect())
    }

    /// Adds items to inboxes.
    pub async fn insert_inbox(&self, items: &[InboxRecord]) -> Result<()> {
        for chunk in items.chunks(CHUNK) {
            let models = chunk.iter().map(|i| inbox::ActiveModel {
                id: Set(i.id),
                user_id: Set(i.user_id.0),
                category: Set(i.category.clone()),
                title: Set(i.title.clone()),
                body: Set(i.body.clone()),
                action_url: Set(i.action_url.clone()),
                created_at: Set(i.created_at),
                read_at: Set(i.read_at),
            });
            inbox::Entity::insert_many(models)
                .exec_without_returning(self.0)
                .await?;
        }
        let mut added: BTreeMap<Uuid, i64> = BTreeMap::new();
        for i in items.iter().filter(|i| i.read_at.is_none()) {
            *added.entry(i.user_id.0).or_default() += 1;
        }
        let added: Vec<_> = added.into_iter().collect();
        for chunk in added.chunks(CHUNK) {
            self.add_unread(chunk).await?;
        }
        Ok(())
    }

    /// Adds each `(user, n)` to the user's unread count, in one statement.
    async fn add_unread(&self, deltas: &[(Uuid, i64)]) -> Result<()> {
        let models = deltas.iter().map(|&(user_id, n)| unread::ActiveModel {
            user_id: Set(user_id),
            unread: Set(n),
        });
        let sum = Expr::col((unread::Entity, unread::Column::Unread))
            .add(Expr::col((Alias::new("excluded"), unread::Column::Unread)));
        unread::Entity::insert_many(models)
            .on_conflict(
                OnConflict::column(unread::Column::UserId)
                    .value(unread::Column::Unread, sum)
                    .to_owned(),
            )
            .exec_without_returning(self.0)
            .await?;
        Ok(())
    }

    /// A user's inbox, newest first, older than `before`; only unread items when asked.
    pub async fn inbox(
        &self,
        user: UserId,
        unread_only: bool,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<InboxRecord>> {
        let mut q = inbox::Entity::find().filter(inbox::Column::UserId.eq(user.0));
        if unread_only {
            q = q.filter(inbox::Column::ReadAt.is_null());
        }
        if let Some(b) = before {
            q = q.filter(inbox::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(inbox::Column::Id)
            .limit(limit)
            .all(self.0)
            .await?
            .into_iter()
            .map(inbox_record)
            .collect())
    }

    pub async fn inbox_item(&self, id: Uuid) -> Result<Option<InboxRecord>> {
        Ok(inbox::Entity::find_by_id(id)
            .one(self.0)
            .await?
            .map(inbox_record))
    }

    /// How many of `user`'s items are unread: one row, kept by every write to the inbox.
    pub async fn unread_count(&self, user: UserId) -> Result<u64> {
        let n = unread::Entity::find_by_id(user.0)
            .one(self.0)
            .await?
            .map_or(0, |m| m.unread);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Marks one of `user`'s items read; false when `user` has no such item. Reading an item
    /// twice keeps the first time. Run it in a transaction: the unread count moves with it.
    pub async fn mark_read(&self, user: UserId, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let res = inbox::Entity::update_many()
            .col_expr(inbox::Column::ReadAt, Expr::value(now))
            .filter(inbox::Column::Id.eq(id))
            .filter(inbox::Column::UserId.eq(user.0))
            .filter(inbox::Column::ReadAt.is_null())
            .exec(self.0)
            .await?;
        if res.rows_affected > 0 {
            self.add_unread(&[(user.0, -1)]).await?;
            return Ok(true);
        }
        Ok(inbox::Entity::find_by_id(id)
            .filter(inbox::Column::UserId.eq(user.0))
            .count(self.0)
            .await?
            > 0)
    }

    /// Marks every unread item of `user` read; how many were. Run it in a transaction: the
    /// unread count moves with it.
    pub async fn mark_all_read(&self, user: UserId, now: DateTime<Utc>) -> Result<u64> {
        let res = inbox::Entity::update_many()
            .col_expr(inbox::Column::ReadAt, Expr::value(now))
            .filter(inbox::Column::UserId.eq(user.0))
            .filter(inbox::Column::ReadAt.is_null())
            .exec(self.0)
            .await?;
        if res.rows_affected > 0 {
            let n = i64::try_from(res.rows_affected).unwrap_or(i64::MAX);
            self.add_unread(&[(user.0, -n)]).await?;
        }
        Ok(res.rows_affected)
    }

    /// The preferences `user` set (empty when none).
    pub async fn preferences(&self, user: UserId) -> Result<Preferences> {
        Ok(self
            .preferences_of(&[user])
            .await?
            .remove(&user)
            .unwrap_or_default())
    }

    /// The preferences of each of `users` who set any.
    pub async fn preferences_of(&self, users: &[UserId]) -> Result<HashMap<UserId, Preferences>> {
        let mut out = HashMap::new();
        for chunk in users.chunks(CHUNK) {
            let rows = preference::Entity::find()
                .filter(preference::Column::UserId.is_in(chunk.iter().map(|u| u.0)))
                .all(self.0)
                .await?;
            for m in rows {
                let user = UserId(m.user_id);
                let p = json(
                    || format!("notification_preferences {}", m.user_id),
                    &m.preferences,
                )?;
                out.insert(user, p);
            }
        }
        Ok(out)
    }

    pub async fn put_preferences(
        &self,
        user: UserId,
        prefs: &Preferences,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let am = preference::ActiveModel {
            user_id: Set(user.0),
            preferences: Set(serde_json::to_string(prefs).unwrap_or_default()),
            updated_at: Set(now),
        };
        preference::Entity::insert(am)
            .on_conflict(
                OnConflict::column(preference::Column::UserId)
                    .update_columns([
                        preference::Column::Preferences,
                        preference::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.0)
            .await?;
        Ok(())
    }

    /// The request `caller` sent under `key`, if any.
    pub async fn send_request(&self, caller: &str, key: &str) -> Result<Option<SendRecord>> {
        let Some(m) = send::Entity::find_by_id((caller.to_owned(), key.to_owned()))
            .one(self.0)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(SendRecord {
            ids: json(
                || format!("notification_requests {}/{}", m.caller, m.idempotency_key),
                &m.ids,
            )?,
            caller: m.caller,
            idempotency_key: m.idempotency_key,
            fingerprint: m.fingerprint,
            created_at: m.created_at,
        }))
    }

    /// Remembers a request; `Conflict` when the caller already used its key (a concurrent
    /// twin: the caller reads that one instead).
    pub async fn insert_send_request(&self, r: &SendRecord) -> Result<()> {
        let am = send::ActiveModel {
            caller: Set(r.caller.clone()),
            idempotency_key: Set(r.idempotency_key.clone()),
            fingerprint: Set(r.fingerprint.clone()),
            ids: Set(serde_json::to_string(&r.ids).unwrap_or_default()),
            created_at: Set(r.created_at),
        };
        send::Entity::insert(am)
            .exec_without_returning(self.0)
            .await?;
        Ok(())
    }

    /// The deliveries of one notification, one per channel.
    pub async fn deliveries_of(&self, notification: Uuid) -> Result<Vec<DeliveryRecord>> {
        Ok(delivery::Entity::find()
            .filter(delivery::Column::NotificationId.eq(notification))
            .order_by_asc(delivery::Column::Id)
            .all(self.0)
            .await?
            .into_iter()
            .map(delivery_record)
            .collect())
    }

    /// Sets a delivery's outcome as decided now (a scheduled one when it fell due, or its
    /// cancellation).
    pub async fn set_delivery(
        &self,
        id: Uuid,
        status: &str,
        attempts: i32,
        answer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(status))
            .col_expr(delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(
                delivery::Column::Answer,
                Expr::value(answer.map(str::to_owned)),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            .filter(delivery::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    pub async fn insert_schedule(&self, rows: &[ScheduledRecord]) -> Result<()> {
        for chunk in rows.chunks(CHUNK) {
            let models = chunk.iter().map(|r| schedule::ActiveModel {
                notification_id: Set(r.notification_id),
                user_id: Set(r.user_id.0),
                due_at: Set(r.due_at),
                template: Set(r.template.clone()),
                category: Set(r.category.clone()),
                variables: Set(serde_json::Value::Object(r.variables.clone()).to_string()),
                created_at: Set(r.created_at),
            });
            schedule::Entity::insert_many(models)
                .exec_without_returning(self.0)
                .await?;
        }
        Ok(())
    }

    /// Up to `limit` sends due at `now`, oldest due first. Inside a transaction on PostgreSQL
    /// the rows are locked and rows another transaction holds are skipped, so concurrent
    /// schedulers take each once (SQLite has one writer anyway).
    pub async fn due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<ScheduledRecord>> {
        let mut q = schedule::Entity::find()
            .filter(schedule::Column::DueAt.lte(now))
            .order_by_asc(schedule::Column::DueAt)
            .limit(limit);
        if self.0.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            q = q.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        q.all(self.0)
            .await?
            .into_iter()
            .map(|m| {
                Ok(ScheduledRecord {
                    variables: json(
                        || format!("notification_schedule {}", m.notification_id),
                        &m.variables,
                    )?,
                    notification_id: m.notification_id,
                    user_id: UserId(m.user_id),
                    due_at: m.due_at,
                    template: m.template,
                    category: m.category,
                    created_at: m.created_at,
                })
            })
            .collect()
    }

    /// Takes a scheduled send off the schedule; false when it was not on it (sent, cancelled,
    /// or never scheduled).
    pub async fn unschedule(&self, notification: Uuid) -> Result<bool> {
        let res = schedule::Entity::delete_by_id(notification)
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Stores a subscription; the same endpoint again (the browser subscribed anew, maybe for
    /// another user) replaces the old one. Returns the id it is kept under.
    pub async fn put_push_subscription(&self, s: &PushSubscriptionRecord) -> Result<Uuid> {
        push::Entity::delete_many()
            .filter(push::Column::Endpoint.eq(s.endpoint.clone()))
            .exec(self.0)
            .await?;
        push::Entity::insert(push::ActiveModel {
            id: Set(s.id),
            user_id: Set(s.user_id.0),
            endpoint: Set(s.endpoint.clone()),
            p256dh: Set(s.p256dh.clone()),
            auth: Set(s.auth.clone()),
            created_at: Set(s.created_at),
        })
        .exec_without_returning(self.0)
        .await?;
        Ok(s.id)
    }

    /// The subscriptions of each of `users`.
    pub async fn push_subscriptions_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Vec<PushSubscriptionRecord>>> {
        let mut out: HashMap<UserId, Vec<PushSubscriptionRecord>> = HashMap::new();
        for chunk in users.chunks(CHUNK) {
            let rows = push::Entity::find()
                .filter(push::Column::UserId.is_in(chunk.iter().map(|u| u.0)))
                .order_by_asc(push::Column::CreatedAt)
                .all(self.0)
                .await?;
            for m in rows {
                out.entry(UserId(m.user_id))
                    .or_default()
                    .push(PushSubscriptionRecord {
                        id: m.id,
                        user_id: UserId(m.user_id),
                        endpoint: m.endpoint,
                        p256dh: m.p256dh,
                        auth: m.auth,
                        created_at: m.created_at,
                    });
            }
        }
        Ok(out)
    }

    /// Removes one of `user`'s subscriptions; false when they have no such one.
    pub async fn delete_push_subscription(&self, user: UserId, id: Uuid) -> Result<bool> {
        let res = push::Entity::delete_many()
            .filter(push::Column::Id.eq(id))
            .filter(push::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Removes the subscription of an endpoint the push service says is gone.
    pub async fn delete_push_endpoint(&self, endpoint: &str) -> Result<bool> {
        let res = push::Entity::delete_many()
            .filter(push::Column::Endpoint.eq(endpoint))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Erases what the log and inbox hold of `user` (account erasure).
    pub async fn erase_user(&self, user: UserId) -> Result<()> {
        delivery::Entity::delete_many()
            .filter(delivery::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        inbox::Entity::delete_many()
            .filter(inbox::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        unread::Entity::delete_by_id(user.0).exec(self.0).await?;
        preference::Entity::delete_by_id(user.0)
            .exec(self.0)
            .await?;
        schedule::Entity::delete_many()
            .filter(schedule::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        push::Entity::delete_many()
            .filter(push::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(())
    }
}
