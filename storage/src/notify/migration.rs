//! `m0009_notify`: stored templates, the delivery log, the in-app inbox, preferences, the
//! scheduled sends, browsers' push subscriptions, and the send requests' idempotency records.

use sea_orm_migration::prelude::*;

use crate::migrations::{index, table, text, text_null, ts, ts_null, uuid_col, uuid_pk};

pub(crate) struct M0009Notify;

impl MigrationName for M0009Notify {
    fn name(&self) -> &str {
        "m0009_notify"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0009Notify {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut templates = table(
            "notification_templates",
            vec![
                text("key"),
                text("channel"),
                text("locale"),
                text("parts"),
                text("variables"),
                text("source"),
                ts("updated_at"),
                ColumnDef::new(Alias::new("updated_by"))
                    .uuid()
                    .null()
                    .to_owned(),
            ],
        );
        templates.primary_key(
            Index::create()
                .col(Alias::new("key"))
                .col(Alias::new("channel"))
                .col(Alias::new("locale")),
        );
        m.create_table(templates).await?;

        m.create_table(table(
            "notification_deliveries",
            vec![
                uuid_pk("id"),
                uuid_col("notification_id"),
                uuid_col("user_id"),
                text("channel"),
                text("category"),
                text("template"),
                text("status"),
                ColumnDef::new(Alias::new("attempts"))
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
                text_null("answer"),
                ts("created_at"),
                ts("updated_at"),
            ],
        ))
        .await?;
        for (name, cols) in [
            ("notification_deliveries_user_idx", &["user_id", "id"][..]),
            ("notification_deliveries_status_idx", &["status", "id"][..]),
            (
                "notification_deliveries_notification_idx",
                &["notification_id"][..],
            ),
        ] {
            m.create_index(index("notification_deliveries", name, cols, false))
                .await?;
        }

        m.create_table(table(
            "inbox_items",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                text("category"),
                text("title"),
                text("body"),
                text_null("action_url"),
                ts("created_at"),
                ts_null("read_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "inbox_items",
            "inbox_items_user_idx",
            &["user_id", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "inbox_items",
            "inbox_items_unread_idx",
            &["user_id", "read_at", "id"],
            false,
        ))
        .await?;

        m.create_table(table(
            "notification_preferences",
            vec![uuid_pk("user_id"), text("preferences"), ts("updated_at")],
        ))
        .await?;

        m.create_table(table(
            "notification_schedule",
            vec![
                uuid_pk("notification_id"),
                uuid_col("user_id"),
                ts("due_at"),
                text("template"),
                text("category"),
                text("variables"),
                ts("created_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "notification_schedule",
            "notification_schedule_due_idx",
            &["due_at"],
            false,
        ))
        .await?;

        m.create_table(table(
            "push_subscriptions",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                text("endpoint"),
                text("p256dh"),
                text("auth"),
                ts("created_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "push_subscriptions",
            "push_subscriptions_endpoint_idx",
            &["endpoint"],
            true,
        ))
        .await?;
        m.create_index(index(
            "push_subscriptions",
            "push_subscriptions_user_idx",
            &["user_id"],
            false,
        ))
        .await?;

        let mut requests = table(
            "notification_requests",
            vec![
                text("caller"),
                text("idempotency_key"),
                text("fingerprint"),
                text("ids"),
                ts("created_at"),
            ],
        );
        requests.primary_key(
            Index::create()
                .col(Alias::new("caller"))
                .col(Alias::new("idempotency_key")),
        );
        m.create_table(requests).await
    }
}

/// `m0010_inbox_unread`: each user's unread count kept beside the inbox, so reading it costs
/// one row however many items are unread (counting 10,000 index entries took most of an inbox
/// request). Filled from the items already there.
pub(crate) struct M0010InboxUnread;

impl MigrationName for M0010InboxUnread {
    fn name(&self) -> &str {
        "m0010_inbox_unread"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0010InboxUnread {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "inbox_unread",
            vec![
                uuid_pk("user_id"),
                ColumnDef::new(Alias::new("unread"))
                    .big_integer()
                    .not_null()
                    .to_owned(),
            ],
        ))
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO inbox_unread (user_id, unread) \
                 SELECT user_id, COUNT(*) FROM inbox_items WHERE read_at IS NULL GROUP BY user_id",
            )
            .await?;
        Ok(())
    }
}
