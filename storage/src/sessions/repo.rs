//! [`Sessions`]: session rows and refresh tokens.

use chrono::{DateTime, Utc};
use keyward_messages::{SessionId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx;
use std::collections::HashSet;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::entities::{refresh_token, session};
use super::{RefreshTokenRecord, Rotation, SessionRecord};
use crate::accounts::entities::user;
use crate::accounts::user_record;
use crate::lists::ROWS_INLINE;
use crate::{Result, UserRecord};

/// Whether `texts` can go as one list: on PostgreSQL a comma-joined one, so none may hold a
/// comma (token hashes are hex digests; anything else goes a placeholder per value).
fn listable<'t>(backend: DbBackend, mut texts: impl Iterator<Item = &'t str>) -> bool {
    backend != DbBackend::Postgres || texts.all(|t| !t.contains(','))
}

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

    /// The refresh tokens with these hashes, each with its session and the session's user
    /// (`None` when the account is gone), in one query: what a group of refreshes reads
    /// first. Unknown hashes are absent.
    pub async fn refresh_tokens_with_holders(
        &self,
        hashes: &[String],
    ) -> Result<Vec<(RefreshTokenRecord, SessionRecord, Option<UserRecord>)>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.0.get_database_backend();
        let among = if hashes.len() <= ROWS_INLINE
            || !listable(backend, hashes.iter().map(String::as_str))
        {
            refresh_token::Column::TokenHash.is_in(hashes.iter().map(String::as_str))
        } else if backend == DbBackend::Postgres {
            Expr::cust_with_values(
                r#""refresh_tokens"."token_hash" = ANY(string_to_array($1, ','))"#,
                [hashes.join(",")],
            )
        } else {
            Expr::cust_with_values(
                r#""refresh_tokens"."token_hash" IN (SELECT value FROM json_each(?))"#,
                [serde_json::Value::from(hashes).to_string()],
            )
        };
        let rows = refresh_token::Entity::find()
            .filter(among)
            .find_also_related(session::Entity)
            .and_also_related(user::Entity)
            .all(self.0)
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for (t, s, u) in rows {
            let Some(s) = s else { continue };
            let u = u.map(user_record).transpose()?;
            found.push((refresh_record(t), session_record(s), u));
        }
        Ok(found)
    }

    pub async fn refresh_token_by_hash(&self, hash: &str) -> Result<Option<RefreshTokenRecord>> {
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .one(self.0)
            .await?
            .map(refresh_record))
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

