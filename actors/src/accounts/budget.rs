//! Hourly budgets of requests that cost something however they end (a mail, a stored
//! ceremony), counted per key in the throttle's table over a sliding hour.

use chrono::{DateTime, Duration, Utc};
use keyward_messages::{CommandError, RequestMeta};
use keyward_storage::{StorageError, Store};

use super::ThrottlePolicy;
use crate::error::HandlerError;

/// Spends one request under each of `keys` (key, requests per hour), or none when any of them
/// is spent: then 429 with the seconds until the oldest request under it leaves the hour.
pub(crate) async fn spend_hourly(
    store: &Store,
    now: DateTime<Utc>,
    keys: &[(String, u32)],
) -> Result<(), HandlerError> {
    let limits: Vec<(&str, u64)> = keys
        .iter()
        .map(|(k, n)| (k.as_str(), u64::from(*n)))
        .collect();
    if let Some(retry_after_secs) = hourly_wait(store, now, &limits).await? {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    for (key, _) in keys {
        store.login_failures().record(key, now).await?;
    }
    Ok(())
}

/// The seconds until every one of `keys` (key, requests per hour) has room for one more, or
/// `None` when all have room now: the wait is until the oldest request under the fullest key
/// leaves the hour. Records nothing; the caller records the keys where its request is kept.
pub(crate) async fn hourly_wait(
    store: &Store,
    now: DateTime<Utc>,
    keys: &[(&str, u64)],
) -> Result<Option<u64>, StorageError> {
    let hour = Duration::hours(1);
    let mut wait: Option<Duration> = None;
    for (key, limit) in keys {
        let (n, _) = store.login_failures().since(key, now - hour).await?;
        if n >= *limit {
            let oldest = store.login_failures().oldest_since(key, now - hour).await?;
            // No oldest row means the requests left the hour between the two reads.
            let free_at = oldest.map_or(now, |at| at + hour);
            wait = Some(wait.map_or(free_at - now, |w| w.max(free_at - now)));
        }
    }
    Ok(wait.map(|w| u64::try_from(w.num_seconds().max(1)).unwrap_or(1)))
}

impl ThrottlePolicy {
    /// A sign-in begun without an account (passkey login options, a social login's start)
    /// stores its ceremony until it expires: each client IP may begin
    /// `KEYWARD_THROTTLE__CEREMONIES_PER_IP_PER_HOUR` an hour, so that no one client fills the
    /// tables. A request without a known client IP is not counted.
    pub(crate) async fn ceremony_budget(
        &self,
        store: &Store,
        meta: &RequestMeta,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let Some(ip) = meta.client_ip else {
            return Ok(());
        };
        spend_hourly(
            store,
            now,
            &[(format!("ceremony-ip:{ip}"), self.ceremonies_per_ip)],
        )
        .await
    }
}
