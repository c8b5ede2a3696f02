//! Secrets kept in the database encrypted under a key derived from the master key
//! (ChaCha20-Poly1305, a random nonce each time, the row's id as associated data so a sealed
//! value copied to another row does not open): `v1:<nonce b64>:<ciphertext b64>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;

/// Encrypts `plain` for the row `aad`.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Option<String> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = ChaCha20Poly1305::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .ok()?;
    Some(format!(
        "v1:{}:{}",
        STANDARD.encode(nonce),
        STANDARD.encode(ct)
    ))
}

/// Decrypts what [`seal`] made for the row `aad`; None when it is not that (another key,
/// another row, or damaged).
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let mut parts = sealed.split(':');
    let (Some("v1"), Some(n), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let nonce = STANDARD.decode(n).ok().filter(|n| n.len() == 12)?;
    let ct = STANDARD.decode(c).ok()?;
    ChaCha20Poly1305::new(key.into())
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_row() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let s = seal(&key, b"row-1", b"secret").unwrap();
        assert!(!s.contains("secret"));
        assert_eq!(open(&key, b"row-1", &s).unwrap(), b"secret");
        assert!(open(&other, b"row-1", &s).is_none());
        assert!(open(&key, b"row-2", &s).is_none());
        assert!(open(&key, b"row-1", "v1:xx:yy").is_none());
    }
}