impl Sessions<'_, DatabaseConnection> {
    /// Group commit of rotations, committed before it returns: marks each presented token
    /// not rotated yet, adds the successors of those it marked, and records the use of their
    /// sessions (idle expiry moved to `idle_cap`, or the session's absolute expiry if sooner).
    /// Returns the tokens it marked; any other was rotated before (the caller takes the grace
    /// or reuse path for it). The token ids must be distinct.
    ///
    /// One call to the database however many rotations: on PostgreSQL one statement (its
    /// parts in CTEs, one round trip), on SQLite the whole transaction, BEGIN to COMMIT, as
    /// one string to the connection's thread (each call there is a hand-off between threads,
    /// the bulk of a small write's cost).
    pub async fn rotate_many(
        &self,
        rotations: &[Rotation],
        now: DateTime<Utc>,
        idle_cap: DateTime<Utc>,
    ) -> Result<HashSet<Uuid>> {
        if rotations.is_empty() {
            return Ok(HashSet::new());
        }
        let backend = self.0.get_database_backend();
        // $1 now, $2 the idle cap, then the rows (successor id, successor hash, presented id):
        // numbered, so that each of SQLite's statements binds the same values.
        let mut values: Vec<sea_orm::Value> = vec![now.into(), idle_cap.into()];
        // `v`: the rows; `presented`: the presented ids alone (for SQLite's statements).
        let (v, presented) = if rotations.len() <= ROWS_INLINE
            || !listable(backend, rotations.iter().map(|r| r.successor_hash.as_str()))
        {
            let mut rows = Vec::with_capacity(rotations.len());
            let mut presented = Vec::with_capacity(rotations.len());
            for (i, r) in rotations.iter().enumerate() {
                let n = 3 + 3 * i;
                rows.push(format!("(${n}, ${}, ${})", n + 1, n + 2));
                presented.push(format!("${}", n + 2));
                values.extend([
                    Uuid::now_v7().into(),
                    r.successor_hash.clone().into(),
                    r.token_id.into(),
                ]);
            }
            (format!("VALUES {}", rows.join(", ")), presented.join(", "))
        } else if backend == DbBackend::Postgres {
            let list = |f: &dyn Fn(&Rotation) -> String| -> sea_orm::Value {
                rotations.iter().map(f).collect::<Vec<_>>().join(",").into()
            };
            values.extend([
                list(&|_| Uuid::now_v7().to_string()),
                list(&|r| r.successor_hash.clone()),
                list(&|r| r.token_id.to_string()),
            ]);
            let v = "SELECT u.id::uuid, u.hash, u.presented::uuid FROM unnest(\
                     string_to_array($3, ','), string_to_array($4, ','), string_to_array($5, ',')) \
                     AS u (id, hash, presented)";
            (v.to_owned(), String::new())
        } else {
            let rows: Vec<serde_json::Value> = rotations
                .iter()
                .map(|r| {
                    serde_json::json!([
                        Uuid::now_v7().simple().to_string(),
                        r.successor_hash,
                        r.token_id.simple().to_string()
                    ])
                })
                .collect();
            values.push(serde_json::Value::Array(rows).to_string().into());
            (
                "SELECT unhex(value ->> 0), value ->> 1, unhex(value ->> 2) FROM json_each($3)"
                    .to_owned(),
                "SELECT unhex(value ->> 2) FROM json_each($3)".to_owned(),
            )
        };
        let idle = "CASE WHEN expires_at < $2 THEN expires_at ELSE $2 END";
        let marked = if backend == DbBackend::Postgres {
            // NOTE: one statement is one transaction: a concurrent rotation of the same
            // token (another node) waits on the row lock and then finds it rotated.
            let sql = format!(
                "WITH v (id, hash, presented) AS ({v}), \
                 marked AS (UPDATE refresh_tokens SET rotated_at = $1 \
                   WHERE id IN (SELECT presented FROM v) AND rotated_at IS NULL \
                   RETURNING id, session_id), \
                 successors AS (INSERT INTO refresh_tokens (id, session_id, token_hash, created_at) \
                   SELECT v.id, marked.session_id, v.hash, $1 FROM v JOIN marked ON marked.id = v.presented), \
                 used AS (UPDATE sessions SET last_used_at = $1, idle_expires_at = {idle} \
                   WHERE id IN (SELECT session_id FROM marked)) \
                 SELECT id FROM marked"
            );
            self.0
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
        } else {
            // NOTE: the successors and the sessions' use are written before the tokens are
            // marked, for the tokens still unmarked: inside the one writer's transaction
            // nothing changes between the three, so they are the tokens the last one marks.
            let sql = format!(
                "BEGIN IMMEDIATE; \
                 UPDATE sessions SET last_used_at = $1, idle_expires_at = {idle} \
                   WHERE id IN (SELECT session_id FROM refresh_tokens \
                     WHERE id IN ({presented}) AND rotated_at IS NULL); \
                 WITH v (id, hash, presented) AS ({v}) \
                   INSERT INTO refresh_tokens (id, session_id, token_hash, created_at) \
                   SELECT v.id, t.session_id, v.hash, $1 FROM v \
                     JOIN refresh_tokens AS t ON t.id = v.presented WHERE t.rotated_at IS NULL; \
                 UPDATE refresh_tokens SET rotated_at = $1 \
                   WHERE id IN ({presented}) AND rotated_at IS NULL RETURNING id; \
                 COMMIT"
            );
            let pool = self.0.get_sqlite_connection_pool();
            let rows = sqlite_in_one_handoff(pool, None, sql, values).await?;
            return rows
                .iter()
                .map(|r| Ok(r.try_get::<Uuid>("", "id")?))
                .collect();
        };
        marked
            .iter()
            .map(|r| Ok(r.try_get::<Uuid>("", "id")?))
            .collect()
    }

    /// Group commit of rotations whose holders are not read yet, in one database call (one
    /// statement on PostgreSQL, one transaction in one hand-off on SQLite) on the connection
    /// `lease` holds, or one it takes and then holds: marks each presented token that is not
    /// rotated yet and whose session is live at `now` and whose user exists and is not
    /// blocked, adds the successors of those it marked, records their sessions' use as
    /// [`Sessions::rotate_many`] does, and returns every presented token found with its
    /// session and user as they were before the call, and whether it marked it. One round
    /// trip where a read and then [`Sessions::rotate_many`] take two; the caller learns the
    /// holder only after the token is rotated. Unknown hashes are absent. The presented hashes
    /// must be distinct.
    pub async fn rotate_presented(
        &self,
        lease: &mut ConnectionLease,
        rotations: &[super::Succession],
        now: DateTime<Utc>,
        idle_cap: DateTime<Utc>,
    ) -> Result<Vec<super::Presented>> {
        use sea_orm::QueryTrait;
        let backend = self.0.get_database_backend();
        if rotations.is_empty() {
            return Ok(Vec::new());
        }
        // What the tokens, their sessions and users were before the statement: the snapshot
        // every part of one statement reads. Its own placeholders come first.
        let found = refresh_token::Entity::find()
            .filter(
                refresh_token::Column::TokenHash
                    .is_in(rotations.iter().map(|r| r.presented_hash.as_str())),
            )
            .find_also_related(session::Entity)
            .and_also_related(user::Entity)
            .build(backend);
        let mut values = found.values.map(|v| v.0).unwrap_or_default();
        let n = values.len();
        let (at, cap) = (n + 1, n + 2);
        values.extend([now.into(), idle_cap.into()]);
        let rows: Vec<String> = rotations
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let k = n + 3 + 3 * i;
                values.extend([
                    Uuid::now_v7().into(),
                    r.successor_hash.clone().into(),
                    r.presented_hash.clone().into(),
                ]);
                format!("(${k}, ${}, ${})", k + 1, k + 2)
            })
            .collect();
        // A presented token that may rotate: not rotated yet, its session live, its user there
        // and not blocked.
        let usable = format!(
            "rotated_at IS NULL \
             AND EXISTS (SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id \
               WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL \
               AND s.idle_expires_at > ${at} AND s.expires_at > ${at} AND NOT u.blocked)"
        );
        let idle = format!("CASE WHEN expires_at < ${cap} THEN expires_at ELSE ${cap} END");
        if backend != DbBackend::Postgres {
            // NOTE: the snapshot first, then the session's use and the successors for the
            // tokens still usable, then their marks: inside the one writer's transaction
            // nothing else changes between them (the idle move keeps a live session live), so
            // the marks are those the earlier two wrote for. The snapshot's `?` placeholders
            // take the values before the numbered ones.
            let presented = (0..rotations.len())
                .map(|i| format!("${}", n + 5 + 3 * i))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "BEGIN IMMEDIATE; \
                 {select}; \
                 UPDATE sessions SET last_used_at = ${at}, idle_expires_at = {idle} \
                   WHERE id IN (SELECT session_id FROM refresh_tokens \
                     WHERE token_hash IN ({presented}) AND {usable}); \
                 WITH v (id, hash, presented) AS (VALUES {rows}) \
                   INSERT INTO refresh_tokens (id, session_id, token_hash, created_at) \
                   SELECT v.id, refresh_tokens.session_id, v.hash, ${at} FROM v \
                     JOIN refresh_tokens ON refresh_tokens.token_hash = v.presented \
                     WHERE {usable}; \
                 UPDATE refresh_tokens SET rotated_at = ${at} \
                   WHERE token_hash IN ({presented}) AND {usable} RETURNING id; \
                 COMMIT",
                select = found.sql,
                rows = rows.join(", "),
            );
            let pool = self.0.get_sqlite_connection_pool();
            let rows = sqlite_in_one_handoff(pool, Some(lease), sql, values).await?;
            // NOTE: the marks' rows are the only ones of one column.
            let (marks, found): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|r| r.column_names().len() == 1);
            let marked = marks
                .iter()
                .map(|r| r.try_get::<Uuid>("", "id"))
                .collect::<std::result::Result<HashSet<_>, _>>()?;
            return presented_rows(found, |_, token| Ok(marked.contains(&token.id)));
        }
        let select = found.sql.replacen(
            "SELECT ",
            r#"SELECT "refresh_tokens"."id" IN (SELECT id FROM marked) AS "rotated_now", "#,
            1,
        );
        // NOTE: one statement is one transaction: a concurrent rotation of the same token
        // (another group, another node) waits on the row lock and then finds it rotated.
        let sql = format!(
            "WITH v (id, hash, presented) AS (VALUES {rows}), \
             marked AS (UPDATE refresh_tokens SET rotated_at = ${at} \
               WHERE token_hash IN (SELECT presented FROM v) AND {usable} \
               RETURNING id, session_id, token_hash), \
             successors AS (INSERT INTO refresh_tokens (id, session_id, token_hash, created_at) \
               SELECT v.id, marked.session_id, v.hash, ${at} FROM v \
               JOIN marked ON marked.token_hash = v.presented), \
             used AS (UPDATE sessions SET last_used_at = ${at}, idle_expires_at = {idle} \
               WHERE id IN (SELECT session_id FROM marked)) \
             {select}",
            rows = rows.join(", "),
        );
        let rows = postgres_held(self.0.get_postgres_connection_pool(), lease, sql, values).await?;
        presented_rows(rows, |row, _| Ok(row.try_get("", "rotated_now")?))
    }
}

