//! [`Users`]' one-time email tokens: verify-email links (each carrying the registration it
//! completes) and password-reset links. Only a token's SHA-256 is stored.

use chrono::{DateTime, Utc};
use keyward_messages::{UserId, Username};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select,
    Set,
};
use uuid::Uuid;

use super::entities::email_token;
use super::{NewEmailToken, Registration, TokenPurpose, UsedEmailToken, Users};
use crate::error::parse_stored;
use crate::Result;

impl<C: ConnectionTrait> Users<'_, C> {
    pub async fn insert_email_token(&self, t: NewEmailToken) -> Result<()> {
        let username = t.registration.as_ref().and_then(|r| r.username.as_ref());
        email_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(t.user_id.0),
            purpose: Set(t.purpose.as_str().to_owned()),
            token_hash: Set(t.token_hash),
            created_at: Set(t.now),
            expires_at: Set(t.expires_at),
            used_at: Set(None),
            password_hash: Set(t.registration.as_ref().map(|r| r.password_hash.clone())),
            username: Set(username.map(|u| u.as_str().to_owned())),
            username_normalized: Set(username.map(Username::normalized)),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// The user a live one-time token belongs to, without using it up (so work that needs no
    /// transaction, like hashing, can happen before [`Users::consume_email_token`]).
    pub async fn email_token_user(
        &self,
        purpose: TokenPurpose,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>> {
        Ok(live(purpose, hash, now)
            .one(self.0)
            .await?
            .map(|t| UserId(t.user_id)))
    }

    /// The registration carried by the user's newest verify-email token that carries one,
    /// live or not.
    pub async fn latest_registration(&self, id: UserId) -> Result<Option<Registration>> {
        email_token::Entity::find()
            .filter(email_token::Column::UserId.eq(id.0))
            .filter(email_token::Column::Purpose.eq(TokenPurpose::VerifyEmail.as_str()))
            .filter(email_token::Column::PasswordHash.is_not_null())
            .order_by_desc(email_token::Column::CreatedAt)
            .order_by_desc(email_token::Column::Id)
            .one(self.0)
            .await?
            .map_or(Ok(None), registration)
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
        q.exec(self.0).await?;
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
        let Some(t) = live(purpose, hash, now).one(self.0).await? else {
            return Ok(None);
        };
        let res = email_token::Entity::update_many()
            .col_expr(email_token::Column::UsedAt, Expr::value(now))
            .filter(email_token::Column::Id.eq(t.id))
            .filter(email_token::Column::UsedAt.is_null())
            .exec(self.0)
            .await?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        Ok(Some(UsedEmailToken {
            id: t.id,
            user_id: UserId(t.user_id),
            registration: registration(t)?,
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
            .exec(self.0)
            .await?;
        Ok(())
    }
}

/// The token with this hash, for this purpose, not used and not expired at `now`.
fn live(purpose: TokenPurpose, hash: &str, now: DateTime<Utc>) -> Select<email_token::Entity> {
    email_token::Entity::find()
        .filter(email_token::Column::TokenHash.eq(hash))
        .filter(email_token::Column::Purpose.eq(purpose.as_str()))
        .filter(email_token::Column::UsedAt.is_null())
        .filter(email_token::Column::ExpiresAt.gt(now))
}

/// The registration a token carries (None for one without a password hash); a stored
/// username that no longer parses is `Corrupt`.
fn registration(t: email_token::Model) -> Result<Option<Registration>> {
    let Some(password_hash) = t.password_hash else {
        return Ok(None);
    };
    let username = t
        .username
        .as_deref()
        .map(|u| {
            parse_stored(
                "email_tokens",
                t.id,
                "username",
                Username::parse("username", u),
            )
        })
        .transpose()?;
    Ok(Some(Registration {
        password_hash,
        username,
    }))
}
