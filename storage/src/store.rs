//! The store (reads, connection, migrations) and its transactions (every write).

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyward_messages::events::Envelope;
use keyward_messages::{SessionId, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

use crate::entities::{
    audit, email_canonical_conflict, email_token, inbox, login_failure, outbox, refresh_token,
    session, signing_key, user, user_role,
};
use crate::migrations::Migrator;
use crate::records::*;
use crate::{Result, StorageError};

/// Key of the PostgreSQL advisory lock taken while migrating.
const MIGRATION_LOCK: i64 = 0x6b65_7977_6172_6401;

/// A pooled connection to the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects to `sqlite://…` or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self> {
        let sqlite = url.starts_with("sqlite:");
        let mut opts = ConnectOptions::new(url.to_owned());
        // NOTE: SQLite takes one writer at a time and a deferred transaction that upgrades to a
        // write fails with SQLITE_BUSY instead of waiting; one pooled connection serialises
        // statements (each is microseconds) and removes that failure mode.
        opts.max_connections(if sqlite { 1 } else { 16 })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        let db = Database::connect(opts).await?;
        if sqlite {
            db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
            db.execute_unprepared("PRAGMA synchronous=NORMAL").await?;
        }
        Ok(Self { db })
    }

    /// Applies pending migrations; returns how many ran. On PostgreSQL an advisory lock held
    /// for the transaction serialises nodes and workers that start at the same time.
    pub async fn migrate(&self) -> Result<usize> {
        self.migrate_until(None).await
    }

    /// Applies the pending migrations up to and including the one named `last` (none when it
    /// is not pending); returns how many ran. For rehearsing an upgrade from an older schema.
    pub async fn migrate_through(&self, last: &str) -> Result<usize> {
        self.migrate_until(Some(last)).await
    }

    async fn migrate_until(&self, last: Option<&str>) -> Result<usize> {
        /// How many pending migrations to run: all, or through the one named `last`.
        fn steps(pending: &[sea_orm_migration::Migration], last: Option<&str>) -> u32 {
            let n = match last {
                None => pending.len(),
                Some(name) => pending
                    .iter()
                    .position(|m| m.name() == name)
                    .map_or(0, |i| i + 1),
            };
            u32::try_from(n).unwrap_or(u32::MAX)
        }
        if self.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let tx = self.db.begin().await?;
            tx.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await?;
            let n = steps(&Migrator::get_pending_migrations(&tx).await?, last);
            if n > 0 {
                Migrator::up(&tx, Some(n)).await?;
            }
            tx.commit().await?;
            return Ok(n as usize);
        }
        let n = steps(&Migrator::get_pending_migrations(&self.db).await?, last);
        if n > 0 {
            Migrator::up(&self.db, Some(n)).await?;
        }
        Ok(n as usize)
    }

    /// PostgreSQL, where several nodes may share the outbox.
    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres
    }

    /// Fails when the database does not answer (for /readyz).
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(StorageError::from)
    }

    /// Starts a unit of work. Dropping the `Tx` without `commit` rolls it back.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            tx: self.db.begin().await?,
        })
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        user_by_id(&self.db, id).await
    }

    pub async fn user_by_email(&self, normalized: &str) -> Result<Option<UserRecord>> {
        Ok(user::Entity::find()
            .filter(user::Column::EmailNormalized.eq(normalized))
            .one(&self.db)
            .await?
            .map(user_record))
    }

    pub async fn user_by_username(&self, normalized: &str) -> Result<Option<UserRecord>> {
        Ok(user::Entity::find()
            .filter(user::Column::UsernameNormalized.eq(normalized))
            .one(&self.db)
            .await?
            .map(user_record))
    }

    pub async fn username_exists(&self, normalized: &str) -> Result<bool> {
        Ok(user::Entity::find()
            .filter(user::Column::UsernameNormalized.eq(normalized))
            .one(&self.db)
            .await?
            .is_some())
    }

    pub async fn roles_of(&self, id: UserId) -> Result<Vec<String>> {
        Ok(user_role::Entity::find()
            .filter(user_role::Column::UserId.eq(id.0))
            .order_by_asc(user_role::Column::Role)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.role)
            .collect())
    }

    pub async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        Ok(session::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .map(session_record))
    }

    /// The user's live sessions, newest first.
    pub async fn live_sessions_of(
        &self,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>> {
        Ok(session::Entity::find()
            .filter(session::Column::UserId.eq(id.0))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(session::Column::IdleExpiresAt.gt(now))
            .order_by_desc(session::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(session_record)
            .collect())
    }

    pub async fn refresh_token_by_hash(&self, hash: &str) -> Result<Option<RefreshTokenRecord>> {
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await?
            .map(refresh_record))
    }

    /// Every stored signing key, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        Ok(signing_key::Entity::find()
            .order_by_asc(signing_key::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| SigningKeyRecord {
                kid: m.kid,
                algorithm: m.algorithm,
                public_key: m.public_key,
                private_key_enc: m.private_key_enc,
                created_at: m.created_at,
                retired_at: m.retired_at,
            })
            .collect())
    }

    /// Unpublished outbox messages in commit order.
    pub async fn pending_outbox(&self, limit: u64) -> Result<Vec<OutboxRecord>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(outbox_record)
            .collect())
    }

    pub async fn outbox_backlog(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(&self.db)
            .await?)
    }

    pub async fn mark_published(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(now))
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn record_failed_attempt(&self, id: Uuid) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The user a live one-time token belongs to, without using it up (so work that needs no
    /// transaction, like hashing, can happen before [`Tx::consume_email_token`]).
    pub async fn email_token_user(
        &self,
        purpose: TokenPurpose,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>> {
        email_token_user(&self.db, purpose, hash, now).await
    }

    /// Failed logins under `key` since `since`: how many, and the latest.
    pub async fn login_failures_since(
        &self,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>)> {
        let rows = login_failure::Entity::find()
            .filter(login_failure::Column::Key.eq(key))
            .filter(login_failure::Column::At.gt(since))
            .order_by_desc(login_failure::Column::At)
            .all(&self.db)
            .await?;
        Ok((rows.len() as u64, rows.first().map(|r| r.at)))
    }

    /// The accounts the canonical-email migration left as they were and that are not resolved
    /// yet: each still exists with the address recorded then, and a collision still has two
    /// accounts (or its last one is not in canonical form). Oldest record first.
    pub async fn email_canonical_conflicts(&self) -> Result<Vec<EmailConflictRecord>> {
        let rows = email_canonical_conflict::Entity::find()
            .order_by_asc(email_canonical_conflict::Column::CreatedAt)
            .order_by_asc(email_canonical_conflict::Column::Canonical)
            .order_by_asc(email_canonical_conflict::Column::Email)
            .all(&self.db)
            .await?;
        let mut open = Vec::new();
        for r in rows {
            let Some(u) = user::Entity::find_by_id(r.user_id).one(&self.db).await? else {
                continue;
            };
            if u.email != r.email {
                continue;
            }
            let reason = EmailConflictReason::parse(&r.reason)
                .ok_or_else(|| StorageError::Corrupt(format!("conflict reason {:?}", r.reason)))?;
            let canonical_already = r
                .canonical
                .as_ref()
                .is_some_and(|c| *c == u.email && *c == u.email_normalized);
            let record = EmailConflictRecord {
                user_id: UserId(r.user_id),
                email: r.email,
                canonical: r.canonical,
                reason,
                recorded_at: r.created_at,
                blocked: u.blocked,
                email_verified: u.email_verified,
            };
            open.push((record, canonical_already));
        }
        // A collision is resolved once one account is left of it, in its canonical form.
        let members = |c: &Option<String>| open.iter().filter(|(o, _)| o.canonical == *c).count();
        let keep: Vec<bool> = open
            .iter()
            .map(|(r, canonical_already)| {
                r.reason != EmailConflictReason::Collision
                    || !canonical_already
                    || members(&r.canonical) > 1
            })
            .collect();
        Ok(open
            .into_iter()
            .zip(keep)
            .filter_map(|((r, _), k)| k.then_some(r))
            .collect())
    }

    /// Whether `consumer` already processed message `id` (consumers dedupe on this).
    pub async fn inbox_contains(&self, consumer: &str, id: Uuid) -> Result<bool> {
        Ok(inbox::Entity::find_by_id((consumer.to_owned(), id))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Records that `consumer` processed message `id`; a second record is a no-op.
    pub async fn inbox_record(&self, consumer: &str, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let row = inbox::ActiveModel {
            consumer: Set(consumer.to_owned()),
            message_id: Set(id),
            processed_at: Set(now),
        };
        match row.insert(&self.db).await.map_err(StorageError::from) {
            Ok(_) | Err(StorageError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// One transaction. Everything written through it, outbox messages included, commits or
/// rolls back together.
pub struct Tx {
    tx: DatabaseTransaction,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(StorageError::from)
    }

    /// Ends the unit of work without writing anything, before the caller goes on.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await.map_err(StorageError::from)
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        user_by_id(&self.tx, id).await
    }

    /// The user a live one-time token belongs to, without using it up.
    pub async fn email_token_user(
        &self,
        purpose: TokenPurpose,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>> {
        email_token_user(&self.tx, purpose, hash, now).await
    }

    /// Holds the user's row until this transaction ends, so that two units of work on one
    /// account run one after the other instead of locking each other's rows in turn (a
    /// deadlock on PostgreSQL). SQLite has one writer at a time anyway.
    pub async fn lock_user(&self, id: UserId) -> Result<()> {
        if self.tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            user::Entity::find_by_id(id.0)
                .lock_exclusive()
                .one(&self.tx)
                .await?;
        }
        Ok(())
    }

    /// Conflict { what: "email" | "username" } when either is taken.
    pub async fn insert_user(&self, u: NewUser) -> Result<()> {
        user::ActiveModel {
            id: Set(u.id.0),
            email: Set(u.email),
            email_normalized: Set(u.email_normalized),
            username: Set(u.username),
            username_normalized: Set(u.username_normalized),
            password_hash: Set(u.password_hash),
            email_verified: Set(u.email_verified),
            locale: Set(u.locale),
            blocked: Set(false),
            created_at: Set(u.now),
            updated_at: Set(u.now),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    pub async fn grant_role(&self, id: UserId, role: &str, now: DateTime<Utc>) -> Result<()> {
        user_role::ActiveModel {
            user_id: Set(id.0),
            role: Set(role.to_owned()),
            granted_at: Set(now),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    pub async fn set_email_verified(&self, id: UserId, now: DateTime<Utc>) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::EmailVerified, Expr::value(true))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id.0))
            .exec(&self.tx)
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
            .exec(&self.tx)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Sets the username (None clears it). When another account holds the name, the account
    /// is left with none and the answer is false.
    pub async fn set_username(
        &self,
        id: UserId,
        username: Option<&str>,
        normalized: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let set = |name: Option<&str>, key: Option<&str>| {
            user::Entity::update_many()
                .col_expr(user::Column::Username, Expr::value(name.map(str::to_owned)))
                .col_expr(
                    user::Column::UsernameNormalized,
                    Expr::value(key.map(str::to_owned)),
                )
                .col_expr(user::Column::UpdatedAt, Expr::value(now))
                .filter(user::Column::Id.eq(id.0))
        };
        // NOTE: a savepoint, because on PostgreSQL a unique violation aborts the whole
        // transaction; rolling back to it keeps the rest of the unit of work.
        let sp = self.tx.begin().await?;
        match set(username, normalized)
            .exec(&sp)
            .await
            .map_err(StorageError::from)
        {
            Ok(_) => {
                sp.commit().await?;
                Ok(true)
            }
            Err(StorageError::Conflict { .. }) => {
                sp.rollback().await?;
                set(None, None).exec(&self.tx).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn set_password_hash(
        &self,
        id: UserId,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id.0))
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_email_token(&self, t: NewEmailToken) -> Result<()> {
        email_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(t.user_id.0),
            purpose: Set(t.purpose.as_str().to_owned()),
            token_hash: Set(t.token_hash),
            created_at: Set(t.now),
            expires_at: Set(t.expires_at),
            used_at: Set(None),
            password_hash: Set(t.registration.as_ref().map(|r| r.password_hash.clone())),
            username: Set(t.registration.as_ref().and_then(|r| r.username.clone())),
            username_normalized: Set(t
                .registration
                .as_ref()
                .and_then(|r| r.username_normalized.clone())),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    /// The registration carried by the user's newest verify-email token that carries one,
    /// live or not.
    pub async fn latest_registration(&self, id: UserId) -> Result<Option<Registration>> {
        Ok(email_token::Entity::find()
            .filter(email_token::Column::UserId.eq(id.0))
            .filter(email_token::Column::Purpose.eq(TokenPurpose::VerifyEmail.as_str()))
            .filter(email_token::Column::PasswordHash.is_not_null())
            .order_by_desc(email_token::Column::CreatedAt)
            .order_by_desc(email_token::Column::Id)
            .one(&self.tx)
            .await?
            .and_then(registration))
    }

    /// Deletes every token of one purpose of a user but `keep`: for verify-email, the other
    /// registrations of an address die with their password hashes.
    pub async fn delete_email_tokens(
        &self,
        id: UserId,
        purpose: TokenPurpose,
        keep: Option<Uuid>,
    ) -> Result<()> {
        let mut q = email_token::Entity::delete_many()
            .filter(email_token::Column::UserId.eq(id.0))
            .filter(email_token::Column::Purpose.eq(purpose.as_str()));
        if let Some(k) = keep {
            q = q.filter(email_token::Column::Id.ne(k));
        }
        q.exec(&self.tx).await?;
        Ok(())
    }

    /// Marks a live token used and returns it; None when it is unknown, used, expired or for
    /// another purpose. Two concurrent consumers: exactly one gets it.
    pub async fn consume_email_token(
        &self,
        purpose: TokenPurpose,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UsedEmailToken>> {
        let Some(t) = email_token::Entity::find()
            .filter(email_token::Column::TokenHash.eq(hash))
            .filter(email_token::Column::Purpose.eq(purpose.as_str()))
            .filter(email_token::Column::UsedAt.is_null())
            .filter(email_token::Column::ExpiresAt.gt(now))
            .one(&self.tx)
            .await?
        else {
            return Ok(None);
        };
        let res = email_token::Entity::update_many()
            .col_expr(email_token::Column::UsedAt, Expr::value(now))
            .filter(email_token::Column::Id.eq(t.id))
            .filter(email_token::Column::UsedAt.is_null())
            .exec(&self.tx)
            .await?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        Ok(Some(UsedEmailToken {
            id: t.id,
            user_id: UserId(t.user_id),
            registration: registration(t),
        }))
    }

    /// Ends every outstanding token of one purpose for a user (a newer one replaces them).
    pub async fn invalidate_email_tokens(
        &self,
        id: UserId,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<()> {
        email_token::Entity::update_many()
            .col_expr(email_token::Column::UsedAt, Expr::value(now))
            .filter(email_token::Column::UserId.eq(id.0))
            .filter(email_token::Column::Purpose.eq(purpose.as_str()))
            .filter(email_token::Column::UsedAt.is_null())
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
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
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    pub async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        Ok(session::Entity::find_by_id(id.0)
            .one(&self.tx)
            .await?
            .map(session_record))
    }

    pub async fn touch_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<()> {
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .col_expr(session::Column::IdleExpiresAt, Expr::value(idle_expires_at))
            .filter(session::Column::Id.eq(id.0))
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    /// Revokes one session; false when it was already revoked.
    pub async fn revoke_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool> {
        let res = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .col_expr(session::Column::RevokeReason, Expr::value(reason))
            .filter(session::Column::Id.eq(id.0))
            .filter(session::Column::RevokedAt.is_null())
            .exec(&self.tx)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Revokes every unrevoked session of a user except `keep`; returns the ones it revoked.
    pub async fn revoke_user_sessions(
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
        for s in q.all(&self.tx).await? {
            if self.revoke_session(SessionId(s.id), now, reason).await? {
                revoked.push(SessionId(s.id));
            }
        }
        Ok(revoked)
    }

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
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    /// Marks a refresh token rotated; false when another request rotated it first (the caller
    /// then takes the grace / reuse path instead of issuing a second successor).
    pub async fn mark_rotated(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let res = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RotatedAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(id))
            .filter(refresh_token::Column::RotatedAt.is_null())
            .exec(&self.tx)
            .await?;
        Ok(res.rows_affected == 1)
    }

    pub async fn insert_signing_key(&self, k: &SigningKeyRecord) -> Result<()> {
        signing_key::ActiveModel {
            kid: Set(k.kid.clone()),
            algorithm: Set(k.algorithm.clone()),
            public_key: Set(k.public_key.clone()),
            private_key_enc: Set(k.private_key_enc.clone()),
            created_at: Set(k.created_at),
            retired_at: Set(k.retired_at),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    /// Retires every active signing key (they keep verifying until their tokens expire).
    pub async fn retire_signing_keys(&self, now: DateTime<Utc>) -> Result<()> {
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(now))
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    /// PostgreSQL only: unpublished rows in commit order, locked until this transaction ends;
    /// another node's relay skips them, so each row is published by one relay.
    pub async fn claim_pending_outbox(&self, limit: u64) -> Result<Vec<OutboxRecord>> {
        use sea_orm::sea_query::{LockBehavior, LockType};
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&self.tx)
            .await?
            .into_iter()
            .map(outbox_record)
            .collect())
    }

    pub async fn mark_published(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        mark_published(&self.tx, id, now).await
    }

    pub async fn record_failed_attempt(&self, id: Uuid) -> Result<()> {
        record_failed_attempt(&self.tx, id).await
    }

    pub async fn record_login_failure(&self, key: &str, now: DateTime<Utc>) -> Result<()> {
        login_failure::ActiveModel {
            id: Set(Uuid::now_v7()),
            key: Set(key.to_owned()),
            at: Set(now),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    /// Forgets the failed logins under `key` (after a successful login or password reset).
    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::Key.eq(key))
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    /// Appends a line to the audit log (the table refuses updates and deletes).
    pub async fn append_audit(&self, a: &AuditRecord) -> Result<()> {
        audit::ActiveModel {
            id: Set(Uuid::now_v7()),
            at: Set(a.at),
            kind: Set(a.kind.clone()),
            user_id: Set(a.user_id.map(|u| u.0)),
            ip: Set(a.ip.clone()),
            user_agent: Set(a.user_agent.clone()),
            request_id: Set(a.request_id.clone()),
            details: Set(a.details.clone()),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    /// Queues a message for the relay; it becomes visible only if this transaction commits.
    pub async fn enqueue(&self, e: &Envelope) -> Result<()> {
        let payload =
            serde_json::to_string(e).map_err(|err| StorageError::Corrupt(err.to_string()))?;
        outbox::ActiveModel {
            id: Set(e.id),
            message_type: Set(e.kind.clone()),
            payload: Set(payload),
            created_at: Set(e.occurred_at),
            published_at: Set(None),
            attempts: Set(0),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }
}

async fn mark_published<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::PublishedAt, Expr::value(now))
        .filter(outbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

async fn record_failed_attempt<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<()> {
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::Attempts,
            Expr::col(outbox::Column::Attempts).add(1),
        )
        .filter(outbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

fn outbox_record(m: outbox::Model) -> OutboxRecord {
    OutboxRecord {
        id: m.id,
        message_type: m.message_type,
        payload: m.payload,
        created_at: m.created_at,
        attempts: m.attempts,
    }
}

async fn email_token_user<C: ConnectionTrait>(
    db: &C,
    purpose: TokenPurpose,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<UserId>> {
    Ok(email_token::Entity::find()
        .filter(email_token::Column::TokenHash.eq(hash))
        .filter(email_token::Column::Purpose.eq(purpose.as_str()))
        .filter(email_token::Column::UsedAt.is_null())
        .filter(email_token::Column::ExpiresAt.gt(now))
        .one(db)
        .await?
        .map(|t| UserId(t.user_id)))
}

async fn user_by_id<C: ConnectionTrait>(db: &C, id: UserId) -> Result<Option<UserRecord>> {
    Ok(user::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(user_record))
}

fn user_record(m: user::Model) -> UserRecord {
    UserRecord {
        id: UserId(m.id),
        email: m.email,
        username: m.username,
        password_hash: m.password_hash,
        email_verified: m.email_verified,
        locale: m.locale,
        blocked: m.blocked,
        created_at: m.created_at,
    }
}

fn registration(t: email_token::Model) -> Option<Registration> {
    Some(Registration {
        password_hash: t.password_hash?,
        username: t.username,
        username_normalized: t.username_normalized,
    })
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
    }
}

fn refresh_record(m: refresh_token::Model) -> RefreshTokenRecord {
    RefreshTokenRecord {
        id: m.id,
        session_id: SessionId(m.session_id),
        created_at: m.created_at,
        rotated_at: m.rotated_at,
    }
}
