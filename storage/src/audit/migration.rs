//! `m0019_audit_client_actor`: the service client that did an admin action, beside the
//! user (`actor_id`) who did the others, and an index to read a client's lines by.

use sea_orm_migration::prelude::*;

use crate::migrations::index;

pub(crate) struct M0019AuditClientActor;

impl MigrationName for M0019AuditClientActor {
    fn name(&self) -> &str {
        "m0019_audit_client_actor"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0019AuditClientActor {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("audit_log"))
                .add_column(ColumnDef::new(Alias::new("actor_client_id")).text().null())
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "audit_log",
            "audit_log_actor_client_idx",
            &["actor_client_id", "id"],
            false,
        ))
        .await
    }
}
