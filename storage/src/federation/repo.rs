//! [`Federation`]: identities, web login flows and one-time codes.

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::entities::{code, flow, identity, link_proof, used_token};
use super::{FlowRecord, IdentityRecord, LinkProofRecord, OAuthCodeRecord};
use crate::Result;

/// The federation context's repository, over the pool (`store.federation()`) or a
/// transaction (`tx.federation()`).
pub struct Federation<'a, C>(pub(crate) &'a C);

fn identity_record(m: identity::Model) -> IdentityRecord {
    IdentityRecord {
        id: m.id,
        user_id: UserId(m.user_id),
        provider: m.provider,
        subject: m.subject,
        email: m.email,
        email_verified: m.email_verified,
        created_at: m.created_at,
        last_login_at: m.last_login_at,
    }
}

impl<C: ConnectionTrait> Federation<'_, C> {
    /// The identity `subject` at `provider`, if linked.
    pub async fn identity(&self, provider: &str, subject: &str) -> Result<Option<IdentityRecord>> {
        Ok(identity::Entity::find()
            .filter(identity::Column::Provider.eq(provider))
            .filter(identity::Column::Subject.eq(subject))
            .one(self.0)
            .await?
            .map(identity_record))
    }

    /// Every identity linked to `user`, oldest first.
    pub async fn identities_of(&self, user: UserId) -> Result<Vec<IdentityRecord>> {
        Ok(identity::Entity::find()
            .filter(identity::Column::UserId.eq(user.0))
            .order_by_asc(identity::Column::Id)
            .all(self.0)
            .await?
            .into_iter()
            .map(identity_record)
            .collect())
    }

    /// Links an identity; fails on a (provider, subject) already linked.
    pub async fn insert_identity(&self, i: &IdentityRecord) -> Result<()> {
        identity::ActiveModel {
            id: Set(i.id),
            user_id: Set(i.user_id.0),
            provider: Set(i.provider.clone()),
            subject: Set(i.subject.clone()),
            email: Set(i.email.clone()),
            email_verified: Set(i.email_verified),
            created_at: Set(i.created_at),
            last_login_at: Set(i.last_login_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Notes a login through identity `id`, with what the provider says of the email now.
    pub async fn touch_identity(
        &self,
        id: Uuid,
        email: Option<&str>,
        email_verified: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        identity::Entity::update_many()
            .col_expr(identity::Column::LastLoginAt, Expr::value(now))
            .col_expr(
                identity::Column::Email,
                Expr::value(email.map(str::to_owned)),
            )
            .col_expr(identity::Column::EmailVerified, Expr::value(email_verified))
            .filter(identity::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Unlinks identity `id` of `user`; false when there is none.
    pub async fn delete_identity(&self, user: UserId, id: Uuid) -> Result<bool> {
        let res = identity::Entity::delete_many()
            .filter(identity::Column::Id.eq(id))
            .filter(identity::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    pub async fn insert_flow(&self, f: &FlowRecord) -> Result<()> {
        flow::ActiveModel {
            id: Set(f.id),
            state_hash: Set(f.state_hash.clone()),
            provider: Set(f.provider.clone()),
            redirect_uri: Set(f.redirect_uri.clone()),
            nonce: Set(f.nonce.clone()),
            pkce_verifier: Set(f.pkce_verifier.clone()),
            link_user_id: Set(f.link_user_id.map(|u| u.0)),
            app_state: Set(f.app_state.clone()),
            created_at: Set(f.created_at),
            expires_at: Set(f.expires_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Takes the flow of `state_hash` out, once: a replayed callback finds nothing. None when
    /// there is none or it expired before `now`.
    pub async fn take_flow(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FlowRecord>> {
        let Some(m) = flow::Entity::find()
            .filter(flow::Column::StateHash.eq(state_hash))
            .one(self.0)
            .await?
        else {
            return Ok(None);
        };
        let res = flow::Entity::delete_by_id(m.id).exec(self.0).await?;
        if res.rows_affected == 0 || m.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(FlowRecord {
            id: m.id,
            state_hash: m.state_hash,
            provider: m.provider,
            redirect_uri: m.redirect_uri,
            nonce: m.nonce,
            pkce_verifier: m.pkce_verifier,
            link_user_id: m.link_user_id.map(UserId),
            app_state: m.app_state,
            created_at: m.created_at,
            expires_at: m.expires_at,
        }))
    }

    pub async fn insert_code(&self, c: &OAuthCodeRecord) -> Result<()> {
        code::ActiveModel {
            code_hash: Set(c.code_hash.clone()),
            user_id: Set(c.user_id.0),
            provider: Set(c.provider.clone()),
            created_at: Set(c.created_at),
            expires_at: Set(c.expires_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Takes the one-time code of `code_hash` out, once; None when unknown, used or expired.
    pub async fn take_code(
        &self,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthCodeRecord>> {
        let Some(m) = code::Entity::find_by_id(code_hash.to_owned())
            .one(self.0)
            .await?
        else {
            return Ok(None);
        };
        let res = code::Entity::delete_by_id(m.code_hash.clone())
            .exec(self.0)
            .await?;
        if res.rows_affected == 0 || m.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(OAuthCodeRecord {
            code_hash: m.code_hash,
            user_id: UserId(m.user_id),
            provider: m.provider,
            created_at: m.created_at,
            expires_at: m.expires_at,
        }))
    }

    /// Records that the token of `token_hash` was used: false when it was already (a replay).
    pub async fn spend_token(&self, token_hash: &str, expires_at: DateTime<Utc>) -> Result<bool> {
        let res = used_token::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            expires_at: Set(expires_at),
        }
        .insert(self.0)
        .await;
        match res.map_err(crate::StorageError::from) {
            Ok(_) => Ok(true),
            Err(crate::StorageError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the flows, codes and spent tokens that expired before `now`; how many.
    pub async fn prune_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        let flows = flow::Entity::delete_many()
            .filter(flow::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        let codes = code::Entity::delete_many()
            .filter(code::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        let spent = used_token::Entity::delete_many()
            .filter(used_token::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        let proofs = link_proof::Entity::delete_many()
            .filter(link_proof::Column::ExpiresAt.lt(now))
            .exec(self.0)
            .await?;
        Ok(flows.rows_affected + codes.rows_affected + spent.rows_affected + proofs.rows_affected)
    }

    /// Removes every identity, flow and code of `user` (erasure).
    pub async fn erase_user(&self, user: UserId) -> Result<()> {
        identity::Entity::delete_many()
            .filter(identity::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        flow::Entity::delete_many()
            .filter(flow::Column::LinkUserId.eq(user.0))
            .exec(self.0)
            .await?;
        code::Entity::delete_many()
            .filter(code::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        link_proof::Entity::delete_many()
            .filter(link_proof::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    pub async fn insert_link_proof(&self, l: &LinkProofRecord) -> Result<()> {
        link_proof::ActiveModel {
            id: Set(l.id),
            token_hash: Set(l.token_hash.clone()),
            user_id: Set(l.user_id.0),
            provider: Set(l.provider.clone()),
            subject: Set(l.subject.clone()),
            email: Set(l.email.clone()),
            email_verified: Set(l.email_verified),
            code_hash: Set(l.code_hash.clone()),
            code_sent_at: Set(l.code_sent_at),
            codes_sent: Set(l.codes_sent),
            attempts: Set(l.attempts),
            created_at: Set(l.created_at),
            expires_at: Set(l.expires_at),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// The pending link of `token_hash`; None when unknown, used or expired before `now`.
    pub async fn link_proof(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LinkProofRecord>> {
        Ok(link_proof::Entity::find()
            .filter(link_proof::Column::TokenHash.eq(token_hash))
            .filter(link_proof::Column::ExpiresAt.gt(now))
            .one(self.0)
            .await?
            .map(|m| LinkProofRecord {
                id: m.id,
                token_hash: m.token_hash,
                user_id: UserId(m.user_id),
                provider: m.provider,
                subject: m.subject,
                email: m.email,
                email_verified: m.email_verified,
                code_hash: m.code_hash,
                code_sent_at: m.code_sent_at,
                codes_sent: m.codes_sent,
                attempts: m.attempts,
                created_at: m.created_at,
                expires_at: m.expires_at,
            }))
    }

    /// Stores the hash of a newly sent code for pending link `id` (replacing the last one).
    pub async fn set_link_code(&self, id: Uuid, code_hash: &str, now: DateTime<Utc>) -> Result<()> {
        link_proof::Entity::update_many()
            .col_expr(link_proof::Column::CodeHash, Expr::value(code_hash))
            .col_expr(link_proof::Column::CodeSentAt, Expr::value(now))
            .col_expr(
                link_proof::Column::CodesSent,
                Expr::col(link_proof::Column::CodesSent).add(1),
            )
            .filter(link_proof::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Counts a wrong password or code against pending link `id`.
    pub async fn fail_link_proof(&self, id: Uuid) -> Result<()> {
        link_proof::Entity::update_many()
            .col_expr(
                link_proof::Column::Attempts,
                Expr::col(link_proof::Column::Attempts).add(1),
            )
            .filter(link_proof::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Takes pending link `id` out, once: false when another request took it first.
    pub async fn take_link_proof(&self, id: Uuid) -> Result<bool> {
        let res = link_proof::Entity::delete_by_id(id).exec(self.0).await?;
        Ok(res.rows_affected > 0)
    }
}
