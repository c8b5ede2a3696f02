//! Arbitrary bytes as a bearer token: `verify` never panics and never accepts, because no input
//! the fuzzer can make carries a valid Ed25519 signature of the fixed test keys.
//!
//! The first byte picks how the rest becomes a token:
//! - even: the rest, as (lossy) UTF-8, is the token itself;
//! - odd: the rest is split on '\n' into header JSON, claims JSON and signature bytes, each
//!   base64url-encoded and joined with '.', so the fuzzer explores the JSON parsers and the
//!   header rules instead of fighting base64.
#![no_main]

use keyward_fuzz::{b64, key_for, AUDIENCE, ISSUER, NOW};
use keyward_messages::access_token::{verify, Refusal, MAX_TOKEN_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        rest.splitn(3, |&b| b == b'\n')
            .map(b64)
            .collect::<Vec<_>>()
            .join(".")
    };

    let verdict = verify(&token, key_for, ISSUER, AUDIENCE, NOW);
    if let Ok(claims) = &verdict {
        panic!("an unsigned input was accepted: {token:?} -> {claims:?}");
    }
    // The size rule comes first and is exact.
    assert_eq!(
        verdict == Err(Refusal::Oversized),
        token.len() > MAX_TOKEN_BYTES,
        "size rule: {} bytes -> {verdict:?}",
        token.len()
    );
});
