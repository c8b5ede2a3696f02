//! Pure rules of the sessions context: lifetimes. The access-token contract itself lives in
//! `keyward_messages::access_token`.

use chrono::{DateTime, Utc};

pub use keyward_messages::access_token::AccessClaims;

/// Seconds from `now` until `t`, never negative.
pub fn secs_until(now: DateTime<Utc>, t: DateTime<Utc>) -> u64 {
    u64::try_from((t - now).num_seconds()).unwrap_or(0)
}
