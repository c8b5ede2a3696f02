//! [`LoginFailures`]: the failed-login rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
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
