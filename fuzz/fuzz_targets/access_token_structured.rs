//! Properly signed tokens with fuzzed headers and claims, checked against an oracle: `verify`
//! accepts exactly when
//! - the token is at most MAX_TOKEN_BYTES long and is the plain three-part compact form;
//! - the header has no member but alg, typ and kid; typ is the string "at+jwt" in any ASCII
//!   case (media types are case-insensitive); alg is exactly "EdDSA"; kid is a known kid;
//! - the signature is the Ed25519 signature of that kid's key;
//! - iss and aud are exactly the expected strings; sub, jti, sid and email are strings;
//!   email_verified is a boolean; roles is absent or an array of strings; iat is an integer;
//!   exp and nbf are integers in 0..=i64::MAX (jsonwebtoken reads NumericDates as u64, so a
//!   negative one counts as missing);
//! - NOW < exp + LEEWAY_SECS and nbf <= NOW + LEEWAY_SECS.
//!
//! and when it refuses, the oracle also names the `Refusal` it must give.
//! An all-zero input builds the token Keyward itself would sign, so the accepting path is
//! reached from the first run.
#![no_main]

use keyward_fuzz::{
    b64, ed25519_sign, hs256_with_public_key, key_for, AUDIENCE, ISSUER, K1, K2, NOW,
};
use keyward_messages::access_token::{verify, Refusal, LEEWAY_SECS, MAX_TOKEN_BYTES, TYP};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// One JSON member. `Typical` (the first variant, chosen by zero bytes) is what Keyward signs.
#[derive(Arbitrary, Debug)]
enum Field {
    Typical,
    Absent,
    Null,
    Bool(bool),
    Int(i64),
    /// NOW + delta: lands near the edges of the time window.
    Near(i16),
    Big(u64),
    Float(f64),
    Text(String),
    /// The typical value, ASCII upper-cased.
    Upper,
    /// The typical value inside an array.
    Wrapped,
    Strings(Vec<String>),
    Object,
}

#[derive(Arbitrary, Debug)]
enum HeaderName {
    Jku,
    X5u,
    Jwk,
    X5c,
    Crit,
    Cty,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Signer {
    /// The key of the header's kid (k1 when the kid is not k2): a valid signature.
    KidKey,
    /// The other key.
    WrongKey,
    /// The kid's signature with one byte changed.
    Flipped {
        index: u8,
        xor: std::num::NonZeroU8,
    },
    Empty,
    Garbage(Vec<u8>),
    /// HS256 keyed with the kid's public key (algorithm confusion).
    HmacWithPublicKey,
}

#[derive(Arbitrary, Debug)]
enum Trailer {
    None,
    ExtraSegment(String),
    Padding,
    Newline,
}

#[derive(Arbitrary, Debug)]
struct Input {
    alg: Field,
    typ: Field,
    kid: Field,
    header_extra: Option<(HeaderName, Field)>,
    iss: Field,
    sub: Field,
    aud: Field,
    exp: Field,
    iat: Field,
    nbf: Field,
    jti: Field,
    sid: Field,
    email: Field,
    email_verified: Field,
    roles: Field,
    extra_claims: Vec<(String, Field)>,
    signer: Signer,
    trailer: Trailer,
}

fn render(field: &Field, typical: Value) -> Option<Value> {
    Some(match field {
        Field::Typical => typical,
        Field::Absent => return None,
        Field::Null => Value::Null,
        Field::Bool(b) => json!(b),
        Field::Int(i) => json!(i),
        Field::Near(d) => json!(NOW + i64::from(*d)),
        Field::Big(u) => json!(u),
        Field::Float(f) => json!(f),
        Field::Text(s) => json!(s),
        Field::Upper => match typical {
            Value::String(s) => json!(s.to_ascii_uppercase()),
            other => other,
        },
        Field::Wrapped => json!([typical]),
        Field::Strings(v) => json!(v),
        Field::Object => json!({}),
    })
}

fn put(map: &mut Map<String, Value>, name: &str, field: &Field, typical: Value) {
    if let Some(v) = render(field, typical) {
        map.insert(name.to_owned(), v);
    }
}

/// What `verify` must answer for this header, ignoring the signature and claims.
fn header_verdict(h: &Map<String, Value>) -> Result<&'static str, Refusal> {
    if h.keys()
        .any(|k| !matches!(k.as_str(), "alg" | "typ" | "kid"))
    {
        return Err(Refusal::ForeignHeader);
    }
    let text = |k: &str| h.get(k).and_then(Value::as_str);
    if !text("typ").is_some_and(|t| t.eq_ignore_ascii_case(TYP)) {
        return Err(Refusal::WrongTyp);
    }
    if text("alg") != Some("EdDSA") {
        return Err(Refusal::WrongAlg);
    }
    match text("kid") {
        None => Err(Refusal::NoKid),
        Some("k1") => Ok("k1"),
        Some("k2") => Ok("k2"),
        Some(_) => Err(Refusal::UnknownKid),
    }
}

