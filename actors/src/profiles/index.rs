//! Keeps the search index in step with what others may see of a user: every change that
//! decides whether (or how) a profile is found calls [`ProfileIndex::sync`] in its own
//! transaction. A profile is listed while its account is verified, not blocked and not being
//! deleted; otherwise it is removed.

use keyward_messages::profiles::Visibility;
use keyward_messages::UserId;
use keyward_storage::search::SearchEntry;
use keyward_storage::{ProfileRecord, StorageError, Store, Tx, UserRecord};

/// The narrow handle other contexts (accounts, sessions) get to keep the index current.
#[derive(Clone, Copy, Debug)]
pub struct ProfileIndex {
    pub default_visibility: Visibility,
}

impl ProfileIndex {
    pub fn from_settings(settings: &keyward_config::Settings) -> Self {
        let v = &settings.profiles.default_visibility;
        Self {
            default_visibility: Visibility::parse("default_visibility", v)
                .unwrap_or(Visibility::Users),
        }
    }

    /// Brings `user`'s index entry in line with their account and profile, inside `tx`.
    pub async fn sync(&self, tx: &Tx, user: UserId) -> Result<(), StorageError> {
        let Some(u) = tx.users().by_id(user).await? else {
            return tx.search_index().remove(user).await;
        };
        let p = tx.profiles().get(user).await?;
        if !is_listed(&u, p.as_ref()) {
            return tx.search_index().remove(user).await;
        }
        let entry = SearchEntry {
            user_id: user,
            username: u.username.map(String::from),
            display_name: p.as_ref().and_then(|p| p.display_name.clone()),
            avatar: p.as_ref().and_then(|p| small_avatar(p.avatar.as_deref())),
            visibility: p.map_or(self.default_visibility, |p| p.visibility),
        };
        tx.search_index().upsert(&entry).await
    }

    /// Fills an empty index from the accounts (a database from before the index, or a
    /// restored one), in batches of their own transactions. Returns how many it indexed.
    pub async fn backfill(&self, store: &Store) -> Result<usize, StorageError> {
        if !store.search_index().is_empty().await? {
            return Ok(0);
        }
        let mut after = None;
        let mut n = 0;
        loop {
            let ids = store.users().ids_after(after, 500).await?;
            let Some(last) = ids.last().copied() else {
                return Ok(n);
            };
            let tx = store.begin().await?;
            for id in &ids {
                self.sync(&tx, *id).await?;
            }
            tx.commit().await?;
            n += ids.len();
            after = Some(last);
        }
    }
}

/// Whether others may find and see this account at all: verified, not blocked, not being
/// deleted (a missing profile row is not being deleted).
pub(super) fn is_listed(u: &UserRecord, p: Option<&ProfileRecord>) -> bool {
    u.email_verified && !u.blocked && p.is_none_or(|p| p.deletion_due_at.is_none())
}

/// The key of the 64 px rendition of a stored avatar (its column holds the three keys).
fn small_avatar(stored: Option<&str>) -> Option<String> {
    super::avatar::keys_of(stored).into_iter().next()
}
