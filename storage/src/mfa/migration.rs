//! `m0012_mfa`: second factors, recovery codes, pending login challenges, and the methods
//! (`amr`) and assurance level (`acr`) each session was opened with.

use sea_orm_migration::prelude::*;

use crate::migrations::{index, table, text, text_null, ts, ts_null, uuid_col, uuid_pk};

pub(crate) struct M0012Mfa;

impl MigrationName for M0012Mfa {
    fn name(&self) -> &str {
        "m0012_mfa"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0012Mfa {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "mfa_factors",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                text("kind"),
                text_null("label"),
                text_null("secret"),
                ts_null("confirmed_at"),
                ColumnDef::new(Alias::new("last_step"))
                    .big_integer()
                    .null()
                    .to_owned(),
                ts("created_at"),
                ts_null("last_used_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "mfa_factors",
            "mfa_factors_user_idx",
            &["user_id"],
            false,
        ))
        .await?;
        m.create_table(table(
            "mfa_recovery_codes",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                text("code_hash"),
                ts_null("used_at"),
                ts("created_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "mfa_recovery_codes",
            "mfa_recovery_codes_user_idx",
            &["user_id", "code_hash"],
            false,
        ))
        .await?;
        m.create_table(table(
            "mfa_challenges",
            vec![
                uuid_pk("id"),
                text("token_hash"),
                uuid_col("user_id"),
                text("amr"),
                ts("created_at"),
                ts("expires_at"),
                ColumnDef::new(Alias::new("attempts"))
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ],
        ))
        .await?;
        m.create_index(index(
            "mfa_challenges",
            "mfa_challenges_token_idx",
            &["token_hash"],
            true,
        ))
        .await?;
        for (col, default) in [("amr", "pwd"), ("acr", "aal1")] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new("sessions"))
                    .add_column(
                        ColumnDef::new(Alias::new(col))
                            .text()
                            .not_null()
                            .default(default)
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// `m0013_mfa_codes`: the codes sent for SMS and email factors, and whether a user's password
/// was last set through an email link (then an email code is not a second kind of proof).
pub(crate) struct M0013MfaCodes;

impl MigrationName for M0013MfaCodes {
    fn name(&self) -> &str {
        "m0013_mfa_codes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0013MfaCodes {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "mfa_codes",
            vec![
                uuid_pk("factor_id"),
                uuid_col("user_id"),
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
        .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("users"))
                .add_column(
                    ColumnDef::new(Alias::new("password_via_reset"))
                        .boolean()
                        .not_null()
                        .default(false)
                        .to_owned(),
                )
                .to_owned(),
        )
        .await
    }
}

/// `m0014_webauthn`: the state of WebAuthn ceremonies between their options and their answer,
/// found by the challenge the browser signs (so the two requests may reach different nodes).
pub(crate) struct M0014Webauthn;

impl MigrationName for M0014Webauthn {
    fn name(&self) -> &str {
        "m0014_webauthn"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0014Webauthn {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "webauthn_ceremonies",
            vec![
                uuid_pk("id"),
                text("challenge"),
                text("purpose"),
                ColumnDef::new(Alias::new("user_id"))
                    .uuid()
                    .null()
                    .to_owned(),
                text("state"),
                ts("created_at"),
                ts("expires_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "webauthn_ceremonies",
            "webauthn_ceremonies_challenge_idx",
            &["challenge"],
            true,
        ))
        .await
    }
}
