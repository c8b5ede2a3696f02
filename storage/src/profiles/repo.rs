//! [`Profiles`]: profile rows, settings, username reservations and pending deletions.

use chrono::{DateTime, Utc};
use keyward_messages::profiles::Visibility;
use keyward_messages::{UserId, Username};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Map, Value};

use super::entities::{phone_code, profile, reservation, settings};
use super::{PhoneCodeRecord, ProfileRecord};
use crate::error::parse_stored;
use crate::{Result, StorageError};

/// The profiles context's repository, over the pool (`store.profiles()`) or a transaction
/// (`tx.profiles()`).
pub struct Profiles<'a, C>(pub(crate) &'a C);

impl<C: ConnectionTrait> Profiles<'_, C> {
    /// The stored profile; None when the user never saved one (the caller uses defaults).
    pub async fn get(&self, user: UserId) -> Result<Option<ProfileRecord>> {
        profile::Entity::find_by_id(user.0)
            .one(self.0)
            .await?
            .map(record)
            .transpose()
    }

    /// The verified phone numbers of those of `users` who have one.
    pub async fn verified_phones_of(
        &self,
        users: &[UserId],
    ) -> Result<std::collections::HashMap<UserId, String>> {
        let mut out = std::collections::HashMap::new();
        for chunk in users.chunks(500) {
            let rows: Vec<(uuid::Uuid, Option<String>)> = profile::Entity::find()
                .select_only()
                .column(profile::Column::UserId)
                .column(profile::Column::Phone)
                .filter(profile::Column::UserId.is_in(chunk.iter().map(|u| u.0)))
                .filter(profile::Column::PhoneVerified.eq(true))
                .into_tuple()
                .all(self.0)
                .await?;
            out.extend(
                rows.into_iter()
                    .filter_map(|(u, p)| p.map(|p| (UserId(u), p))),
            );
        }
        Ok(out)
    }

    /// Writes the whole profile (insert or replace).
    pub async fn put(&self, p: &ProfileRecord) -> Result<()> {
        let row = profile::ActiveModel {
            user_id: Set(p.user_id.0),
            display_name: Set(p.display_name.clone()),
            bio: Set(p.bio.clone()),
            avatar: Set(p.avatar.clone()),
            timezone: Set(p.timezone.clone()),
            country: Set(p.country.clone()),
            phone: Set(p.phone.clone()),
            phone_verified: Set(p.phone_verified),
            visibility: Set(p.visibility.as_str().to_owned()),
            attributes: Set(Value::Object(p.attributes.clone()).to_string()),
            deletion_due_at: Set(p.deletion_due_at),
            updated_at: Set(p.updated_at),
        };
        use profile::Column as C;
        profile::Entity::insert(row)
            .on_conflict(
                OnConflict::column(C::UserId)
                    .update_columns([
                        C::DisplayName,
                        C::Bio,
                        C::Avatar,
                        C::Timezone,
                        C::Country,
                        C::Phone,
                        C::PhoneVerified,
                        C::Visibility,
                        C::Attributes,
                        C::DeletionDueAt,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// The settings object (empty when never saved).
    pub async fn settings(&self, user: UserId) -> Result<Map<String, Value>> {
        let Some(row) = settings::Entity::find_by_id(user.0).one(self.0).await? else {
            return Ok(Map::new());
        };
        json_object("profile_settings", user, "settings", &row.settings)
    }

    pub async fn put_settings(
        &self,
        user: UserId,
        s: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let row = settings::ActiveModel {
            user_id: Set(user.0),
            settings: Set(Value::Object(s.clone()).to_string()),
            updated_at: Set(now),
        };
        settings::Entity::insert(row)
            .on_conflict(
                OnConflict::column(settings::Column::UserId)
                    .update_columns([settings::Column::Settings, settings::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Holds `name` for `user` until `until` (a rename gave it up), replacing an older hold.
    pub async fn reserve(&self, name: &Username, user: UserId, until: DateTime<Utc>) -> Result<()> {
        let row = reservation::ActiveModel {
            username_normalized: Set(name.normalized()),
            user_id: Set(user.0),
            until: Set(until),
        };
        reservation::Entity::insert(row)
            .on_conflict(
                OnConflict::column(reservation::Column::UsernameNormalized)
                    .update_columns([reservation::Column::UserId, reservation::Column::Until])
                    .to_owned(),
            )
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Who holds `name` at `now` through a reservation, if anyone.
    pub async fn reserved_by(&self, name: &Username, now: DateTime<Utc>) -> Result<Option<UserId>> {
        Ok(reservation::Entity::find_by_id(name.normalized())
            .filter(reservation::Column::Until.gt(now))
            .one(self.0)
            .await?
            .map(|r| UserId(r.user_id)))
    }

    /// Users whose deletion is due at `now`, oldest first.
    pub async fn deletions_due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<UserId>> {
        Ok(profile::Entity::find()
            .select_only()
            .column(profile::Column::UserId)
            .filter(profile::Column::DeletionDueAt.lte(now))
            .order_by_asc(profile::Column::DeletionDueAt)
            .limit(limit)
            .into_tuple::<uuid::Uuid>()
            .all(self.0)
            .await?
            .into_iter()
            .map(UserId)
            .collect())
    }

    /// Clears a pending deletion; true when one was pending.
    pub async fn cancel_deletion(&self, user: UserId, now: DateTime<Utc>) -> Result<bool> {
        let r = profile::Entity::update_many()
            .col_expr(
                profile::Column::DeletionDueAt,
                Expr::value(None::<DateTime<Utc>>),
            )
            .col_expr(profile::Column::UpdatedAt, Expr::value(now))
            .filter(profile::Column::UserId.eq(user.0))
            .filter(profile::Column::DeletionDueAt.is_not_null())
            .exec(self.0)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Deletes everything this context holds about `user` (reservations expire on their own:
    /// they hold a name, not a person).
    pub async fn erase(&self, user: UserId) -> Result<()> {
        profile::Entity::delete_by_id(user.0).exec(self.0).await?;
        settings::Entity::delete_by_id(user.0).exec(self.0).await?;
        phone_code::Entity::delete_by_id(user.0)
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// The user's pending phone code, if any (expired ones too: the caller checks).
    pub async fn phone_code(&self, user: UserId) -> Result<Option<PhoneCodeRecord>> {
        Ok(phone_code::Entity::find_by_id(user.0)
            .one(self.0)
            .await?
            .map(|m| PhoneCodeRecord {
                user_id: UserId(m.user_id),
                phone: m.phone,
                code_hash: m.code_hash,
                expires_at: m.expires_at,
                attempts: m.attempts,
                sent_at: m.sent_at,
            }))
    }

    /// Replaces the user's pending phone code (a new code kills the old one).
    pub async fn put_phone_code(&self, c: &PhoneCodeRecord) -> Result<()> {
        let row = phone_code::ActiveModel {
            user_id: Set(c.user_id.0),
            phone: Set(c.phone.clone()),
            code_hash: Set(c.code_hash.clone()),
            expires_at: Set(c.expires_at),
            attempts: Set(c.attempts),
            sent_at: Set(c.sent_at),
        };
        phone_code::Entity::insert(row)
            .on_conflict(
                OnConflict::column(phone_code::Column::UserId)
                    .update_columns([
                        phone_code::Column::Phone,
                        phone_code::Column::CodeHash,
                        phone_code::Column::ExpiresAt,
                        phone_code::Column::Attempts,
                        phone_code::Column::SentAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.0)
            .await?;
        Ok(())
    }

    /// Counts one wrong code against the user's pending code.
    pub async fn phone_code_failed(&self, user: UserId) -> Result<()> {
        phone_code::Entity::update_many()
            .col_expr(
                phone_code::Column::Attempts,
                Expr::col(phone_code::Column::Attempts).add(1),
            )
            .filter(phone_code::Column::UserId.eq(user.0))
            .exec(self.0)
            .await?;
        Ok(())
    }

    /// Removes the user's pending code (used, or dead after too many wrong tries).
    pub async fn delete_phone_code(&self, user: UserId) -> Result<()> {
        phone_code::Entity::delete_by_id(user.0)
            .exec(self.0)
            .await?;
        Ok(())
    }
}

fn json_object(table: &str, user: UserId, column: &str, raw: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StorageError::corrupt(
            format!("{table} {user} {column}"),
            crate::error::BadValue::NotAnObject,
        )),
        Err(e) => Err(StorageError::corrupt(
            format!("{table} {user} {column}"),
            crate::error::BadValue::Json(e),
        )),
    }
}

fn record(m: profile::Model) -> Result<ProfileRecord> {
    let user = UserId(m.user_id);
    Ok(ProfileRecord {
        visibility: parse_stored(
            "profiles",
            user,
            "visibility",
            Visibility::parse("visibility", &m.visibility),
        )?,
        attributes: json_object("profiles", user, "attributes", &m.attributes)?,
        user_id: user,
        display_name: m.display_name,
        bio: m.bio,
        avatar: m.avatar,
        timezone: m.timezone,
        country: m.country,
        phone: m.phone,
        phone_verified: m.phone_verified,
        deletion_due_at: m.deletion_due_at,
        updated_at: m.updated_at,
    })
}
