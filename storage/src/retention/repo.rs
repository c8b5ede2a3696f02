//! [`Retention`]: batched deletes by age, and the purger's lock.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, DeleteStatement, Expr, ExprTrait, JoinType, Query, SelectStatement, UpdateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};

use crate::Result;

/// Key of the PostgreSQL advisory lock a purger holds for its whole run (the migration lock is
/// `…01`).
const PURGE_LOCK: i64 = 0x6b65_7977_6172_6402;

/// The retention repository, over the pool (`store.retention()`) or a transaction
/// (`tx.retention()`). Each `purge_*` deletes at most `limit` of the oldest-first rows it may
/// and returns how many went; the caller repeats it until it returns less than `limit`.
pub struct Retention<'a, C>(pub(crate) &'a C);

fn col(name: &'static str) -> Expr {
    Expr::col(Alias::new(name))
}

fn at(table: &'static str, name: &'static str) -> Expr {
    Expr::col((Alias::new(table), Alias::new(name)))
}

/// `DELETE FROM {table} WHERE id IN ({ids})`.
fn delete_ids(table: &'static str, ids: SelectStatement) -> DeleteStatement {
    Query::delete()
        .from_table(Alias::new(table))
        .and_where(col("id").in_subquery(ids))
        .to_owned()
}

/// The session `s` has ended before `before`: revoked, or past its absolute or idle expiry.
fn ended(before: DateTime<Utc>) -> Expr {
    at("s", "revoked_at")
        .lt(before)
        .or(at("s", "expires_at").lt(before))
        .or(at("s", "idle_expires_at").lt(before))
}

