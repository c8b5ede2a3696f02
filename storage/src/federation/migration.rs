//! `m0015_federation`: identities at social login providers, pending web flows, one-time codes,
//! and the ID tokens native apps already signed in with (each is accepted once).

use sea_orm_migration::prelude::*;

use crate::migrations::{index, table, text, text_null, ts, ts_null, uuid_col, uuid_pk};

pub(crate) struct M0015Federation;

impl MigrationName for M0015Federation {
    fn name(&self) -> &str {
        "m0015_federation"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0015Federation {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "identities",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                text("provider"),
                text("subject"),
                text_null("email"),
                ColumnDef::new(Alias::new("email_verified"))
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
                ts("created_at"),
                ts_null("last_login_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "identities",
            "identities_provider_subject_idx",
            &["provider", "subject"],
            true,
        ))
        .await?;
        m.create_index(index(
            "identities",
            "identities_user_idx",
            &["user_id"],
            false,
        ))
        .await?;
        m.create_table(table(
            "oauth_flows",
            vec![
                uuid_pk("id"),
                text("state_hash"),
                text("provider"),
                text("redirect_uri"),
                text("nonce"),
                text("pkce_verifier"),
                ColumnDef::new(Alias::new("link_user_id"))
                    .uuid()
                    .null()
                    .to_owned(),
                text_null("app_state"),
                ts("created_at"),
                ts("expires_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "oauth_flows",
            "oauth_flows_state_idx",
            &["state_hash"],
            true,
        ))
        .await?;
        m.create_table(table(
            "oauth_codes",
            vec![
                ColumnDef::new(Alias::new("code_hash"))
                    .text()
                    .not_null()
                    .primary_key()
                    .to_owned(),
                uuid_col("user_id"),
                text("provider"),
                ts("created_at"),
                ts("expires_at"),
            ],
        ))
        .await?;
        // False for an account a social login made: its password is one nobody knows.
        m.alter_table(
            Table::alter()
                .table(Alias::new("users"))
                .add_column(
                    ColumnDef::new(Alias::new("password_set"))
                        .boolean()
                        .not_null()
                        .default(true)
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(table(
            "oauth_used_tokens",
            vec![
                ColumnDef::new(Alias::new("token_hash"))
                    .text()
                    .not_null()
                    .primary_key()
                    .to_owned(),
                ts("expires_at"),
            ],
        ))
        .await
    }
}
