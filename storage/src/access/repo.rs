//! [`Access`]: roles, grants and service clients.

use chrono::{DateTime, Utc};
use keyward_messages::UserId;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::{client, role};
use super::{ClientRecord, RoleRecord};
use crate::accounts::entities::user_role;
use crate::error::BadValue;
use crate::{Result, StorageError};

/// The access context's repository, over the pool (`store.access()`) or a transaction
/// (`tx.access()`).
pub struct Access<'a, C>(pub(crate) &'a C);

fn names(what: String, raw: &str) -> Result<Vec<String>> {
    serde_json::from_str(raw).map_err(|e| StorageError::corrupt(what, BadValue::Json(e)))
}

fn role_record(m: role::Model) -> Result<RoleRecord> {
    Ok(RoleRecord {
        permissions: names(format!("roles {} permissions", m.name), &m.permissions)?,
        name: m.name,
        description: m.description,
        source: m.source,
        updated_at: m.updated_at,
    })
}

fn client_record(m: client::Model) -> Result<ClientRecord> {
    Ok(ClientRecord {
        scopes: names(format!("service_clients {} scopes", m.id), &m.scopes)?,
        id: m.id,
        name: m.name,
        secret_hash: m.secret_hash,
        created_at: m.created_at,
        created_by: m.created_by.map(UserId),
    })
}

fn json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

impl<C: ConnectionTrait> Access<'_, C> {
    /// Every role, by name.
    pub async fn roles(&self) -> Result<Vec<RoleRecord>> {
        role::Entity::find()
            .order_by_asc(role::Column::Name)
            .all(self.0)
            .await?
            .into_iter()
            .map(role_record)
            .collect()
    }

    pub async fn role(&self, name: &str) -> Result<Option<RoleRecord>> {
        role::Entity::find_by_id(name.to_owned())
            .one(self.0)
            .await?
            .map(role_record)
            .transpose()
    }

    /// Creates or replaces a role's definition.
    pub async fn put_role(&self, r: &RoleRecord) -> Result<()> {
        let am = role::ActiveModel {
            name: Set(r.name.clone()),
            description: Set(r.description.clone()),
            permissions: Set(json(&r.permissions)),
            source: Set(r.source.clone()),
            updated_at: Set(r.updated_at),
        };
        role::Entity::insert(am)
            .on_conflict(
                OnConflict::column(role::Column::Name)
                    .update_columns([
                        role::Column::Description,
                        role::Column::Permissions,
                        role::Column::Source,
                        role::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.0)
            .await?;
        Ok(())
    }

    /// Deletes a role's definition; false when there was none. Its grants stay (the caller
    /// refuses to delete a role someone holds).
    pub async fn delete_role(&self, name: &str) -> Result<bool> {
        let res = role::Entity::delete_by_id(name.to_owned())
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// How many users hold each role that anyone holds.
    pub async fn holders(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = user_role::Entity::find()
            .select_only()
            .column(user_role::Column::Role)
            .column_as(Expr::col(user_role::Column::UserId).count(), "n")
            .group_by(user_role::Column::Role)
            .into_tuple()
            .all(self.0)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(r, n)| (r, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// How many users hold `role`.
    pub async fn holders_of(&self, role: &str) -> Result<u64> {
        Ok(user_role::Entity::find()
            .filter(user_role::Column::Role.eq(role))
            .count(self.0)
            .await?)
    }

    /// Grants `role` to `user`; false when they held it already.
    pub async fn grant(&self, user: UserId, role: &str, now: DateTime<Utc>) -> Result<bool> {
        let am = user_role::ActiveModel {
            user_id: Set(user.0),
            role: Set(role.to_owned()),
            granted_at: Set(now),
        };
        let res = user_role::Entity::insert(am)
            .on_conflict(
                OnConflict::columns([user_role::Column::UserId, user_role::Column::Role])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.0)
            .await?;
        Ok(res > 0)
    }

    /// Revokes `role` from `user`; false when they did not hold it.
    pub async fn revoke(&self, user: UserId, role: &str) -> Result<bool> {
        let res = user_role::Entity::delete_many()
            .filter(user_role::Column::UserId.eq(user.0))
            .filter(user_role::Column::Role.eq(role))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    pub async fn create_client(&self, c: &ClientRecord) -> Result<()> {
        client::Entity::insert(client::ActiveModel {
            id: Set(c.id.clone()),
            name: Set(c.name.clone()),
            secret_hash: Set(c.secret_hash.clone()),
            scopes: Set(json(&c.scopes)),
            created_at: Set(c.created_at),
            created_by: Set(c.created_by.map(|u| u.0)),
        })
        .exec_without_returning(self.0)
        .await?;
        Ok(())
    }

    pub async fn client(&self, id: &str) -> Result<Option<ClientRecord>> {
        client::Entity::find_by_id(id.to_owned())
            .one(self.0)
            .await?
            .map(client_record)
            .transpose()
    }

    /// Every client, oldest first.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>> {
        client::Entity::find()
            .order_by_asc(client::Column::CreatedAt)
            .order_by_asc(client::Column::Id)
            .all(self.0)
            .await?
            .into_iter()
            .map(client_record)
            .collect()
    }

    /// Replaces a client's secret hash; false when there is no such client.
    pub async fn set_client_secret(&self, id: &str, secret_hash: &str) -> Result<bool> {
        let res = client::Entity::update_many()
            .col_expr(client::Column::SecretHash, Expr::value(secret_hash))
            .filter(client::Column::Id.eq(id))
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }

    pub async fn delete_client(&self, id: &str) -> Result<bool> {
        let res = client::Entity::delete_by_id(id.to_owned())
            .exec(self.0)
            .await?;
        Ok(res.rows_affected > 0)
    }
}
