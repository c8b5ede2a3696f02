//! [`LoginFailures`]: the failed-login rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::entities::login_failure;
use crate::Result;

/// The login throttle's repository, over the pool (`store.login_failures()`) or a
/// transaction (`tx.login_failures()`).
pub struct LoginFailures<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> LoginFailures<'_, C> {
    pub async fn record(&self, key: &str, now: DateTime<Utc>) -> Result<()> {
        login_failure::ActiveModel {
            id: Set(Uuid::now_v7()),
            key: Set(key.to_owned()),
            at: Set(now),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Spends one request under each of `keys` (key, requests per hour), or none when any of
    /// them is spent: then `Some` of the seconds until the oldest request under the fullest one
    /// leaves the hour. Call it on a transaction, which the caller commits with whatever the
    /// request keeps (the text it queues): concurrent spenders then see each other's records,
    /// so a burst cannot pass a budget that a count followed by a separate record would let
    /// it pass. On PostgreSQL each key is locked until the transaction ends (an advisory
    /// lock, taken in key order); on SQLite the one writer runs one transaction at a time.
    pub async fn spend_hourly(
        &self,
        keys: &[(&str, u64)],
        now: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        if self.0.get_database_backend() == DbBackend::Postgres {
            let mut sorted: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            sorted.sort_unstable();
            sorted.dedup();
            for key in sorted {
                self.0
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                        [key.into()],
                    ))
                    .await?;
            }
        }
        let hour = chrono::Duration::hours(1);
        let mut wait: Option<chrono::Duration> = None;
        for (key, limit) in keys {
            let (n, _) = self.since(key, now - hour).await?;
            if n >= *limit {
                let oldest = self.oldest_since(key, now - hour).await?;
                // No oldest row means the requests left the hour between the two reads.
                let free_at = oldest.map_or(now, |at| at + hour);
                wait = Some(wait.map_or(free_at - now, |w| w.max(free_at - now)));
            }
        }
        if let Some(w) = wait {
            return Ok(Some(
                u64::try_from(Ord::max(w.num_seconds(), 1)).unwrap_or(1),
            ));
        }
        for (key, _) in keys {
            self.record(key, now).await?;
        }
        Ok(None)
    }

    /// Failed logins under `key` after `since` (strictly): how many, and the latest.
    pub async fn since(
        &self,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>)> {
        // Counted in the database: loading the rows made a much-attacked account's check cost
        // more than an unknown login's, which timing could tell apart.
        let row: Option<(i64, Option<DateTime<Utc>>)> = login_failure::Entity::find()
            .select_only()
            .column_as(Expr::col(login_failure::Column::Id).count(), "n")
            .column_as(login_failure::Column::At.max(), "latest")
            .filter(login_failure::Column::Key.eq(key))
            .filter(login_failure::Column::At.gt(since))
            .into_tuple()
            .one(self.0)
            .await?;
        Ok(row.map_or((0, None), |(n, latest)| {
            (u64::try_from(n).unwrap_or(0), latest)
        }))
    }

    /// The earliest entry under `key` after `since` (strictly).
    pub async fn oldest_since(
        &self,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Ok(login_failure::Entity::find()
            .filter(login_failure::Column::Key.eq(key))
            .filter(login_failure::Column::At.gt(since))
            .order_by_asc(login_failure::Column::At)
            .one(self.0)
            .await?
            .map(|r| r.at))
    }

    /// Forgets the failed logins under `key` (after a successful login or password reset).
    pub async fn clear(&self, key: &str) -> Result<()> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::Key.eq(key))
            .exec(self.0)
            .await?;
        Ok(())
    }
}
