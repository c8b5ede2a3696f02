#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn an_email_is_trimmed_and_compared_case_insensitively() {
    let a = Email::parse("email", "  Alice@Example.COM ").unwrap();
    assert_eq!(a.as_str(), "alice@example.com");
    assert_eq!(a.normalized(), "alice@example.com");
}

fn canonical(raw: &str) -> String {
    Email::parse("email", raw).unwrap().as_str().to_owned()
}

fn refusal(raw: &str) -> String {
    let e = Email::parse("email", raw).unwrap_err();
    assert_eq!(e.field, "email", "{raw:?}");
    // Every refusal but a length one says what a good address looks like.
    assert!(
        e.code == "too_long" || e.message.contains("name@example.com"),
        "{e:?}"
    );
    e.code
}

#[test]
fn a_kelvin_sign_in_the_local_part_is_the_letter_k() {
    assert_eq!(canonical("\u{212A}ate@example.com"), "kate@example.com");
    assert_eq!(
        Email::parse("email", "\u{212A}ate@example.com").unwrap(),
        Email::parse("email", "kate@example.com").unwrap()
    );
}

#[test]
fn fullwidth_letters_are_their_ascii_letters_on_both_sides_of_the_at() {
    assert_eq!(canonical("\u{FF41}lice@example.com"), "alice@example.com");
    assert_eq!(
        canonical("ＡＬＩＣＥ@ＥＸＡＭＰＬＥ.ｃｏｍ"),
        "alice@example.com"
    );
}

#[test]
fn an_idn_domain_and_its_punycode_are_one_address() {
    assert_eq!(canonical("x@bücher.example"), "x@xn--bcher-kva.example");
    assert_eq!(canonical("x@BÜCHER.example"), "x@xn--bcher-kva.example");
    assert_eq!(
        canonical("x@XN--BCHER-KVA.example"),
        "x@xn--bcher-kva.example"
    );
    assert_eq!(
        Email::parse("email", "x@bücher.example").unwrap(),
        Email::parse("email", "x@xn--bcher-kva.example").unwrap()
    );
}

#[test]
fn display_serde_and_the_lookup_key_all_give_the_canonical_form() {
    let e = Email::parse("email", "Bob@Bücher.Example").unwrap();
    assert_eq!(e.to_string(), "bob@xn--bcher-kva.example");
    assert_eq!(e.normalized(), e.as_str());
    assert_eq!(e.local_part(), "bob");
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        "\"bob@xn--bcher-kva.example\""
    );
    let back: Email = serde_json::from_str("\"BOB@xn--bcher-kva.example\"").unwrap();
    assert_eq!(back, e);
}

#[test]
fn a_quoted_local_part_is_refused_as_undeliverable() {
    assert_eq!(
        refusal("\"a@b\"@example.com"),
        "quoted_local_part_unsupported"
    );
    assert_eq!(
        refusal("\"alice\"@example.com"),
        "quoted_local_part_unsupported"
    );
    // A fullwidth quotation mark becomes a quote under NFKC.
    assert_eq!(
        refusal("\u{FF02}alice\u{FF02}@example.com"),
        "quoted_local_part_unsupported"
    );
}

#[test]
fn an_ip_literal_domain_is_refused_as_undeliverable() {
    assert_eq!(refusal("alice@[127.0.0.1]"), "ip_literal_unsupported");
    assert_eq!(refusal("alice@[IPv6:::1]"), "ip_literal_unsupported");
    assert_eq!(refusal("alice@1.2.3.4"), "ip_literal_unsupported");
    assert_eq!(refusal("alice@１.２.３.４"), "ip_literal_unsupported");
}

#[test]
fn a_local_part_that_stays_non_ascii_is_refused() {
    for raw in [
        "jörg@example.com",
        "İnci@example.com",
        "straße@example.com",
        "a\u{200B}b@example.com",
    ] {
        assert_eq!(refusal(raw), "non_ascii_local_part_unsupported", "{raw:?}");
    }
}

#[test]
fn a_local_part_must_be_a_dot_atom_of_at_most_64_bytes() {
    for raw in [
        ".a@example.com",
        "a.@example.com",
        "a..b@example.com",
        "a(b)@example.com",
        "a,b@example.com",
        "a@b@example.com",
    ] {
        assert_eq!(refusal(raw), "invalid_email", "{raw:?}");
    }
    assert_eq!(
        canonical("o'Neil+tag.x_y@example.com"),
        "o'neil+tag.x_y@example.com"
    );
    assert!(Email::parse("email", &format!("{}@example.com", "a".repeat(64))).is_ok());
    assert_eq!(
        refusal(&format!("{}@example.com", "a".repeat(65))),
        "too_long"
    );
}

#[test]
fn a_domain_must_be_at_least_two_ldh_labels_of_at_most_63_bytes() {
    for raw in [
        "a@localhost",
        "a@example.com.",
        "a@-example.com",
        "a@example-.com",
        "a@exa_mple.com",
        "a@example..com",
        "a@xn--zz.example",
        &format!("a@{}.com", "b".repeat(64)),
    ] {
        assert_eq!(refusal(raw), "invalid_email", "{raw:?}");
    }
    assert!(Email::parse("email", &format!("a@{}.com", "b".repeat(63))).is_ok());
}

