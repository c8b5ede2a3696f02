//! `m0007_access`: role definitions, service clients, the actor of each audit line, and the
//! indexes the access context reads by (holders of a role, audit lines by actor and kind,
//! recent outbox messages for the nodes' invalidation feed).

use sea_orm_migration::prelude::*;

use crate::migrations::{index, table, text, ts};

pub(crate) struct M0007Access;

impl MigrationName for M0007Access {
    fn name(&self) -> &str {
        "m0007_access"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0007Access {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut roles = table(
            "roles",
            vec![
                text("name"),
                text("description"),
                text("permissions"),
                text("source"),
                ts("updated_at"),
            ],
        );
        roles.primary_key(Index::create().col(Alias::new("name")));
        m.create_table(roles).await?;
        m.create_index(index(
            "user_roles",
            "user_roles_role_idx",
            &["role", "user_id"],
            false,
        ))
        .await?;

        let mut clients = table(
            "service_clients",
            vec![
                text("id"),
                text("name"),
                text("secret_hash"),
                text("scopes"),
                ts("created_at"),
                ColumnDef::new(Alias::new("created_by"))
                    .uuid()
                    .null()
                    .to_owned(),
            ],
        );
        clients.primary_key(Index::create().col(Alias::new("id")));
        m.create_table(clients).await?;

        m.alter_table(
            Table::alter()
                .table(Alias::new("audit_log"))
                .add_column(ColumnDef::new(Alias::new("actor_id")).uuid().null())
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "audit_log",
            "audit_log_actor_idx",
            &["actor_id", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "audit_log",
            "audit_log_kind_idx",
            &["kind", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "outbox",
            "outbox_created_idx",
            &["created_at"],
            false,
        ))
        .await
    }
}
