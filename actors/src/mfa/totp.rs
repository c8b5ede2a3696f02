//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps) through `totp-rs`, and the otpauth URI
//! as a QR code (SVG) through `qrcode`. Authenticator apps ignore other algorithms silently,
//! so SHA1 it is; the secret is 160 bits (RFC 4226's recommendation).

use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

const STEP: i64 = 30;

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

fn totp(secret: &[u8], issuer: Option<String>, account: String) -> TOTP {
    // NOTE: unchecked only because the checks (secret length, no ':' in the labels) hold for
    // every call here, and the URI is built by the same crate either way.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        0,
        STEP as u64,
        secret.to_vec(),
        issuer,
        account,
    )
}

/// The secret in base32 (no padding), for typing into an app by hand.
pub fn base32(secret: &[u8]) -> String {
    match Secret::Raw(secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => String::new(),
    }
}

/// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…` (a `:` in either is dropped, since
/// it separates them).
pub fn uri(secret: &[u8], issuer: &str, account: &str) -> String {
    totp(
        secret,
        Some(issuer.replace(':', "")),
        account.replace(':', ""),
    )
    .get_url()
}

/// The URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
        // NOTE: an otpauth URI is far below a QR code's capacity.
        Err(_) => String::new(),
    }
}

/// The time step whose code `code` is, among the one containing `now` and its two
/// neighbours (clock drift), compared in constant time; None when it is none of them.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let t = totp(secret, None, String::new());
    let current = now.div_euclid(STEP);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let Ok(at) = u64::try_from(step * STEP) else {
            continue;
        };
        if bool::from(t.generate(at).as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 6238 appendix B, SHA1, the last 6 of its 8 digits.
    #[test]
    fn codes_match_the_rfc_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
        ] {
            let step = matching_step(secret, code, time).unwrap();
            assert_eq!(step, time / 30);
        }
        assert_eq!(matching_step(secret, "287083", 59), None);
        // The neighbouring step is accepted, two away is not.
        assert_eq!(matching_step(secret, "287082", 59 + 30), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 60), None);
    }

    #[test]
    fn the_uri_names_the_issuer_and_account_and_carries_the_secret() {
        let secret = b"12345678901234567890";
        let u = uri(secret, "auth.example", "ann@example.com");
        assert!(
            u.starts_with("otpauth://totp/auth.example:ann%40example.com?"),
            "{u}"
        );
        assert!(u.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{u}");
        assert!(qr_svg(&u).starts_with("<?xml"));
    }
}