impl<C: ConnectionTrait> Retention<'_, C> {
    async fn run(&self, stmt: &impl sea_orm::StatementBuilder) -> Result<u64> {
        let backend = self.0.get_database_backend();
        Ok(self
            .0
            .execute_raw(backend.build(stmt))
            .await?
            .rows_affected())
    }

    /// Takes the purger's lock for as long as this transaction lasts: false at once when
    /// another purger (another node) holds it. PostgreSQL only; on SQLite, where one node is
    /// the only writer, it is always true.
    pub async fn try_lock(&self) -> Result<bool> {
        let backend = self.0.get_database_backend();
        if backend != DbBackend::Postgres {
            return Ok(true);
        }
        let row = self
            .0
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_try_advisory_xact_lock($1) AS locked",
                [PURGE_LOCK.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<bool>("", "locked")?,
            None => false,
        })
    }

    /// Outbox rows published before `before`. A row not published yet is never deleted,
    /// however old.
    pub async fn purge_outbox(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let ids = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("outbox"))
            .and_where(col("published_at").is_not_null())
            .and_where(col("published_at").lt(before))
            .order_by(Alias::new("published_at"), sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        self.run(&delete_ids("outbox", ids)).await
    }

    /// Consumers' records of messages they processed before `before` (a redelivery of one of
    /// those would be processed again).
    pub async fn purge_inbox(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let keys = Query::select()
            .columns([Alias::new("consumer"), Alias::new("message_id")])
            .from(Alias::new("inbox"))
            .and_where(col("processed_at").lt(before))
            .limit(limit)
            .to_owned();
        let stmt = Query::delete()
            .from_table(Alias::new("inbox"))
            .and_where(Expr::tuple([col("consumer"), col("message_id")]).in_subquery(keys))
            .to_owned();
        self.run(&stmt).await
    }

    /// The refresh tokens of sessions that ended before `before` (a token of an ended session
    /// is refused anyway).
    pub async fn purge_session_tokens(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let ids = Query::select()
            .column((Alias::new("r"), Alias::new("id")))
            .from_as(Alias::new("refresh_tokens"), Alias::new("r"))
            .join_as(
                JoinType::InnerJoin,
                Alias::new("sessions"),
                Alias::new("s"),
                at("s", "id").equals((Alias::new("r"), Alias::new("session_id"))),
            )
            .and_where(ended(before))
            .limit(limit)
            .to_owned();
        self.run(&delete_ids("refresh_tokens", ids)).await
    }

    /// Sessions that ended before `before`, except each user's latest session, which stays as
    /// the record of their last login (see [`Retention::scrub_sessions`]). Call after
    /// [`Retention::purge_session_tokens`], so that no token outlives its session.
    pub async fn purge_sessions(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let newer = Query::select()
            .expr(Expr::val(1))
            .from_as(Alias::new("sessions"), Alias::new("n"))
            .and_where(at("n", "user_id").equals((Alias::new("s"), Alias::new("user_id"))))
            .and_where(at("n", "created_at").gt(at("s", "created_at")))
            .to_owned();
        let ids = Query::select()
            .column((Alias::new("s"), Alias::new("id")))
            .from_as(Alias::new("sessions"), Alias::new("s"))
            .and_where(ended(before))
            .and_where(Expr::exists(newer))
            .limit(limit)
            .to_owned();
        self.run(&delete_ids("sessions", ids)).await
    }

    /// Clears the IP and user agent of sessions that ended before `before` and were kept by
    /// [`Retention::purge_sessions`] (each user's latest): they then say only when the user
    /// last logged in.
    pub async fn scrub_sessions(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let ids = Query::select()
            .column((Alias::new("s"), Alias::new("id")))
            .from_as(Alias::new("sessions"), Alias::new("s"))
            .and_where(ended(before))
            .and_where(
                at("s", "ip")
                    .is_not_null()
                    .or(at("s", "user_agent").is_not_null()),
            )
            .limit(limit)
            .to_owned();
        let stmt: UpdateStatement = Query::update()
            .table(Alias::new("sessions"))
            .value(Alias::new("ip"), Expr::null())
            .value(Alias::new("user_agent"), Expr::null())
            .and_where(col("id").in_subquery(ids))
            .to_owned();
        self.run(&stmt).await
    }

    /// One-time email tokens that can no longer be used since before `before`: used (or
    /// replaced by a newer one), or password-reset tokens past their expiry. An expired
    /// verify-email token nobody used stays: it carries the registration a resend of the link
    /// completes.
    pub async fn purge_email_tokens(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let ids = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("email_tokens"))
            .and_where(
                col("used_at").lt(before).or(col("purpose")
                    .eq(crate::TokenPurpose::ResetPassword.as_str())
                    .and(col("expires_at").lt(before))),
            )
            .limit(limit)
            .to_owned();
        self.run(&delete_ids("email_tokens", ids)).await
    }

    /// Failed logins recorded before `before`.
    pub async fn purge_login_failures(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let ids = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("login_failures"))
            .and_where(col("at").lt(before))
            .order_by(Alias::new("at"), sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        self.run(&delete_ids("login_failures", ids)).await
    }
}

impl Retention<'_, DatabaseTransaction> {
    /// Audit lines written before `before`, inside the caller's transaction (the only place
    /// the append-only triggers let a delete through: see the `m0017_retention` migration).
    pub async fn purge_audit_log(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let backend = self.0.get_database_backend();
        let gate = match backend {
            DbBackend::Postgres => "INSERT INTO audit_log_retention (cutoff) VALUES ($1)",
            _ => "INSERT INTO audit_log_retention (cutoff) VALUES (?)",
        };
        self.0
            .execute_raw(Statement::from_sql_and_values(
                backend,
                gate,
                [before.into()],
            ))
            .await?;
        let ids = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("audit_log"))
            .and_where(col("at").lt(before))
            .order_by(Alias::new("at"), sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        let n = self.run(&delete_ids("audit_log", ids)).await?;
        let close = Query::delete()
            .from_table(Alias::new("audit_log_retention"))
            .to_owned();
        self.run(&close).await?;
        Ok(n)
    }
}