/// [`Sessions::rotate_presented`]'s snapshot rows (`A_` the token, `B_` its session, `C_` its
/// user), each with whether the call marked it.
fn presented_rows(
    rows: Vec<sea_orm::QueryResult>,
    marked: impl Fn(&sea_orm::QueryResult, &refresh_token::Model) -> Result<bool>,
) -> Result<Vec<super::Presented>> {
    use sea_orm::FromQueryResult;
    let mut presented = Vec::with_capacity(rows.len());
    for row in rows {
        let token = refresh_token::Model::from_query_result(&row, "A_")?;
        let Some(s) = session::Model::from_query_result_optional(&row, "B_")? else {
            continue;
        };
        let user = user::Model::from_query_result_optional(&row, "C_")?
            .map(user_record)
            .transpose()?;
        presented.push(super::Presented {
            marked: marked(&row, &token)?,
            token: refresh_record(token),
            session: session_record(s),
            user,
        });
    }
    Ok(presented)
}

/// A connection kept between calls of [`Sessions::rotate_presented`] by a caller that has
/// more to rotate: sqlx pings a connection each time it goes back to the pool (on SQLite one
/// more hand-off to its thread, on PostgreSQL one more round trip), and the next call waits
/// for it. On SQLite it holds the one writer: whoever holds it must give it back
/// ([`ConnectionLease::release`]) as soon as it has nothing queued, and after a few
/// milliseconds even when it has, since every other write of the node waits for it. On
/// PostgreSQL it holds one of the connections kept for rotations (`Store::rotations`).
#[derive(Default)]
pub struct ConnectionLease(Option<(Held, std::time::Instant)>);

