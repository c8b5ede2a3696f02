//! [`Users`]' report of the accounts the canonical-email migration (m0004) left at their
//! stored address, for `keyward migrate` to print until an operator resolves them.

use keyward_messages::UserId;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

use super::entities::{email_canonical_conflict, user};
use super::{EmailConflictReason, EmailConflictRecord, Users};
use crate::error::BadValue;
use crate::{Result, StorageError};

impl<C: ConnectionTrait> Users<'_, C> {
    /// The accounts the canonical-email migration left as they were and that are not resolved
    /// yet: each still exists with the address recorded then, and a collision still has two
    /// accounts (or its last one is not in canonical form). Oldest record first.
    pub async fn email_canonical_conflicts(&self) -> Result<Vec<EmailConflictRecord>> {
        let rows = email_canonical_conflict::Entity::find()
            .order_by_asc(email_canonical_conflict::Column::CreatedAt)
            .order_by_asc(email_canonical_conflict::Column::Canonical)
            .order_by_asc(email_canonical_conflict::Column::Email)
            .all(self.0)
            .await?;
        let mut open = Vec::new();
        for r in rows {
            // NOTE: the raw row, not a `UserRecord`: these addresses are the ones that are not
            // canonical, and an undeliverable one does not parse.
            let Some(u) = user::Entity::find_by_id(r.user_id).one(self.0).await? else {
                continue;
            };
            if u.email != r.email {
                continue;
            }
            let reason = EmailConflictReason::parse(&r.reason).ok_or_else(|| {
                StorageError::corrupt(
                    format!("email_canonical_conflicts {} reason", r.user_id),
                    BadValue::Unknown(r.reason.clone()),
                )
            })?;
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
}
