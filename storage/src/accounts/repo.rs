//! [`Users`]: user rows and their roles. Its email-token and conflict-report queries live
//! beside it (`email_tokens.rs`, `conflicts.rs`).

use chrono::{DateTime, Utc};
use keyward_messages::{Email, UserId, Username};
use sea_orm::sea_query::{Alias, Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionSession, TransactionTrait,
};

use super::entities::{email_token, user, user_role};
use super::{NewUser, UserRecord};
use crate::error::parse_stored;
use crate::{Result, StorageError};

/// The accounts context's repository, over the pool (`store.users()`) or a transaction
/// (`tx.users()`): each query is written once and works in both.
pub struct Users<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> Users<'_, C> {
    pub async fn by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        user::Entity::find_by_id(id.0)
            .one(self.0)
            .await?
            .map(user_record)
            .transpose()
    }

    /// The accounts with these ids, in one query; unknown ids are absent.
    pub async fn by_ids(&self, ids: &[UserId]) -> Result<Vec<UserRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        user::Entity::find()
            .filter(user::Column::Id.is_in(ids.iter().map(|id| id.0)))
            .all(self.0)
            .await?
            .into_iter()
            .map(user_record)
            .collect()
    }

    /// The account of a mailbox: any spelling of it parses to the one `Email` looked up here.
    pub async fn by_email(&self, email: &Email) -> Result<Option<UserRecord>> {
        user::Entity::find()
            .filter(user::Column::EmailNormalized.eq(email.normalized()))
            .one(self.0)
            .await?
            .map(user_record)
            .transpose()
    }

    /// The account holding a username: the one whose name reads like it (its skeleton). A name
    /// that `m0005_profiles` left under a legacy key (it read like an older one) is found by
    /// its own spelling, in any case.
    pub async fn by_username(&self, username: &Username) -> Result<Option<UserRecord>> {
        let legacy = format!("legacy:{}", username.as_str().to_lowercase());
        let rows = user::Entity::find()
            .filter(user::Column::UsernameNormalized.is_in([username.normalized(), legacy.clone()]))
            .all(self.0)
            .await?;
        let pick = rows
            .iter()
            .position(|m| m.username_normalized.as_deref() == Some(legacy.as_str()))
            .or((!rows.is_empty()).then_some(0));
        pick.map(|i| user_record(rows[i].clone())).transpose()
    }

    /// The user's roles, in alphabetical order.
    pub async fn roles_of(&self, id: UserId) -> Result<Vec<String>> {
        Ok(user_role::Entity::find()
            .filter(user_role::Column::UserId.eq(id.0))
            .order_by_asc(user_role::Column::Role)
            .all(self.0)
            .await?
            .into_iter()
            .map(|r| r.role)
            .collect())
    }

    /// The roles of each of `ids` that holds any, as (user, role) pairs by role name.
    pub async fn roles_of_many(&self, ids: &[UserId]) -> Result<Vec<(UserId, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = ids.iter().map(|u| u.0).collect();
        let among = crate::lists::uuid_among(
            self.0.get_database_backend(),
            user_role::Column::UserId,
            r#""user_roles"."user_id""#,
            &ids,
        );
        Ok(user_role::Entity::find()
            .filter(among)
            .order_by_asc(user_role::Column::Role)
            .all(self.0)
            .await?
            .into_iter()
            .map(|r| (UserId(r.user_id), r.role))
            .collect())
    }

    /// Inside a transaction: holds the user's row until it ends, so that two units of work on
    /// one account run one after the other instead of locking each other's rows in turn (a
    /// deadlock on PostgreSQL). SQLite has one writer at a time anyway.
    pub async fn lock(&self, id: UserId) -> Result<()> {
        if self.0.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            user::Entity::find_by_id(id.0)
                .lock_exclusive()
                .one(self.0)
                .await?;
        }
        Ok(())
    }

    /// Conflict { what: "email" | "username" } when either is taken.
    pub async fn insert(&self, u: NewUser) -> Result<()> {
        user::ActiveModel {
            id: Set(u.id.0),
            email: Set(u.email.as_str().to_owned()),
            email_normalized: Set(u.email.normalized()),
            username: Set(u.username.as_ref().map(|n| n.as_str().to_owned())),
            username_normalized: Set(u.username.as_ref().map(Username::normalized)),
            password_hash: Set(u.password_hash),
            email_verified: Set(u.email_verified),
            locale: Set(u.locale),
            blocked: Set(false),
            created_at: Set(u.now),
            updated_at: Set(u.now),
            password_via_reset: Set(false),
            password_set: Set(true),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    pub async fn grant_role(&self, id: UserId, role: &str, now: DateTime<Utc>) -> Result<()> {
        user_role::ActiveModel {
            user_id: Set(id.0),
            role: Set(role.to_owned()),
            granted_at: Set(now),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    pub async fn set_email_verified(&self, id: UserId, now: DateTime<Utc>) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::EmailVerified, Expr::value(true))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Sets the blocked flag; false when it already had that value.
    pub async fn set_blocked(&self, id: UserId, blocked: bool, now: DateTime<Utc>) -> Result<bool> {
        let res = user::Entity::update_many()
            .col_expr(user::Column::Blocked, Expr::value(blocked))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id.0))
            .filter(user::Column::Blocked.ne(blocked))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Records how the password was last set: through an email link (`true`) or by its
    /// owner with the old one (`false`).
    pub async fn set_password_via_reset(&self, id: UserId, via_reset: bool) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::PasswordViaReset, Expr::value(via_reset))
            .filter(user::Column::Id.eq(id.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    pub async fn set_password_hash(
        &self,
        id: UserId,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .col_expr(user::Column::PasswordSet, Expr::value(true))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Marks `id`'s password as one nobody knows (an account a social login made).
    pub async fn set_no_password(&self, id: UserId) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::PasswordSet, Expr::value(false))
            .filter(user::Column::Id.eq(id.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Whether `id` has a password its owner set (false for an account a social login made,
    /// until a password is set through reset or change).
    pub async fn has_password(&self, id: UserId) -> Result<bool> {
        Ok(user::Entity::find_by_id(id.0)
            .one(self.0)
            .await?
            .is_some_and(|u| u.password_set))
    }
}

impl<C: ConnectionTrait> Users<'_, C> {
    /// User ids after `after` in id order, at most `limit` (for walking every account).
    pub async fn ids_after(&self, after: Option<UserId>, limit: u64) -> Result<Vec<UserId>> {
        let mut q = user::Entity::find().select_only().column(user::Column::Id);
        if let Some(a) = after {
            q = q.filter(user::Column::Id.gt(a.0));
        }
        Ok(q.order_by_asc(user::Column::Id)
            .limit(limit)
            .into_tuple::<uuid::Uuid>()
            .all(self.0)
            .await?
            .into_iter()
            .map(UserId)
            .collect())
    }

    /// Sets the language of the user's emails.
    pub async fn set_locale(&self, id: UserId, locale: &str, now: DateTime<Utc>) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::Locale, Expr::value(locale))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Deletes the user row with its roles and one-time tokens: the account's email and
    /// username are free afterwards. True when there was a row.
    pub async fn erase(&self, id: UserId) -> Result<bool> {
        email_token::Entity::delete_many()
            .filter(email_token::Column::UserId.eq(id.0))
            .exec(self.0)
            .await?;
        user_role::Entity::delete_many()
            .filter(user_role::Column::UserId.eq(id.0))
            .exec(self.0)
            .await?;
        let r = user::Entity::delete_by_id(id.0).exec(self.0).await?;
        Ok(r.rows_affected > 0)
    }
}

impl<C: ConnectionTrait + TransactionTrait> Users<'_, C> {
    /// Sets the username (None clears it). When another account holds the name, the account
    /// is left with none and the answer is false; the rest of the unit of work goes on.
    pub async fn set_username(
        &self,
        id: UserId,
        username: Option<&Username>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let set = |name: Option<String>, key: Option<String>| {
            user::Entity::update_many()
                .col_expr(user::Column::Username, Expr::value(name))
                .col_expr(user::Column::UsernameNormalized, Expr::value(key))
                .col_expr(user::Column::UpdatedAt, Expr::value(now))
                .filter(user::Column::Id.eq(id.0))
        };
        let name = username.map(|u| u.as_str().to_owned());
        let key = username.map(Username::normalized);
        // NOTE: a savepoint, because on PostgreSQL a unique violation aborts the whole
        // transaction; rolling back to it keeps the rest of the unit of work.
        let sp = self.0.begin().await?;
        match set(name, key).exec(&sp).await.map_err(StorageError::from) {
            Ok(_) => {
                sp.commit().await?;
                Ok(true)
            }
            Err(StorageError::Conflict { .. }) => {
                sp.rollback().await?;
                set(None, None).exec(self.0).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// A user row as a record; a username that no longer parses is `Corrupt`. An address that no
/// longer parses is one `m0004_canonical_email` left as it was (and reported): it loads as
/// stored, so the account keeps working until an operator fixes it.
/// What the admin user listing asks for; every part optional.
#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    /// The start of the email address or username, any case.
    pub q: Option<String>,
    pub status: Option<UserStatusFilter>,
    /// Holders of this role.
    pub role: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
}

/// A user's standing, as the admin listing filters by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatusFilter {
    /// Verified, not blocked, no deletion pending.
    Active,
    Unverified,
    Blocked,
    /// A self-deletion waits for its grace period to end.
    Deleting,
}

fn deleting_ids() -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(Alias::new("user_id"))
        .from(Alias::new("profiles"))
        .and_where(Expr::col(Alias::new("deletion_due_at")).is_not_null())
        .to_owned()
}

impl<C: ConnectionTrait> Users<'_, C> {
    /// Users matching `f`, oldest first, after the place `after` (created_at, id) of an
    /// earlier page; each with whether a deletion is pending.
    pub async fn admin_list(
        &self,
        f: &UserFilter,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: u64,
    ) -> Result<Vec<(UserRecord, bool)>> {
        use sea_orm::sea_query::{Condition, Func, LikeExpr, Query};
        let mut q = user::Entity::find();
        if let Some(text) = &f.q {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let like = || LikeExpr::new(format!("{escaped}%")).escape('\\');
            q = q.filter(
                Condition::any()
                    .add(user::Column::EmailNormalized.like(like()))
                    .add(Expr::expr(Func::lower(Expr::col(user::Column::Username))).like(like())),
            );
        }
        match f.status {
            Some(UserStatusFilter::Unverified) => {
                q = q.filter(user::Column::EmailVerified.eq(false));
            }
            Some(UserStatusFilter::Blocked) => q = q.filter(user::Column::Blocked.eq(true)),
            Some(UserStatusFilter::Deleting) => {
                q = q.filter(user::Column::Id.in_subquery(deleting_ids()));
            }
            Some(UserStatusFilter::Active) => {
                q = q
                    .filter(user::Column::EmailVerified.eq(true))
                    .filter(user::Column::Blocked.eq(false))
                    .filter(user::Column::Id.not_in_subquery(deleting_ids()));
            }
            None => {}
        }
        if let Some(role) = &f.role {
            let holders = Query::select()
                .column(user_role::Column::UserId)
                .from(user_role::Entity)
                .and_where(user_role::Column::Role.eq(role.as_str()))
                .to_owned();
            q = q.filter(user::Column::Id.in_subquery(holders));
        }
        if let Some(t) = f.created_after {
            q = q.filter(user::Column::CreatedAt.gt(t));
        }
        if let Some((at, id)) = after {
            q = q.filter(
                Condition::any().add(user::Column::CreatedAt.gt(at)).add(
                    Condition::all()
                        .add(user::Column::CreatedAt.eq(at))
                        .add(user::Column::Id.gt(id.0)),
                ),
            );
        }
        let rows = q
            .order_by_asc(user::Column::CreatedAt)
            .order_by_asc(user::Column::Id)
            .limit(limit)
            .all(self.0)
            .await?;
        let ids: Vec<uuid::Uuid> = rows.iter().map(|m| m.id).collect();
        let deleting: Vec<uuid::Uuid> = if ids.is_empty() {
            Vec::new()
        } else {
            let stmt = Query::select()
                .column(Alias::new("user_id"))
                .from(Alias::new("profiles"))
                .and_where(Expr::col(Alias::new("deletion_due_at")).is_not_null())
                .and_where(Expr::col(Alias::new("user_id")).is_in(ids))
                .to_owned();
            let backend = self.0.get_database_backend();
            self.0
                .query_all_raw(backend.build(&stmt))
                .await?
                .iter()
                .filter_map(|r| r.try_get::<uuid::Uuid>("", "user_id").ok())
                .collect()
        };
        rows.into_iter()
            .map(|m| {
                let d = deleting.contains(&m.id);
                user_record(m).map(|u| (u, d))
            })
            .collect()
    }
}

pub(crate) fn user_record(m: user::Model) -> Result<UserRecord> {
    let email = Email::parse("email", &m.email).unwrap_or_else(|e| {
        tracing::debug!(user_id = %m.id, code = %e.code, "a stored address from before the canonical rule");
        Email::stored_before_canonical(&m.email)
    });
    let username = m
        .username
        .as_deref()
        .map(|u| parse_stored("users", m.id, "username", Username::parse("username", u)))
        .transpose()?;
    Ok(UserRecord {
        id: UserId(m.id),
        email,
        username,
        password_hash: m.password_hash,
        email_verified: m.email_verified,
        locale: m.locale,
        blocked: m.blocked,
        created_at: m.created_at,
        password_via_reset: m.password_via_reset,
    })
}
