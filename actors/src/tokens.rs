//! Opaque tokens: random generation, the SHA-256 that storage keeps, and the deterministic
//! successor of a refresh token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Hex SHA-256: the only form in which tokens are stored.
pub fn sha256_hex(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The refresh token that replaces `predecessor`.
///
/// NOTE: deriving it (HMAC under a node-wide secret) instead of drawing it at random lets a
/// second request with the same predecessor inside the grace window get the very same successor
/// without the plaintext ever being stored. Without the secret it is as unpredictable as a
/// random token.
pub fn successor_token(secret: &[u8; 32], predecessor: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to hashing regardless.
    let mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(b"keyward refresh successor v1\0");
            m.update(predecessor.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Sha256::digest([secret.as_slice(), predecessor.as_bytes()].concat()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(mac)
}

/// Hex HMAC-SHA256 under `key` of `parts`, one after the other: the keyed hashes codes are
/// stored as, and the webhook signature.
pub fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // NOTE: HMAC takes a key of any length; new_from_slice cannot fail.
    Hmac::<Sha256>::new_from_slice(key)
        .map(|mut m| {
            for p in parts {
                m.update(p);
            }
            hex::encode(m.finalize().into_bytes())
        })
        .unwrap_or_default()
}

/// A sub-key for one purpose, derived from the master key.
pub fn derive_key(master: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyward key derivation v1\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(master);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_256_bits_and_url_safe() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(t, random_token());
    }

    #[test]
    fn the_successor_is_stable_and_depends_on_the_secret() {
        let a = successor_token(&[1; 32], "tok");
        assert_eq!(a, successor_token(&[1; 32], "tok"));
        assert_ne!(a, successor_token(&[2; 32], "tok"));
        assert_ne!(a, successor_token(&[1; 32], "tok2"));
        assert_eq!(a.len(), 43);
    }
}
