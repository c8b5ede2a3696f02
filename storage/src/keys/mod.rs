//! The keys context's storage: the access-token signing keys, active and retired. One
//! repository, [`SigningKeys`].
//!
//! Owns: the rows and their order (oldest first). Refuses: generating, encrypting or
//! decrypting keys, and deciding which key signs or how long a retired one is published (the
//! keys module does, from what is stored here).

mod entities;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use repo::SigningKeys;

#[derive(Clone, Debug)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    /// Base64url raw public key (the JWK `x`).
    pub public_key: String,
    /// Private key encrypted under the master key (format owned by the keys module).
    pub private_key_enc: String,
    pub created_at: DateTime<Utc>,
    /// When it stops (or stopped) signing; it stays published until its last token expires.
    pub retired_at: Option<DateTime<Utc>>,
    /// When it starts to sign; None: from `created_at`. It is published from its creation.
    pub signs_from: Option<DateTime<Utc>>,
}
