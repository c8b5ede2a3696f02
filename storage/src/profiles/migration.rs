//! `m0005_profiles`: the profiles context's tables, and usernames re-keyed by their confusable
//! skeleton (`Username::normalized`), so names that read alike can no longer sit side by side.

use std::collections::HashSet;

use keyward_messages::Username;
use sea_orm_migration::prelude::*;
use uuid::Uuid;

use crate::migrations::{boolean, index, table, text, text_null, ts, ts_null, uuid_pk};

pub(crate) struct M0005Profiles;

impl MigrationName for M0005Profiles {
    fn name(&self) -> &str {
        "m0005_profiles"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005Profiles {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "profiles",
            vec![
                uuid_pk("user_id"),
                text_null("display_name"),
                text_null("bio"),
                text_null("avatar"),
                text_null("timezone"),
                text_null("country"),
                text_null("phone"),
                boolean("phone_verified"),
                text("visibility"),
                text("attributes"),
                ts_null("deletion_due_at"),
                ts("updated_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "profiles",
            "profiles_deletion_due_at",
            &["deletion_due_at"],
            false,
        ))
        .await?;
        m.create_table(table(
            "profile_settings",
            vec![uuid_pk("user_id"), text("settings"), ts("updated_at")],
        ))
        .await?;
        let mut reservations = table(
            "username_reservations",
            vec![
                text("username_normalized"),
                crate::migrations::uuid_col("user_id"),
                ts("until"),
            ],
        );
        reservations.primary_key(Index::create().col(Alias::new("username_normalized")));
        m.create_table(reservations).await?;

        rekey_usernames(m, "users", true).await?;
        rekey_usernames(m, "email_tokens", false).await
    }
}

/// Re-keys every stored username by its skeleton. Two names that now share a key (say `bob`
/// and `b0b`) were both taken before this rule: the older keeps the key, the newer keeps its
/// name under a key of its own (`legacy:` + its old lower-cased key, which no skeleton can
/// equal), so no account loses its name, and no new name can join them.
async fn rekey_usernames(m: &SchemaManager<'_>, tbl: &str, unique: bool) -> Result<(), DbErr> {
    let pk = "id";
    let db = m.get_connection();
    let backend = m.get_database_backend();
    let (t, id, name, key) = (
        Alias::new(tbl),
        Alias::new(pk),
        Alias::new("username"),
        Alias::new("username_normalized"),
    );
    let select = Query::select()
        .columns([id.clone(), name.clone(), key.clone()])
        .from(t.clone())
        .and_where(Expr::col(name.clone()).is_not_null())
        .order_by(Alias::new("created_at"), Order::Asc)
        .to_owned();
    let mut rows: Vec<(Uuid, String, String)> = Vec::new();
    for r in db.query_all_raw(backend.build(&select)).await? {
        let id: Uuid = r.try_get("", pk)?;
        let stored: String = r.try_get("", "username")?;
        let old_key: String = r.try_get("", "username_normalized")?;
        rows.push((id, stored, old_key));
    }
    let set = |id: Uuid, k: String| {
        Query::update()
            .table(t.clone())
            .value(key.clone(), k)
            .and_where(Expr::col(Alias::new(pk)).eq(id))
            .to_owned()
    };
    // Two steps, so that no new key meets an old one about to move.
    for (row, _, _) in &rows {
        db.execute_raw(backend.build(&set(*row, format!("migrating:{row}"))))
            .await?;
    }
    let mut taken = HashSet::new();
    for (row, stored, old_key) in rows {
        let skeleton = Username::parse("username", &stored)
            .map(|u| u.normalized())
            .unwrap_or_else(|_| old_key.clone());
        let k = if !unique || taken.insert(skeleton.clone()) {
            skeleton
        } else {
            tracing::warn!(table = tbl, id = %row, username = %stored,
                "a username that reads like an older one keeps its name under a legacy key");
            format!("legacy:{old_key}")
        };
        db.execute_raw(backend.build(&set(row, k))).await?;
    }
    Ok(())
}

/// `m0011_phone_verifications`: phone numbers waiting for their SMS code.
pub(crate) struct M0011PhoneVerifications;

impl MigrationName for M0011PhoneVerifications {
    fn name(&self) -> &str {
        "m0011_phone_verifications"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0011PhoneVerifications {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "phone_verifications",
            vec![
                uuid_pk("user_id"),
                text("phone"),
                text("code_hash"),
                ts("expires_at"),
                ColumnDef::new(Alias::new("attempts"))
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
                ts("sent_at"),
            ],
        ))
        .await
    }
}
