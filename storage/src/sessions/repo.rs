//! [`Sessions`]: session rows and refresh tokens.

use chrono::{DateTime, Utc};
use keyward_messages::{SessionId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{refresh_token, session};
use super::{RefreshTokenRecord, Rotation, SessionRecord};
use crate::Result;

/// The sessions context's repository, over the pool (`store.sessions()`) or a transaction
/// (`tx.sessions()`).
pub struct Sessions<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> Sessions<'_, C> {
    pub async fn insert(&self, s: &SessionRecord) -> Result<()> {
        session::ActiveModel {
            id: Set(s.id.0),
            user_id: Set(s.user_id.0),
            created_at: Set(s.created_at),
            last_used_at: Set(s.last_used_at),
            idle_expires_at: Set(s.idle_expires_at),
            expires_at: Set(s.expires_at),
            revoked_at: Set(s.revoked_at),
            revoke_reason: Set(None),
            user_agent: Set(s.user_agent.clone()),
            ip: Set(s.ip.clone()),
            amr: Set(s.amr.join(",")),
            acr: Set(s.acr.clone()),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Deletes every session of `user`, live or not, with its refresh tokens (erasure).
    pub async fn erase_all_of(&self, user: UserId) -> Result<()> {
        let ids: Vec<Uuid> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::UserId.eq(user.0))
            .into_tuple()
            .all(self.0)
            .await?;
        for chunk in ids.chunks(500) {
            refresh_token::Entity::delete_many()
                .filter(refresh_token::Column::SessionId.is_in(chunk.iter().copied()))
                .exec(self.0)
                .await?;
        }
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// The session, live or not.
    pub async fn by_id(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        Ok(session::Entity::find_by_id(id.0)
            .one(self.0)
            .await?
            .map(session_record))
    }

    /// The user's live sessions, newest first.
    pub async fn live_of(&self, id: UserId, now: DateTime<Utc>) -> Result<Vec<SessionRecord>> {
        Ok(session::Entity::find()
            .filter(session::Column::UserId.eq(id.0))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(session::Column::IdleExpiresAt.gt(now))
            .order_by_desc(session::Column::CreatedAt)
            .all(self.0)
            .await?
            .into_iter()
            .map(session_record)
            .collect())
    }

    /// When each of `users` last logged in (opened a session), for those who ever did.
    pub async fn last_logins(&self, users: &[UserId]) -> Result<Vec<(UserId, DateTime<Utc>)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(uuid::Uuid, DateTime<Utc>)> = session::Entity::find()
            .select_only()
            .column(session::Column::UserId)
            .column_as(session::Column::CreatedAt.max(), "last")
            .filter(session::Column::UserId.is_in(users.iter().map(|u| u.0)))
            .group_by(session::Column::UserId)
            .into_tuple()
            .all(self.0)
            .await?;
        Ok(rows.into_iter().map(|(u, t)| (UserId(u), t)).collect())
    }

    /// Records a use of the session and moves its idle expiry.
    pub async fn touch(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<()> {
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .col_expr(session::Column::IdleExpiresAt, Expr::value(idle_expires_at))
            .filter(session::Column::Id.eq(id.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Revokes one session; false when it was already revoked.
    pub async fn revoke(&self, id: SessionId, now: DateTime<Utc>, reason: &str) -> Result<bool> {
        let res = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .col_expr(session::Column::RevokeReason, Expr::value(reason))
            .filter(session::Column::Id.eq(id.0))
            .filter(session::Column::RevokedAt.is_null())
            .exec(self.0)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Revokes every unrevoked session of a user except `keep`; returns the ones it revoked.
    pub async fn revoke_all_of(
        &self,
        id: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<SessionId>> {
        let mut q = session::Entity::find()
            .filter(session::Column::UserId.eq(id.0))
            .filter(session::Column::RevokedAt.is_null());
        if let Some(k) = keep {
            q = q.filter(session::Column::Id.ne(k.0));
        }
        let mut revoked = Vec::new();
        for s in q.all(self.0).await? {
            if self.revoke(SessionId(s.id), now, reason).await? {
                revoked.push(SessionId(s.id));
            }
        }
        Ok(revoked)
    }

    /// Adds a token to the session's family; its hash is unique (a second one is `Conflict`).
    pub async fn insert_refresh_token(
        &self,
        session_id: SessionId,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id.0),
            token_hash: Set(hash.to_owned()),
            created_at: Set(now),
            rotated_at: Set(None),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// The refresh tokens with these hashes, each with its session, in one query (what a
    /// group of refreshes reads first). Unknown hashes are absent.
    pub async fn refresh_tokens_with_sessions(
        &self,
        hashes: &[String],
    ) -> Result<Vec<(RefreshTokenRecord, SessionRecord)>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.is_in(hashes.iter().map(String::as_str)))
            .find_also_related(session::Entity)
            .all(self.0)
            .await?
            .into_iter()
            .filter_map(|(t, s)| Some((refresh_record(t), session_record(s?))))
            .collect())
    }

    pub async fn refresh_token_by_hash(&self, hash: &str) -> Result<Option<RefreshTokenRecord>> {
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .one(self.0)
            .await?
            .map(refresh_record))
    }

    /// Group commit of rotations, inside the caller's transaction: marks each presented token
    /// not rotated yet, adds the successors of those it marked, and records the use of their
    /// sessions (idle expiry moved to `idle_cap`, or the session's absolute expiry if sooner).
    /// Returns the tokens it marked; any other was rotated before (the caller takes the grace
    /// or reuse path for it). Three statements however many rotations.
    pub async fn rotate_many(
        &self,
        rotations: &[Rotation],
        now: DateTime<Utc>,
        idle_cap: DateTime<Utc>,
    ) -> Result<std::collections::HashSet<Uuid>> {
        use sea_orm::sea_query::{ExprTrait, PostgresQueryBuilder, Query, SqliteQueryBuilder};
        if rotations.is_empty() {
            return Ok(Default::default());
        }
        let mut mark = Query::update();
        mark.table(refresh_token::Entity)
            .value(refresh_token::Column::RotatedAt, now)
            .and_where(
                Expr::col(refresh_token::Column::Id).is_in(rotations.iter().map(|r| r.token_id)),
            )
            .and_where(Expr::col(refresh_token::Column::RotatedAt).is_null())
            .returning_col(refresh_token::Column::Id);
        let backend = self.0.get_database_backend();
        let (sql, values) = match backend {
            sea_orm::DbBackend::Postgres => mark.build(PostgresQueryBuilder),
            _ => mark.build(SqliteQueryBuilder),
        };
        let rows = self
            .0
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                backend, sql, values,
            ))
            .await?;
        let mut marked = std::collections::HashSet::with_capacity(rows.len());
        for r in &rows {
            marked.insert(r.try_get::<Uuid>("", "id")?);
        }
        let mut sessions = Vec::with_capacity(marked.len());
        let mut successors = Vec::with_capacity(marked.len());
        for r in rotations.iter().filter(|r| marked.contains(&r.token_id)) {
            sessions.push(r.session_id.0);
            successors.push(refresh_token::ActiveModel {
                id: Set(Uuid::now_v7()),
                session_id: Set(r.session_id.0),
                token_hash: Set(r.successor_hash.clone()),
                created_at: Set(now),
                rotated_at: Set(None),
            });
        }
        if successors.is_empty() {
            return Ok(marked);
        }
        refresh_token::Entity::insert_many(successors)
            .exec(self.0)
            .await?;
        let idle = Expr::case(
            Expr::col(session::Column::ExpiresAt).lt(idle_cap),
            Expr::col(session::Column::ExpiresAt),
        )
        .finally(Expr::value(idle_cap));
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .col_expr(session::Column::IdleExpiresAt, idle.into())
            .filter(session::Column::Id.is_in(sessions))
            .exec(self.0)
            .await?;
        Ok(marked)
    }

    /// Marks a refresh token rotated; false when another request rotated it first (the caller
    /// then takes the grace / reuse path instead of issuing a second successor).
    pub async fn mark_rotated(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let res = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RotatedAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(id))
            .filter(refresh_token::Column::RotatedAt.is_null())
            .exec(self.0)
            .await?;
        Ok(res.rows_affected == 1)
    }
}

fn session_record(m: session::Model) -> SessionRecord {
    SessionRecord {
        id: SessionId(m.id),
        user_id: UserId(m.user_id),
        created_at: m.created_at,
        last_used_at: m.last_used_at,
        idle_expires_at: m.idle_expires_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        user_agent: m.user_agent,
        ip: m.ip,
        amr: m
            .amr
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        acr: m.acr,
    }
}

fn refresh_record(m: refresh_token::Model) -> RefreshTokenRecord {
    RefreshTokenRecord {
        id: m.id,
        session_id: SessionId(m.session_id),
        token_hash: m.token_hash,
        created_at: m.created_at,
        rotated_at: m.rotated_at,
    }
}
