//! Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291),
//! through `web-push-native` (RustCrypto, sans-IO) and the node's HTTP client.
//!
//! The VAPID key pair is derived from the master key, so every node and worker signs with the
//! same key and browsers' subscriptions stay valid across restarts; it changes only with the
//! master key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keyward_messages::events::PushJob;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::{Auth, WebPushBuilder};

use crate::StartError;

/// How long a push service keeps a message for an offline browser.
const TTL: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// The application server's identity.
pub struct Vapid {
    key: ES256KeyPair,
    /// The uncompressed public key, base64url: browsers' `applicationServerKey`.
    pub public_key: String,
    /// The `sub` of the VAPID token: how a push service reaches the operator.
    contact: String,
}

impl Vapid {
    /// Derives the key pair from the master key; `contact` is a `mailto:` or `https:` URL.
    pub fn derive(master: &[u8; 32], contact: String) -> Result<Self, StartError> {
        let secret = crate::tokens::derive_key(master, "vapid");
        let key = ES256KeyPair::from_bytes(&secret)
            .map_err(|e| StartError::Keys(format!("deriving the VAPID key: {e}")))?;
        let public_key =
            URL_SAFE_NO_PAD.encode(key.public_key().public_key().to_bytes_uncompressed());
        Ok(Self {
            key,
            public_key,
            contact,
        })
    }
}

/// Why a subscription's keys cannot be used, for a 400 at subscribe time.
pub fn check_keys(p256dh: &str, auth: &str) -> Result<(), (&'static str, &'static str)> {
    let key = URL_SAFE_NO_PAD
        .decode(p256dh.trim_end_matches('='))
        .ok()
        .filter(|k| web_push_native::p256::PublicKey::from_sec1_bytes(k).is_ok());
    if key.is_none() {
        return Err(("keys.p256dh", "not a P-256 public key in base64url"));
    }
    let auth = URL_SAFE_NO_PAD.decode(auth.trim_end_matches('=')).ok();
    if auth.is_none_or(|a| a.len() != 16) {
        return Err(("keys.auth", "not 16 bytes in base64url"));
    }
    Ok(())
}

/// What the push service answered.
pub enum Pushed {
    /// Taken (2xx).
    Sent,
    /// The subscription no longer exists (404, 410): forget it.
    Gone(String),
    /// Refused for good (another 4xx, or keys that do not work).
    Refused(String),
    /// Worth a retry (429, 5xx, no answer).
    Retry(String),
}

/// Encrypts and sends one push message.
pub async fn send(http: &reqwest::Client, vapid: &Vapid, job: &PushJob) -> Pushed {
    let request = match build(vapid, job) {
        Ok(r) => r,
        Err(e) => return Pushed::Refused(e),
    };
    let request = match reqwest::Request::try_from(request) {
        Ok(r) => r,
        Err(e) => return Pushed::Refused(format!("the endpoint cannot be called: {e}")),
    };
    match http.execute(request).await {
        Err(e) => Pushed::Retry(format!("the push service did not answer: {e}")),
        Ok(r) => {
            let status = r.status();
            let body: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let answer = format!("{status} {body}").trim().to_owned();
            match status.as_u16() {
                200..=299 => Pushed::Sent,
                404 | 410 => Pushed::Gone(answer),
                429 | 500..=599 => Pushed::Retry(answer),
                _ => Pushed::Refused(answer),
            }
        }
    }
}

fn build(vapid: &Vapid, job: &PushJob) -> Result<http::Request<Vec<u8>>, String> {
    let endpoint: http::Uri = job
        .endpoint
        .parse()
        .map_err(|e| format!("the endpoint is not a URL: {e}"))?;
    let key = URL_SAFE_NO_PAD
        .decode(job.p256dh.trim_end_matches('='))
        .ok()
        .and_then(|k| web_push_native::p256::PublicKey::from_sec1_bytes(&k).ok())
        .ok_or("the subscription's p256dh is not a P-256 public key")?;
    let auth = URL_SAFE_NO_PAD
        .decode(job.auth.trim_end_matches('='))
        .ok()
        .filter(|a| a.len() == 16)
        .ok_or("the subscription's auth is not 16 bytes")?;
    WebPushBuilder::new(endpoint, key, Auth::clone_from_slice(&auth))
        .with_valid_duration(TTL)
        .with_vapid(&vapid.key, &vapid.contact)
        .build(job.payload.to_string())
        .map_err(|e| format!("encrypting the message: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_is_the_same_for_the_same_master_key_and_keys_are_checked() {
        let a = Vapid::derive(&[7; 32], "mailto:ops@example.com".into()).unwrap();
        let b = Vapid::derive(&[7; 32], "mailto:ops@example.com".into()).unwrap();
        let c = Vapid::derive(&[8; 32], "mailto:ops@example.com".into()).unwrap();
        assert_eq!(a.public_key, b.public_key);
        assert_ne!(a.public_key, c.public_key);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a.public_key).unwrap().len(), 65);

        let good = a.public_key.clone();
        assert!(check_keys(&good, "INQq_XWkOcsXgkNXloqFUw").is_ok());
        assert_eq!(
            check_keys("nope", "INQq_XWkOcsXgkNXloqFUw").unwrap_err().0,
            "keys.p256dh"
        );
        assert_eq!(check_keys(&good, "c2hvcnQ").unwrap_err().0, "keys.auth");
    }
}
