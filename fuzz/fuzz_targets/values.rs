//! The value types' constructors on arbitrary text. The first byte picks the field name, the rest
//! (as lossy UTF-8) is the raw input. For every type:
//! - parsing never panics, and a refusal names the field it was given;
//! - an accepted Username is stored as typed (trimmed, NFKC), an accepted Email as its one canonical
//!   form (ASCII, lower-case, at most 254 bytes, the same for every spelling of the mailbox);
//!   parsing the string form again gives an equal value (and the same lookup key);
//! - JSON decoding (`serde(try_from = "String")`) accepts exactly what `parse` accepts.
#![no_main]

use keyward_messages::values::PASSWORD_MAX_BYTES;
use keyward_messages::{Email, FieldError, LoginId, Password, SessionId, UserId, Username};
use libfuzzer_sys::fuzz_target;

const FIELDS: [&str; 6] = ["email", "username", "login", "password", "session_id", ""];

fn assert_refusal(e: &FieldError, field: &str, codes: &[&str], raw: &str) {
    assert_eq!(e.field, field, "{raw:?}");
    assert!(
        codes.contains(&e.code.as_str()),
        "code {:?} for {raw:?}",
        e.code
    );
    assert!(!e.message.is_empty());
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The fullwidth twin (U+FF01..=U+FF5E) of every printable ASCII character; NFKC and IDNA
/// both map it back.
fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn email(field: &str, raw: &str) {
    let parsed = Email::parse(field, raw);
    match &parsed {
        Ok(e) => {
            // One canonical form: ASCII, lower-case, within the SMTP path limit.
            let s = e.as_str();
            assert!(!s.is_empty() && s.len() <= keyward_messages::values::EMAIL_MAX_LEN);
            assert!(s.is_ascii(), "canonical form is ASCII: {raw:?} -> {s:?}");
            assert_eq!(s, s.to_ascii_lowercase(), "{raw:?}");
            assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{s:?}");
            let (local, domain) = s.rsplit_once('@').expect("an @");
            assert_eq!(local, e.local_part());
            assert!(
                !local.is_empty() && local.len() <= 64 && !local.contains('"'),
                "{s:?}"
            );
            assert!(domain.contains('.') && !domain.starts_with('['), "{s:?}");
            // Idempotent, and every way of printing it is the canonical form.
            assert_eq!(Email::parse(field, s).as_ref(), Ok(e), "re-parse {s:?}");
            assert_eq!(e.to_string(), s);
            assert_eq!(String::from(e.clone()), s);
            assert_eq!(e.normalized(), s);
            assert_eq!(serde_json::to_string(e).ok(), Some(json_string(s)));
            // Spellings of the same mailbox are the same address: the typed input in any
            // ASCII case, the canonical form upper-cased, fullwidth, or with a KELVIN SIGN.
            let variants = [
                raw.to_ascii_lowercase(),
                raw.to_ascii_uppercase(),
                s.to_ascii_uppercase(),
                fullwidth(local) + "@" + domain,
                local.to_owned() + "@" + &fullwidth(domain),
                local.replace('k', "\u{212A}") + "@" + domain,
            ];
            for variant in variants {
                let other = Email::parse(field, &variant);
                assert_eq!(other.as_ref(), Ok(e), "{raw:?} vs {variant:?}");
            }
        }
        Err(err) => assert_refusal(
            err,
            field,
            &[
                "required",
                "too_long",
                "invalid_email",
                "quoted_local_part_unsupported",
                "ip_literal_unsupported",
                "non_ascii_local_part_unsupported",
            ],
            raw,
        ),
    }
    // JSON decoding goes through the same constructor, under the field name "email".
    let decoded = serde_json::from_str::<Email>(&json_string(raw));
    match (Email::parse("email", raw), decoded) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert!(b.to_string().starts_with(&a.message), "{a:?} vs {b}"),
        (a, b) => panic!("parse says {a:?}, JSON decoding says {b:?} for {raw:?}"),
    }
}