#[test]
fn the_whole_canonical_address_has_at_most_254_bytes() {
    let label = "d".repeat(60);
    let domain = format!("{label}.{label}.{label}.{}.com", "d".repeat(40));
    let ok = format!("{}@{domain}", "a".repeat(254 - 1 - domain.len()));
    assert_eq!(canonical(&ok).len(), 254);
    let over = format!("a{ok}");
    assert_eq!(refusal(&over), "too_long");
    // An IDN label grows under punycode; the limit is on what is stored and mailed to.
    let idn = format!("{}@{}com", "a".repeat(64), "bücher.".repeat(14));
    assert!(idn.chars().count() <= 254);
    assert_eq!(refusal(&idn), "too_long");
}

#[test]
fn every_accepted_address_is_ascii_and_parses_to_itself() {
    let letters = [
        "a", "K", "\u{212A}", "\u{FF41}", "ü", "ſ", "ﬁ", ".", "-", "+", "1", "İ", "ß", "@", "\"",
        "[",
    ];
    let mut accepted = 0;
    for a in letters {
        for b in letters {
            for domain in [
                "example.com",
                "bücher.example",
                "ＥＸＡＭＰＬＥ.com",
                "1.2.3.4",
                "a-b.c",
            ] {
                let raw = format!("x{a}{b}@{domain}");
                let Ok(e) = Email::parse("email", &raw) else {
                    continue;
                };
                accepted += 1;
                let s = e.as_str();
                assert!(s.is_ascii() && s.len() <= EMAIL_MAX_LEN, "{raw:?} -> {s:?}");
                assert_eq!(s, s.to_ascii_lowercase(), "{raw:?}");
                assert_eq!(
                    Email::parse("email", s).as_ref(),
                    Ok(&e),
                    "{raw:?} -> {s:?}"
                );
                assert_eq!(
                    Email::parse("email", &s.to_ascii_uppercase()).as_ref(),
                    Ok(&e)
                );
            }
        }
    }
    assert!(accepted > 100, "{accepted}");
}

#[test]
fn malformed_emails_are_rejected_naming_the_field() {
    for bad in [
        "",
        "alice",
        "alice@",
        "@example.com",
        "a b@example.com",
        "alice@localhost",
        "a@b.",
    ] {
        let e = Email::parse("email", bad).unwrap_err();
        assert_eq!(e.field, "email", "{bad}");
    }
    let long = format!("{}@example.com", "a".repeat(250));
    assert_eq!(Email::parse("email", &long).unwrap_err().code, "too_long");
}

#[test]
fn json_decoding_validates_an_email() {
    assert!(serde_json::from_str::<Email>("\"not-an-email\"").is_err());
    assert!(serde_json::from_str::<Email>("\"bob@example.org\"").is_ok());
}

#[test]
fn a_username_with_a_slash_or_at_sign_is_rejected() {
    assert!(Username::parse("username", "bob/evil").is_err());
    assert!(Username::parse("username", "bob@x").is_err());
    assert!(Username::parse("username", "_bob").is_err());
    assert!(Username::parse("username", "ab").is_err());
    assert_eq!(
        Username::parse("username", "Bob.Smith-1")
            .unwrap()
            .normalized(),
        // The confusable skeleton: "m" reads as "rn", "1" as "l".
        "bob.srnith-l"
    );
}

#[test]
fn a_login_with_an_at_sign_is_an_email() {
    assert!(matches!(
        LoginId::parse("login", "a@example.com").unwrap(),
        LoginId::Email(_)
    ));
    assert_eq!(
        LoginId::parse("login", "\u{212A}ate@Example.com").unwrap(),
        LoginId::Email(Email::parse("email", "kate@example.com").unwrap())
    );
    assert!(matches!(
        LoginId::parse("login", "alice").unwrap(),
        LoginId::Username(_)
    ));
    assert_eq!(LoginId::parse("login", " ").unwrap_err().code, "required");
}

#[test]
fn a_password_never_shows_in_debug_output() {
    let p = Password::parse("password", "hunter2-secret".into()).unwrap();
    assert!(!format!("{p:?}").contains("hunter2"));
}

#[test]
fn a_huge_password_is_refused_before_hashing() {
    let e = Password::parse("password", "x".repeat(PASSWORD_MAX_BYTES + 1)).unwrap_err();
    assert_eq!(e.code, "too_long");
}

#[test]
fn usernames_that_read_alike_share_one_key() {
    let key = |s: &str| Username::parse("username", s).unwrap().normalized();
    // All-Cyrillic "сосо" against Latin "coco"; upper case, fullwidth, digit for letter.
    assert_eq!(key("сосо"), key("coco"));
    assert_eq!(key("ALICE"), key("alice"));
    assert_eq!(key("ａｌｉｃｅ"), key("alice"));
    assert_eq!(key("a1ice"), key("alice"));
    assert_ne!(key("alice"), key("alicia"));
    // A name of one non-Latin script is fine and keeps its own key.
    assert_eq!(
        Username::parse("username", "Пётр_1").unwrap().as_str(),
        "Пётр_1"
    );
    assert_ne!(key("пётр"), key("петр"));
}

#[test]
fn a_username_mixing_scripts_is_refused() {
    // Cyrillic а (U+0430) among Latin letters; Latin "p" with Cyrillic "етр".
    for name in ["аlice", "pетр"] {
        assert_eq!(
            Username::parse("username", name).unwrap_err().code,
            "mixed_script"
        );
    }
    assert_eq!(
        Username::parse("username", "ａｌｉｃｅ").unwrap().as_str(),
        "alice"
    );
    assert_eq!(
        Username::parse("username", "bob smith").unwrap_err().code,
        "invalid_username"
    );
}
