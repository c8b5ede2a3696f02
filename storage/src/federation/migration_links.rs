//! `m0016_oauth_links`: proofs pending for linking an identity to the account that has its
//! email (the account's password, or a code sent to its verified email).

use sea_orm_migration::prelude::*;

use crate::migrations::{index, table, text, text_null, ts, ts_null, uuid_col, uuid_pk};

pub(crate) struct M0016OAuthLinks;

impl MigrationName for M0016OAuthLinks {
    fn name(&self) -> &str {
        "m0016_oauth_links"
    }
}

fn int(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0016OAuthLinks {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "oauth_link_proofs",
            vec![
                uuid_pk("id"),
                text("token_hash"),
                uuid_col("user_id"),
                text("provider"),
                text("subject"),
                text_null("email"),
                ColumnDef::new(Alias::new("email_verified"))
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
                text_null("code_hash"),
                ts_null("code_sent_at"),
                int("codes_sent"),
                int("attempts"),
                ts("created_at"),
                ts("expires_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "oauth_link_proofs",
            "oauth_link_proofs_token_idx",
            &["token_hash"],
            true,
        ))
        .await
    }
}
