//! `m0018_key_lead`: when a signing key starts to sign. A rotated-in key is published at once
//! and signs only from `signs_from`, so every node and every verifier's JWKS cache knows it
//! before the first token it signs.

use sea_orm_migration::prelude::*;

pub(crate) struct M0018KeyLead;

impl MigrationName for M0018KeyLead {
    fn name(&self) -> &str {
        "m0018_key_lead"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0018KeyLead {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // NULL: signs from its creation (every key made before this migration).
        m.alter_table(
            Table::alter()
                .table(Alias::new("signing_keys"))
                .add_column(
                    ColumnDef::new(Alias::new("signs_from"))
                        .timestamp_with_time_zone()
                        .null()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await
    }
}
