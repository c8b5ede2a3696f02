//! [`Mfa`]: factors, recovery codes and login challenges.

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use super::entities::{ceremony, challenge, code, factor, recovery};
use super::{CeremonyRecord, ChallengeRecord, CodeRecord, FactorRecord};
use crate::Result;

/// The mfa context's repository, over the pool (`store.mfa()`) or a transaction
/// (`tx.mfa()`).
pub struct Mfa<'a, C>(pub(crate) &'a C);

fn factor_record(m: factor::Model) -> FactorRecord {
    FactorRecord {
        id: m.id,
        user_id: UserId(m.user_id),
        kind: m.kind,
        label: m.label,
        secret: m.secret,
        confirmed_at: m.confirmed_at,
        last_step: m.last_step,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
    }
}

fn challenge_record(m: challenge::Model) -> ChallengeRecord {
    ChallengeRecord {
        id: m.id,
        token_hash: m.token_hash,
        user_id: UserId(m.user_id),
        amr: m
            .amr
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: m.created_at,
        expires_at: m.expires_at,
        attempts: m.attempts,
    }
}

impl<C: ConnectionTrait> Mfa<'_, C> {
    /// Every factor of `user`, confirmed or not, oldest first.
    pub async fn factors_of(&self, user: UserId) -> Result<Vec<FactorRecord>> {
        Ok(factor::Entity::find()
            .filter(factor::Column::UserId.eq(user.0))
            .order_by_asc(factor::Column::Id)
            .all(self.0)
            .await?
            .into_iter()
            .map(factor_record)
            .collect())
    }

    pub async fn insert_factor(&self, f: &FactorRecord) -> Result<()> {
        factor::ActiveModel {
            id: Set(f.id),
            user_id: Set(f.user_id.0),
            kind: Set(f.kind.clone()),
            label: Set(f.label.clone()),
            secret: Set(f.secret.clone()),
            confirmed_at: Set(f.confirmed_at),
            last_step: Set(f.last_step),
            created_at: Set(f.created_at),
            last_used_at: Set(f.last_used_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Marks a factor of `user` proven; false when there is no such unconfirmed factor.
    pub async fn confirm_factor(&self, user: UserId, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let res = factor::Entity::update_many()
            .col_expr(factor::Column::ConfirmedAt, Expr::value(now))
            .filter(factor::Column::Id.eq(id))
            .filter(factor::Column::UserId.eq(user.0))
            .filter(factor::Column::ConfirmedAt.is_null())
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Accepts TOTP time step `step` for factor `id` when it is later than the last accepted
    /// one: false for a replay (the same or an earlier step), atomically.
    pub async fn advance_step(&self, id: Uuid, step: i64, now: DateTime<Utc>) -> Result<bool> {
        let res = factor::Entity::update_many()
            .col_expr(factor::Column::LastStep, Expr::value(step))
            .col_expr(factor::Column::LastUsedAt, Expr::value(now))
            .filter(factor::Column::Id.eq(id))
            .filter(
                factor::Column::LastStep
                    .is_null()
                    .or(factor::Column::LastStep.lt(step)),
            )
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Notes that factor `id` was used now.
    pub async fn touch_factor(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        factor::Entity::update_many()
            .col_expr(factor::Column::LastUsedAt, Expr::value(now))
            .filter(factor::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Replaces factor `id`'s stored secret (a passkey's signature counter moved on).
    pub async fn update_secret(&self, id: Uuid, secret: &str, now: DateTime<Utc>) -> Result<()> {
        factor::Entity::update_many()
            .col_expr(factor::Column::Secret, Expr::value(secret))
            .col_expr(factor::Column::LastUsedAt, Expr::value(now))
            .filter(factor::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    pub async fn insert_ceremony(&self, c: &CeremonyRecord) -> Result<()> {
        ceremony::ActiveModel {
            id: Set(c.id),
            challenge: Set(c.challenge.clone()),
            purpose: Set(c.purpose.clone()),
            user_id: Set(c.user_id.map(|u| u.0)),
            state: Set(c.state.clone()),
            created_at: Set(c.created_at),
            expires_at: Set(c.expires_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Takes the ceremony of `challenge` out, once: of two answers to one challenge only the
    /// first finds it. None when there is none, or it expired before `now`.
    pub async fn take_ceremony(
        &self,
        challenge: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<CeremonyRecord>> {
        let Some(m) = ceremony::Entity::find()
            .filter(ceremony::Column::Challenge.eq(challenge))
            .one(self.0)
            .await?
        else {
            return Ok(None);
        };
        let res = ceremony::Entity::delete_by_id(m.id).exec(self.0).await?;
        if res.rows_affected == 0 || m.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(CeremonyRecord {
            id: m.id,
            challenge: m.challenge,
            purpose: m.purpose,
            user_id: m.user_id.map(UserId),
            state: m.state,
            created_at: m.created_at,
            expires_at: m.expires_at,
        }))
    }

    /// Removes a factor of `user` (and its pending code); false when there is none.
    pub async fn delete_factor(&self, user: UserId, id: Uuid) -> Result<bool> {
        code::Entity::delete_many()
            .filter(code::Column::FactorId.eq(id))
            .filter(code::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        let res = factor::Entity::delete_many()
            .filter(factor::Column::Id.eq(id))
            .filter(factor::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Removes the unconfirmed factors of `kind` (an enrolment started again).
    pub async fn delete_unconfirmed(&self, user: UserId, kind: &str) -> Result<()> {
        factor::Entity::delete_many()
            .filter(factor::Column::UserId.eq(user.0))
            .filter(factor::Column::Kind.eq(kind))
            .filter(factor::Column::ConfirmedAt.is_null())
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Replaces `user`'s recovery codes with `hashes` (the old ones die).
    pub async fn replace_recovery_codes(
        &self,
        user: UserId,
        hashes: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        recovery::Entity::delete_many()
            .filter(recovery::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        if hashes.is_empty() {
            return Ok(());
        }
        recovery::Entity::insert_many(hashes.iter().map(|h| recovery::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user.0),
            code_hash: Set(h.clone()),
            used_at: Set(None),
            created_at: Set(now),
        }))
        .exec_without_returning(self.0)
        .await?;
        Ok(())
    }

    /// Uses the recovery code of `user` whose hash is `hash`, once: false when there is no
    /// such unused code.
    pub async fn use_recovery_code(
        &self,
        user: UserId,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let res = recovery::Entity::update_many()
            .col_expr(recovery::Column::UsedAt, Expr::value(now))
            .filter(recovery::Column::UserId.eq(user.0))
            .filter(recovery::Column::CodeHash.eq(hash))
            .filter(recovery::Column::UsedAt.is_null())
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// How many unused recovery codes `user` has.
    pub async fn recovery_codes_left(&self, user: UserId) -> Result<u64> {
        Ok(recovery::Entity::find()
            .filter(recovery::Column::UserId.eq(user.0))
            .filter(recovery::Column::UsedAt.is_null())
            .count(self.0)
            .await?)
    }

    pub async fn insert_challenge(&self, c: &ChallengeRecord) -> Result<()> {
        challenge::ActiveModel {
            id: Set(c.id),
            token_hash: Set(c.token_hash.clone()),
            user_id: Set(c.user_id.0),
            amr: Set(c.amr.join(",")),
            created_at: Set(c.created_at),
            expires_at: Set(c.expires_at),
            attempts: Set(c.attempts),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    pub async fn challenge(&self, token_hash: &str) -> Result<Option<ChallengeRecord>> {
        Ok(challenge::Entity::find()
            .filter(challenge::Column::TokenHash.eq(token_hash))
            .one(self.0)
            .await?
            .map(challenge_record))
    }

    /// Counts one wrong code against a challenge.
    pub async fn challenge_failed(&self, id: Uuid) -> Result<()> {
        challenge::Entity::update_many()
            .col_expr(
                challenge::Column::Attempts,
                Expr::col(challenge::Column::Attempts).add(1),
            )
            .filter(challenge::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Ends a challenge (passed, or dead); false when it was already gone, so two concurrent
    /// verifications of one challenge cannot both open a session.
    pub async fn delete_challenge(&self, id: Uuid) -> Result<bool> {
        let res = challenge::Entity::delete_by_id(id).exec(self.0).await?;
        Ok(res.rows_affected > 0)
    }

    /// Removes the challenges and sent codes that expired before `now`; how many.
    pub async fn prune_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        let challenges = challenge::Entity::delete_many()
            .filter(challenge::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        let codes = code::Entity::delete_many()
            .filter(code::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        let ceremonies = ceremony::Entity::delete_many()
            .filter(ceremony::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        Ok(challenges.rows_affected + codes.rows_affected + ceremonies.rows_affected)
    }

    /// Replaces the code of factor `c.factor_id` (a new code kills the old one).
    pub async fn put_code(&self, c: &CodeRecord) -> Result<()> {
        code::Entity::delete_by_id(c.factor_id).exec(self.0).await?;
        code::ActiveModel {
            factor_id: Set(c.factor_id),
            user_id: Set(c.user_id.0),
            code_hash: Set(c.code_hash.clone()),
            expires_at: Set(c.expires_at),
            attempts: Set(c.attempts),
            sent_at: Set(c.sent_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    pub async fn code(&self, factor: Uuid) -> Result<Option<CodeRecord>> {
        Ok(code::Entity::find_by_id(factor)
            .one(self.0)
            .await?
            .map(|m| CodeRecord {
                factor_id: m.factor_id,
                user_id: UserId(m.user_id),
                code_hash: m.code_hash,
                expires_at: m.expires_at,
                attempts: m.attempts,
                sent_at: m.sent_at,
            }))
    }

    /// Counts one wrong code against factor `factor`'s code.
    pub async fn code_failed(&self, factor: Uuid) -> Result<()> {
        code::Entity::update_many()
            .col_expr(
                code::Column::Attempts,
                Expr::col(code::Column::Attempts).add(1),
            )
            .filter(code::Column::FactorId.eq(factor))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Uses up factor `factor`'s code; false when it was already gone (two concurrent uses
    /// of one code: only one wins).
    pub async fn delete_code(&self, factor: Uuid) -> Result<bool> {
        let res = code::Entity::delete_by_id(factor).exec(self.0).await?;
        Ok(res.rows_affected > 0)
    }

    /// Removes every factor, recovery code and challenge of `user` (an admin reset, erasure).
    /// How many factors there were.
    pub async fn erase_user(&self, user: UserId) -> Result<u64> {
        let res = factor::Entity::delete_many()
            .filter(factor::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        recovery::Entity::delete_many()
            .filter(recovery::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        challenge::Entity::delete_many()
            .filter(challenge::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        code::Entity::delete_many()
            .filter(code::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        ceremony::Entity::delete_many()
            .filter(ceremony::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected)
    }
}
