//! Fixtures shared by the fuzz targets: the verifier's settings and two fixed Ed25519 key pairs.
//!
//! The keys are derived from public seeds (SHA-256 of "keyward-fuzz-k1" / "keyward-fuzz-k2"):
//! test material only, never to be configured anywhere.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The issuer, audience and clock every access-token target verifies with.
pub const ISSUER: &str = "https://auth.keyward.test";
pub const AUDIENCE: &str = "keyward";
pub const NOW: i64 = 1_760_000_000;

/// One signing key of the verifier's key ring.
pub struct TestKey {
    pub kid: &'static str,
    /// PKCS#8 v1 DER of the private key (what `EncodingKey::from_ed_der` takes).
    pub pkcs8_der: [u8; 48],
    /// The public key as a JWK `x` (base64url, no padding).
    pub x: &'static str,
}

const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const fn pkcs8(seed: [u8; 32]) -> [u8; 48] {
    let mut der = [0u8; 48];
    let mut i = 0;
    while i < 16 {
        der[i] = PKCS8_ED25519_PREFIX[i];
        i += 1;
    }
    while i < 48 {
        der[i] = seed[i - 16];
        i += 1;
    }
    der
}

pub const K1: TestKey = TestKey {
    kid: "k1",
    pkcs8_der: pkcs8([
        0xf6, 0x52, 0xd9, 0x6d, 0xc8, 0x55, 0xcf, 0x3e, 0xee, 0x3a, 0x23, 0x86, 0x9d, 0x42, 0x39,
        0xbe, 0x80, 0xb0, 0x18, 0xe1, 0x37, 0xb5, 0xcc, 0xf8, 0x5e, 0xda, 0xea, 0x81, 0x73, 0x68,
        0x1f, 0xd2,
    ]),
    x: "ubxX4Z8qJVN49Gc1SpHy0j-TUdf6QQo35uZylOkQvyI",
};

pub const K2: TestKey = TestKey {
    kid: "k2",
    pkcs8_der: pkcs8([
        0x66, 0x77, 0x1e, 0x8b, 0x1e, 0x94, 0xe4, 0x66, 0x6e, 0x75, 0x5e, 0x2d, 0x67, 0xd7, 0xec,
        0x45, 0xf7, 0x25, 0x86, 0x8b, 0x83, 0x40, 0xc2, 0xb6, 0x0d, 0x84, 0x2c, 0xf1, 0x0a, 0x01,
        0xb8, 0x16,
    ]),
    x: "qpIBPSvBDeTqZeEg2tVD6T6QG55zw8ytkTPGsEIGcUE",
};

/// The key ring: "k1" and "k2" are known, every other kid is not.
pub fn key_for(kid: &str) -> Option<DecodingKey> {
    static KEYS: OnceLock<[DecodingKey; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [K1.x, K2.x].map(|x| DecodingKey::from_ed_components(x).expect("fixed test key"))
    });
    match kid {
        "k1" => Some(keys[0].clone()),
        "k2" => Some(keys[1].clone()),
        _ => None,
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The raw Ed25519 signature of `signing_input` (`header.claims`) under `key`.
pub fn ed25519_sign(signing_input: &str, key: &TestKey) -> Vec<u8> {
    let key = EncodingKey::from_ed_der(&key.pkcs8_der);
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::EdDSA)
        .expect("signing with a fixed test key");
    URL_SAFE_NO_PAD
        .decode(sig)
        .expect("jsonwebtoken returns base64url")
}

/// An HS256 tag of `signing_input` keyed with `key`'s public key bytes: the classic
/// algorithm-confusion forgery against verifiers that let the token pick the algorithm.
pub fn hs256_with_public_key(signing_input: &str, key: &TestKey) -> Vec<u8> {
    let public = URL_SAFE_NO_PAD.decode(key.x).expect("fixed test key");
    let key = EncodingKey::from_secret(&public);
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256)
        .expect("HMAC never fails");
    URL_SAFE_NO_PAD
        .decode(sig)
        .expect("jsonwebtoken returns base64url")
}
