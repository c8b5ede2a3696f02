//! Hourly budgets of requests that cost something however they end (a mail, a stored
//! ceremony), counted per key in the throttle's table over a sliding hour.

use chrono::{DateTime, Utc};
use keyward_messages::{CommandError, RequestMeta};
use keyward_storage::Store;

use super::ThrottlePolicy;
use crate::error::HandlerError;

/// Spends one request under each of `keys` (key, requests per hour), or none when any of them
/// is spent: then 429 with the seconds until the oldest request under it leaves the hour. The
/// count and the record are one step (`LoginFailures::spend_hourly` in a transaction), so a
/// burst of concurrent requests gets no more than the budget.
pub(crate) async fn spend_hourly(
    store: &Store,
    now: DateTime<Utc>,
    keys: &[(String, u32)],
) -> Result<(), HandlerError> {
    let limits: Vec<(&str, u64)> = keys
        .iter()
        .map(|(k, n)| (k.as_str(), u64::from(*n)))
        .collect();
    let tx = store.begin().await?;
    if let Some(retry_after_secs) = tx.login_failures().spend_hourly(&limits, now).await? {
        return Err(HandlerError::from(CommandError::RateLimited {
            retry_after_secs,
        }));
    }
    tx.commit().await?;
    Ok(())
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