fn username(field: &str, raw: &str) {
    use unicode_normalization::UnicodeNormalization;
    match Username::parse(field, raw) {
        Ok(u) => {
            let s = u.as_str();
            let typed: String = raw.trim().nfkc().collect();
            assert_eq!(s, typed, "stored as typed: trimmed, NFKC");
            assert!((Username::MIN..=Username::MAX).contains(&s.chars().count()));
            assert!(s
                .chars()
                .all(|c| c.is_alphabetic() || c.is_ascii_digit() || "_.-".contains(c)));
            assert!(!s.contains('@'), "a username never looks like an email");
            assert_eq!(Username::parse(field, s).as_ref(), Ok(&u), "re-parse");
            assert_eq!(u.to_string(), s);
            // The lookalike key: the same for the stored form, and lower-case.
            let key = u.normalized();
            assert_eq!(
                Username::parse(field, s).map(|r| r.normalized()),
                Ok(key.clone())
            );
            assert_eq!(key.to_lowercase(), key, "the key is lower-case");
        }
        Err(err) => assert_refusal(
            &err,
            field,
            &["invalid_length", "invalid_username", "mixed_script"],
            raw,
        ),
    }
    let decoded = serde_json::from_str::<Username>(&json_string(raw));
    match (Username::parse("username", raw), decoded) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert!(b.to_string().starts_with(&a.message), "{a:?} vs {b}"),
        (a, b) => panic!("parse says {a:?}, JSON decoding says {b:?} for {raw:?}"),
    }
}

fn login_id(field: &str, raw: &str) {
    match LoginId::parse(field, raw) {
        Ok(LoginId::Email(e)) => {
            assert!(raw.contains('@'));
            assert_eq!(Email::parse(field, raw), Ok(e));
        }
        Ok(LoginId::Username(u)) => {
            assert!(!raw.contains('@'));
            assert_eq!(Username::parse(field, raw), Ok(u));
        }
        Err(err) if raw.trim().is_empty() => {
            assert_refusal(&err, field, &["required"], raw);
        }
        Err(err) => {
            // Otherwise the refusal is exactly the one of the type the input looks like.
            let direct = if raw.contains('@') {
                Email::parse(field, raw).map(|_| ())
            } else {
                Username::parse(field, raw).map(|_| ())
            };
            assert_eq!(direct, Err(err), "{raw:?}");
        }
    }
}

fn password(field: &str, raw: &str) {
    match Password::parse(field, raw.to_owned()) {
        Ok(p) => {
            assert!(!raw.is_empty() && raw.len() <= PASSWORD_MAX_BYTES);
            assert_eq!(p.expose(), raw, "never trimmed nor truncated");
            assert_eq!(format!("{p:?}"), "Password(***)", "never printed");
        }
        Err(err) => {
            let code = if raw.is_empty() {
                "required"
            } else {
                "too_long"
            };
            assert_refusal(&err, field, &[code], raw);
            assert!(raw.is_empty() || raw.len() > PASSWORD_MAX_BYTES);
        }
    }
    // The byte limit is exact whatever the prefix: pad to PASSWORD_MAX_BYTES, then one more.
    if raw.len() < PASSWORD_MAX_BYTES {
        let full = format!("{raw}{}", "x".repeat(PASSWORD_MAX_BYTES - raw.len()));
        assert!(Password::parse(field, full.clone()).is_ok());
        let over = Password::parse(field, full + "x").expect_err("one byte over the limit");
        assert_refusal(&over, field, &["too_long"], raw);
    }
}

macro_rules! uuid_id {
    ($ty:ident, $field:expr, $raw:expr) => {{
        let (field, raw): (&str, &str) = ($field, $raw);
        match $ty::parse(field, raw) {
            Ok(id) => {
                let s = id.to_string();
                assert_eq!(s.len(), 36, "hyphenated form: {s}");
                assert_eq!(s, s.to_ascii_lowercase());
                assert_eq!($ty::parse(field, &s), Ok(id), "re-parse");
                assert_eq!(serde_json::to_string(&id).ok(), Some(json_string(&s)));
                assert_eq!(serde_json::from_str::<$ty>(&json_string(&s)).ok(), Some(id));
            }
            Err(err) => assert_refusal(&err, field, &["invalid_id"], raw),
        }
        // JSON decoding does not trim, so it accepts a subset of what parse accepts.
        if let Ok(id) = serde_json::from_str::<$ty>(&json_string(raw)) {
            assert_eq!($ty::parse(field, raw), Ok(id), "{raw:?}");
        }
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let field = FIELDS[usize::from(pick) % FIELDS.len()];
    let raw = String::from_utf8_lossy(rest);
    let raw = raw.as_ref();

    email(field, raw);
    username(field, raw);
    login_id(field, raw);
    password(field, raw);
    uuid_id!(UserId, field, raw);
    uuid_id!(SessionId, field, raw);
});