enum Held {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl ConnectionLease {
    /// How long the connection has been held, if it is.
    pub fn held_for(&self) -> Option<std::time::Duration> {
        self.0.as_ref().map(|(_, since)| since.elapsed())
    }

    /// Gives the connection back to its pool.
    pub fn release(&mut self) {
        self.0 = None;
    }
}

/// Binds `values` (a rotation's: instants, ids, texts) to `query` in order.
macro_rules! bind_rotation_values {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for v in $values {
            query = match v {
                sea_orm::Value::ChronoDateTimeUtc(t) => query.bind(t),
                sea_orm::Value::Uuid(u) => query.bind(u),
                sea_orm::Value::String(s) => query.bind(s),
                other => {
                    return Err(sea_orm::DbErr::Custom(format!(
                        "not a rotation's value: {other:?}"
                    ))
                    .into())
                }
            };
        }
        query
    }};
}

fn acquire_err(e: sqlx::Error) -> sea_orm::DbErr {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Conn(RuntimeErr::SqlxError(e.into())),
    }
}

fn query_err(e: sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into()))
}

/// Runs `sql`, one statement, on PostgreSQL through the connection `lease` holds (or one taken
/// from `pool`, then held), and returns its rows. After an error the connection goes back to
/// the pool (which closes it if it is broken).
async fn postgres_held(
    pool: &sqlx::PgPool,
    lease: &mut ConnectionLease,
    sql: String,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<sea_orm::QueryResult>> {
    let query = bind_rotation_values!(sqlx::query(sqlx::AssertSqlSafe(sql)), values);
    let (mut conn, since) = match lease.0.take() {
        Some((Held::Postgres(conn), since)) => (conn, since),
        _ => (
            pool.acquire().await.map_err(acquire_err)?,
            std::time::Instant::now(),
        ),
    };
    let rows = query.fetch_all(&mut *conn).await.map_err(query_err)?;
    lease.0 = Some((Held::Postgres(conn), since));
    Ok(rows.into_iter().map(sea_orm::QueryResult::from).collect())
}

/// Runs `sql`, a whole transaction (BEGIN … COMMIT) in one string, on the SQLite writer in
/// one hand-off to its thread, and returns the rows of all its statements. With a `lease`,
/// the writer it holds (or takes from the pool) stays in it after a success. sqlx does not know of a
/// transaction begun inside a string, so the connection goes back to the pool only once no
/// transaction is open on it: after the COMMIT, or after an error once a ROLLBACK and an
/// empty transaction went through. Otherwise, or if this future is dropped midway, the
/// connection is closed, which rolls back whatever the string left open (the pool opens
/// another; on an in-memory database that is a new, empty one).
async fn sqlite_in_one_handoff(
    pool: &sqlx::SqlitePool,
    mut lease: Option<&mut ConnectionLease>,
    sql: String,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<sea_orm::QueryResult>> {
    use sea_orm::DbErr;
    /// Closed on drop unless taken out first.
    struct Untracked(Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>);
    impl Drop for Untracked {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                c.close_on_drop();
            }
        }
    }
    let query = bind_rotation_values!(sqlx::query(sqlx::AssertSqlSafe(sql)), values);
    let (conn, since) = match lease.as_mut().and_then(|l| l.0.take()) {
        Some((Held::Sqlite(conn), since)) => (conn, since),
        _ => (
            pool.acquire().await.map_err(acquire_err)?,
            std::time::Instant::now(),
        ),
    };
    let mut held = Untracked(Some(conn));
    let Some(conn) = held.0.as_mut() else {
        return Err(DbErr::Custom("the writer went missing".to_owned()).into());
    };
    match query.fetch_all(&mut **conn).await {
        Ok(rows) => {
            let conn = held.0.take();
            if let (Some(lease), Some(conn)) = (lease, conn) {
                lease.0 = Some((Held::Sqlite(conn), since));
            }
            Ok(rows.into_iter().map(sea_orm::QueryResult::from).collect())
        }
        Err(e) => {
            // NOTE: the ROLLBACK fails when the error already ended the transaction; the
            // empty one after it succeeds only when none is open.
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
                .execute(&mut **conn)
                .await;
            if sqlx::raw_sql(sqlx::AssertSqlSafe("BEGIN; ROLLBACK"))
                .execute(&mut **conn)
                .await
                .is_ok()
            {
                drop(held.0.take());
            }
            Err(query_err(e).into())
        }
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