/// A NumericDate jsonwebtoken and `AccessClaims` both read: an integer in 0..=i64::MAX.
fn numeric_date(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64).filter(|t| *t >= 0)
}

/// Whether the claims pass signature-independent checks, and their exp and nbf if so.
fn claims_verdict(c: &Map<String, Value>) -> Option<(i64, i64)> {
    let is_str = |k: &str| c.get(k).is_some_and(Value::is_string);
    let ok = c.get("iss") == Some(&json!(ISSUER))
        && c.get("aud") == Some(&json!(AUDIENCE))
        && ["sub", "jti", "sid", "email"].into_iter().all(is_str)
        && c.get("email_verified").is_some_and(Value::is_boolean)
        && c.get("roles")
            .is_none_or(|r| r.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        && c.get("iat").is_some_and(Value::is_i64);
    let exp = numeric_date(c.get("exp"))?;
    let nbf = numeric_date(c.get("nbf"))?;
    ok.then_some((exp, nbf))
}

fuzz_target!(|input: Input| {
    let mut header = Map::new();
    put(&mut header, "alg", &input.alg, json!("EdDSA"));
    put(&mut header, "typ", &input.typ, json!(TYP));
    put(&mut header, "kid", &input.kid, json!("k1"));
    if let Some((name, field)) = &input.header_extra {
        let name = match name {
            HeaderName::Jku => "jku",
            HeaderName::X5u => "x5u",
            HeaderName::Jwk => "jwk",
            HeaderName::X5c => "x5c",
            HeaderName::Crit => "crit",
            HeaderName::Cty => "cty",
            HeaderName::Other(s) => s.as_str(),
        };
        put(
            &mut header,
            name,
            field,
            json!("https://attacker.example/keys"),
        );
    }

    // Extras first, so a known claim that is present replaces an extra of the same name.
    let mut claims = Map::new();
    for (name, field) in &input.extra_claims {
        put(&mut claims, name, field, json!("read:bookings"));
    }
    put(&mut claims, "iss", &input.iss, json!(ISSUER));
    put(
        &mut claims,
        "sub",
        &input.sub,
        json!("0190b0a4-7c2e-7d1a-9f3e-2a4b6c8d0e1f"),
    );
    put(&mut claims, "aud", &input.aud, json!(AUDIENCE));
    put(&mut claims, "exp", &input.exp, json!(NOW + 900));
    put(&mut claims, "iat", &input.iat, json!(NOW - 10));
    put(&mut claims, "nbf", &input.nbf, json!(NOW - 10));
    put(
        &mut claims,
        "jti",
        &input.jti,
        json!("0190b0a4-7c2e-7d1a-9f3e-000000000001"),
    );
    put(
        &mut claims,
        "sid",
        &input.sid,
        json!("0190b0a4-7c2e-7d1a-9f3e-000000000002"),
    );
    put(
        &mut claims,
        "email",
        &input.email,
        json!("alice@example.com"),
    );
    put(
        &mut claims,
        "email_verified",
        &input.email_verified,
        json!(true),
    );
    put(&mut claims, "roles", &input.roles, json!(["user"]));

    let header_json = serde_json::to_vec(&header).expect("a JSON map serialises");
    let claims_json = serde_json::to_vec(&claims).expect("a JSON map serialises");
    let signing_input = format!("{}.{}", b64(&header_json), b64(&claims_json));

    // Judge what verify will parse, not what was built.
    let header: Map<String, Value> = serde_json::from_slice(&header_json).expect("round trip");
    let claims: Map<String, Value> = serde_json::from_slice(&claims_json).expect("round trip");
    let header_says = header_verdict(&header);

    let (kid_key, other_key) = match header_says {
        Ok("k2") => (&K2, &K1),
        _ => (&K1, &K2),
    };
    let (signature, signature_valid) = match &input.signer {
        Signer::KidKey => (ed25519_sign(&signing_input, kid_key), true),
        Signer::WrongKey => (ed25519_sign(&signing_input, other_key), false),
        Signer::Flipped { index, xor } => {
            let mut sig = ed25519_sign(&signing_input, kid_key);
            let at = usize::from(*index) % sig.len();
            sig[at] ^= xor.get();
            (sig, false)
        }
        Signer::Empty => (Vec::new(), false),
        // 64 arbitrary bytes are a valid signature with probability 2^-252.
        Signer::Garbage(bytes) => (bytes.clone(), false),
        Signer::HmacWithPublicKey => (hs256_with_public_key(&signing_input, kid_key), false),
    };
    let mut token = format!("{signing_input}.{}", b64(&signature));
    let plain_form = match &input.trailer {
        Trailer::None => true,
        Trailer::ExtraSegment(s) => {
            token.push('.');
            token.push_str(s);
            false
        }
        Trailer::Padding => {
            token.push('=');
            false
        }
        Trailer::Newline => {
            token.push('\n');
            false
        }
    };

    let expected: Result<(), Refusal> = if token.len() > MAX_TOKEN_BYTES {
        Err(Refusal::Oversized)
    } else if let Err(r) = header_says {
        Err(r)
    } else {
        match claims_verdict(&claims) {
            Some(_) if !(signature_valid && plain_form) => Err(Refusal::SignatureOrClaims),
            None => Err(Refusal::SignatureOrClaims),
            Some((exp, nbf)) => {
                let (now, leeway) = (i128::from(NOW), i128::from(LEEWAY_SECS));
                if now >= i128::from(exp) + leeway {
                    Err(Refusal::Expired)
                } else if i128::from(nbf) > now + leeway {
                    Err(Refusal::NotYetValid)
                } else {
                    Ok(())
                }
            }
        }
    };

    let got = verify(&token, key_for, ISSUER, AUDIENCE, NOW);
    match (&got, expected) {
        (Ok(c), Ok(())) => {
            // The claims handed back are the ones that were signed.
            assert_eq!(Some(&json!(c.sub)), claims.get("sub"));
            assert_eq!(Some(&json!(c.exp)), claims.get("exp"));
            assert_eq!(Some(&json!(c.nbf)), claims.get("nbf"));
            assert_eq!(Some(&json!(c.iat)), claims.get("iat"));
            assert_eq!(Some(&json!(c.sid)), claims.get("sid"));
            assert_eq!(Some(&json!(c.email_verified)), claims.get("email_verified"));
            assert_eq!(
                claims.get("roles").cloned().unwrap_or(json!([])),
                json!(c.roles)
            );
        }
        (Err(r), Err(e)) if *r == e => {}
        _ => panic!(
            "oracle says {expected:?}, verify says {got:?}\nheader: {}\nclaims: {}\ntoken: {token}",
            Value::Object(header),
            Value::Object(claims),
        ),
    }
});
