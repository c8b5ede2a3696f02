//! [`SigningKeys`]: the signing-key rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::entities::signing_key;
use super::SigningKeyRecord;
use crate::Result;

/// The keys context's repository, over the pool (`store.signing_keys()`) or a transaction
/// (`tx.signing_keys()`).
pub struct SigningKeys<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> SigningKeys<'_, C> {
    /// Every stored signing key, oldest first.
    pub async fn all(&self) -> Result<Vec<SigningKeyRecord>> {
        Ok(signing_key::Entity::find()
            .order_by_asc(signing_key::Column::CreatedAt)
            .all(self.0)
            .await?
            .into_iter()
            .map(|m| SigningKeyRecord {
                kid: m.kid,
                algorithm: m.algorithm,
                public_key: m.public_key,
                private_key_enc: m.private_key_enc,
                created_at: m.created_at,
                retired_at: m.retired_at,
                signs_from: m.signs_from,
            })
            .collect())
    }

    /// Stores a key; its kid is unique (a second one is `Conflict`).
    pub async fn insert(&self, k: &SigningKeyRecord) -> Result<()> {
        signing_key::ActiveModel {
            kid: Set(k.kid.clone()),
            algorithm: Set(k.algorithm.clone()),
            public_key: Set(k.public_key.clone()),
            private_key_enc: Set(k.private_key_enc.clone()),
            created_at: Set(k.created_at),
            retired_at: Set(k.retired_at),
            signs_from: Set(k.signs_from),
        }
        .insert(self.0)
        .await?;
        Ok(())
    }

    /// Retires every active signing key at `at` (now, or when its successor starts to sign;
    /// they keep verifying until their tokens expire); a key retired before keeps its date.
    pub async fn retire_active(&self, at: DateTime<Utc>) -> Result<()> {
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(at))
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(self.0)
            .await?;
        Ok(())
    }
}
