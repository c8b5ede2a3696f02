//! `m0017_retention`: indexes for the purger's age scans, and a gate that lets the purger (and
//! nothing else) delete audit lines older than a cutoff.
//!
//! The audit log stays append-only: its triggers still refuse every update, and refuse a
//! delete unless the deleting transaction has written a cutoff into `audit_log_retention`
//! and the line is older than it. Only [`super::Retention::purge_audit_log`] writes one, inside
//! its own transaction, and removes it before committing, so no cutoff is ever visible to
//! another transaction.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

use crate::migrations::{index, table, ts};

pub(crate) struct M0017Retention;

impl MigrationName for M0017Retention {
    fn name(&self) -> &str {
        "m0017_retention"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0017Retention {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (t, name, col) in [
            ("audit_log", "audit_log_at_idx", "at"),
            ("inbox", "inbox_processed_at_idx", "processed_at"),
            ("login_failures", "login_failures_at_idx", "at"),
        ] {
            m.create_index(index(t, name, &[col], false)).await?;
        }
        m.create_table(table("audit_log_retention", vec![ts("cutoff")]))
            .await?;
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE OR REPLACE FUNCTION keyward_audit_log_append_only() RETURNS trigger AS $$ \
                     BEGIN \
                       IF TG_OP = 'DELETE' AND EXISTS \
                          (SELECT 1 FROM audit_log_retention WHERE OLD.at < cutoff) THEN \
                         RETURN OLD; \
                       END IF; \
                       RAISE EXCEPTION 'audit_log is append-only'; \
                     END; $$ LANGUAGE plpgsql",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared("DROP TRIGGER audit_log_no_delete")
                    .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log \
                     WHEN NOT EXISTS (SELECT 1 FROM audit_log_retention WHERE OLD.at < cutoff) \
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
                )
                .await?;
            }
        }
        Ok(())
    }
}
