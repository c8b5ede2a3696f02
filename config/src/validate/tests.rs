#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

fn key_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(0xfb);
    }
    bytes
}

fn with(f: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::default();
    f(&mut s);
    s
}

fn err(s: &Settings) -> ConfigError {
    s.validate().expect_err("should be invalid")
}

#[test]
fn a_bad_bind_names_the_key_and_the_fix() {
    let e = err(&with(|s| s.bind = "abc".into()));
    assert_eq!(
        e.to_string(),
        "KEYWARD_BIND: \"abc\" is not a socket address (expected host:port, e.g. 127.0.0.1:8080)"
    );
    let e = err(&with(|s| s.management_bind = "localhost".into()));
    assert_eq!(e.key(), "KEYWARD_MANAGEMENT_BIND");
}

#[test]
fn port_zero_is_allowed_for_both_listeners() {
    with(|s| {
        s.bind = "127.0.0.1:0".into();
        s.management_bind = "127.0.0.1:0".into();
    })
    .validate()
    .unwrap();
}

#[test]
fn both_listeners_on_the_same_address_are_refused() {
    let e = err(&with(|s| s.management_bind = s.bind.clone()));
    assert_eq!(e.key(), "KEYWARD_MANAGEMENT_BIND");
}

#[test]
fn only_sqlite_and_postgres_databases_are_accepted() {
    for ok in [
        "sqlite::memory:",
        "sqlite:///var/lib/keyward/keyward.db",
        "postgres://u:p@db/keyward",
        "postgresql://db:5432/keyward",
    ] {
        let s = with(|s| {
            s.database_url = ok.into();
            s.master_key = Some(STANDARD.encode(key_bytes()).into());
        });
        s.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let e = err(&with(|s| s.database_url = "mysql://u:hunter2@db/k".into()));
    assert_eq!(e.key(), "KEYWARD_DATABASE_URL");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn public_url_must_be_plain_http_or_https() {
    for ok in ["https://id.example.com", "http://127.0.0.1:8080/auth"] {
        with(|s| s.public_url = Some(ok.into())).validate().unwrap();
    }
    for bad in [
        "ftp://id.example.com",
        "https://id.example.com/?x=1",
        "https://id.example.com/#top",
        "id.example.com",
        "https://u:p@id.example.com",
    ] {
        let e = err(&with(|s| s.public_url = Some(bad.into())));
        assert_eq!(e.key(), "KEYWARD_PUBLIC_URL", "{bad}");
    }
}

#[test]
fn broker_and_mail_urls_must_use_their_schemes_without_leaking_them() {
    let key = STANDARD.encode(key_bytes());
    let e = err(&with(|s| {
        s.amqp_url = Some("http://u:topsecret@mq".into());
        s.master_key = Some(key.clone().into());
    }));
    assert_eq!(e.key(), "KEYWARD_AMQP_URL");
    assert!(!e.to_string().contains("topsecret"), "{e}");

    let e = err(&with(|s| s.smtp_url = Some("smtp://u:top/secret@".into())));
    assert_eq!(e.key(), "KEYWARD_SMTP_URL");
    assert!(!e.to_string().contains("secret@"), "{e}");

    with(|s| {
        s.amqp_url = Some("amqps://u:p@mq:5671/%2f".into());
        s.smtp_url = Some("smtps://u:p@smtp.example.com:465".into());
        s.master_key = Some(key.into());
    })
    .validate()
    .unwrap();
}

#[test]
fn distributed_mode_without_a_master_key_is_refused() {
    let e = err(&with(|s| s.database_url = "postgres://u:p@db/k".into()));
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
    assert!(e.to_string().contains("KEYWARD_MASTER_KEY_FILE"), "{e}");
    let e = err(&with(|s| s.amqp_url = Some("amqp://mq".into())));
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
}

#[test]
fn the_master_key_accepts_standard_and_url_safe_base64() {
    let bytes = key_bytes();
    for text in [
        STANDARD.encode(bytes),
        STANDARD.encode(bytes).trim_end_matches('=').to_owned(),
        URL_SAFE_NO_PAD.encode(bytes),
        format!(
            "  {}\n",
            base64::engine::general_purpose::URL_SAFE.encode(bytes)
        ),
    ] {
        let s = with(|s| s.master_key = Some(text.clone().into()));
        assert_eq!(s.master_key_bytes().unwrap(), Some(bytes), "{text}");
    }
}

#[test]
fn a_bad_master_key_is_refused_without_echoing_it() {
    let short = STANDARD.encode([7u8; 16]);
    let e = with(|s| s.master_key = Some(short.clone().into()))
        .master_key_bytes()
        .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
    assert!(e.to_string().contains("16 bytes"), "{e}");
    assert!(!e.to_string().contains(&short), "{e}");

    let e = err(&with(|s| s.master_key = Some("not base64 at all!".into())));
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
    assert!(e.to_string().contains("openssl rand -base64 32"), "{e}");
}

#[test]
fn master_key_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, format!("{}\n", STANDARD.encode(key_bytes()))).unwrap();
    let s = with(|s| s.master_key_file = Some(path.clone()));
    assert_eq!(s.master_key_bytes().unwrap(), Some(key_bytes()));

    let missing = with(|s| s.master_key_file = Some(dir.path().join("nope")));
    let e = missing.master_key_bytes().unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY_FILE");

    std::fs::write(&path, "AAAA\n").unwrap();
    let e = s.master_key_bytes().unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY_FILE");
    assert!(e.to_string().contains("master.key"), "{e}");
}

#[test]
fn both_master_key_sources_are_refused() {
    let e = with(|s| {
        s.master_key = Some(STANDARD.encode(key_bytes()).into());
        s.master_key_file = Some("/run/secrets/key".into());
    })
    .master_key_bytes()
    .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
    assert!(e.to_string().contains("KEYWARD_MASTER_KEY_FILE"), "{e}");
}

#[test]
fn numeric_limits_are_enforced() {
    let cases: Vec<(&str, Settings)> = vec![
        (
            "KEYWARD_TOKENS__ACCESS_TTL_SECS",
            with(|s| s.tokens.access_ttl_secs = 0),
        ),
        (
            "KEYWARD_TOKENS__REFRESH_ABSOLUTE_TTL_SECS",
            with(|s| s.tokens.refresh_absolute_ttl_secs = s.tokens.refresh_idle_ttl_secs - 1),
        ),
        (
            "KEYWARD_TOKENS__AUDIENCE",
            with(|s| s.tokens.audience.clear()),
        ),
        (
            "KEYWARD_TOKENS__SESSION_RECHECK_MS",
            with(|s| s.tokens.session_recheck_ms = 1001),
        ),
        (
            "KEYWARD_PASSWORDS__MIN_LENGTH",
            with(|s| s.passwords.min_length = 7),
        ),
        (
            "KEYWARD_PASSWORDS__MIN_LENGTH",
            with(|s| s.passwords.min_length = 129),
        ),
        (
            "KEYWARD_PASSWORDS__MAX_LENGTH",
            with(|s| {
                s.passwords.min_length = 20;
                s.passwords.max_length = 19;
            }),
        ),
        (
            "KEYWARD_PASSWORDS__MAX_LENGTH",
            with(|s| s.passwords.max_length = 1025),
        ),
        (
            "KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB",
            with(|s| s.passwords.argon2_memory_kib = 7),
        ),
        (
            "KEYWARD_PASSWORDS__ARGON2_ITERATIONS",
            with(|s| s.passwords.argon2_iterations = 0),
        ),
        (
            "KEYWARD_PASSWORDS__ARGON2_PARALLELISM",
            with(|s| s.passwords.argon2_parallelism = 0),
        ),
        (
            "KEYWARD_HTTP__MAX_BODY_BYTES",
            with(|s| s.http.max_body_bytes = 0),
        ),
        (
            "KEYWARD_HTTP__REQUEST_TIMEOUT_SECS",
            with(|s| s.http.request_timeout_secs = 0),
        ),
        ("KEYWARD_MAIL_FROM", with(|s| s.mail_from = "nobody".into())),
        ("KEYWARD_LOG", with(|s| s.log = " ".into())),
        ("KEYWARD_DATA_DIR", with(|s| s.data_dir = "".into())),
    ];
    for (key, settings) in cases {
        let e = err(&settings);
        assert_eq!(e.key(), key, "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}

fn with_s3(f: impl FnOnce(&mut crate::AvatarSettings)) -> Settings {
    with(|s| {
        s.avatars.s3_endpoint = Some("http://127.0.0.1:9000".into());
        s.avatars.s3_bucket = Some("keyward-avatars".into());
        s.avatars.s3_region = Some("us-east-1".into());
        s.avatars.s3_access_key_id = Some("AKID".into());
        s.avatars.s3_secret_access_key = Some("s3-secret".into());
        f(&mut s.avatars);
    })
}

#[test]
fn a_complete_s3_avatar_store_is_accepted() {
    let s = with_s3(|_| {});
    s.validate().unwrap();
    assert!(s.avatars.s3().unwrap().is_some());
}

#[test]
fn half_an_s3_avatar_store_names_the_first_missing_key() {
    let cases: Vec<(&str, Settings)> = vec![
        (
            "KEYWARD_AVATARS__S3_ENDPOINT",
            with_s3(|a| a.s3_endpoint = None),
        ),
        (
            "KEYWARD_AVATARS__S3_BUCKET",
            with_s3(|a| a.s3_bucket = None),
        ),
        (
            "KEYWARD_AVATARS__S3_REGION",
            with_s3(|a| a.s3_region = None),
        ),
        (
            "KEYWARD_AVATARS__S3_ACCESS_KEY_ID",
            with_s3(|a| a.s3_access_key_id = None),
        ),
        (
            "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY",
            with_s3(|a| a.s3_secret_access_key = None),
        ),
        (
            "KEYWARD_AVATARS__S3_BUCKET",
            with(|s| s.avatars.s3_endpoint = Some("http://127.0.0.1:9000".into())),
        ),
    ];
    for (key, settings) in cases {
        let e = err(&settings);
        assert_eq!(e.key(), key, "{e}");
        let text = e.to_string();
        assert!(!text.contains('\n'));
        assert!(text.contains("unset them all"), "{text}");
        assert!(!text.contains("s3-secret"), "{text}");
    }
    let e = err(&with(|s| {
        s.avatars.s3_secret_access_key = Some("s3-secret".into());
    }));
    assert_eq!(
        e.to_string(),
        "KEYWARD_AVATARS__S3_ENDPOINT: is not set, but KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY is: \
         the S3 avatar store needs all of KEYWARD_AVATARS__S3_ENDPOINT, KEYWARD_AVATARS__S3_BUCKET, \
         KEYWARD_AVATARS__S3_REGION, KEYWARD_AVATARS__S3_ACCESS_KEY_ID and \
         KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY (or KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY_FILE); \
         set KEYWARD_AVATARS__S3_ENDPOINT, or unset them all to keep avatars under {data_dir}/avatars"
    );
}

#[test]
fn the_s3_secret_and_its_file_are_mutually_exclusive() {
    let e = err(&with_s3(|a| {
        a.s3_secret_access_key_file = Some("/s".into())
    }));
    assert_eq!(e.key(), "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY");
    assert!(e.to_string().contains("set only one"), "{e}");
}

#[test]
fn an_unreadable_or_empty_s3_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let e = err(&with_s3(|a| {
        a.s3_secret_access_key = None;
        a.s3_secret_access_key_file = Some(missing.clone());
    }));
    assert_eq!(e.key(), "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY_FILE");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let e = err(&with_s3(|a| {
        a.s3_secret_access_key = None;
        a.s3_secret_access_key_file = Some(empty.clone());
    }));
    assert_eq!(e.key(), "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY_FILE");
    assert!(e.to_string().contains("is empty"), "{e}");
}

#[test]
fn bad_avatar_values_name_their_key() {
    let cases: Vec<(&str, Settings)> = vec![
        (
            "KEYWARD_AVATARS__S3_ENDPOINT",
            with_s3(|a| a.s3_endpoint = Some("s3.example.com".into())),
        ),
        (
            "KEYWARD_AVATARS__S3_ENDPOINT",
            with_s3(|a| a.s3_endpoint = Some("ftp://s3.example.com".into())),
        ),
        (
            "KEYWARD_AVATARS__S3_ENDPOINT",
            with_s3(|a| a.s3_endpoint = Some("https://k:hunter2@s3.example.com".into())),
        ),
        (
            "KEYWARD_AVATARS__S3_BUCKET",
            with_s3(|a| a.s3_bucket = Some("Avatars".into())),
        ),
        (
            "KEYWARD_AVATARS__S3_BUCKET",
            with_s3(|a| a.s3_bucket = Some("ab".into())),
        ),
        (
            "KEYWARD_AVATARS__S3_BUCKET",
            with_s3(|a| a.s3_bucket = Some("a/b/c".into())),
        ),
        (
            "KEYWARD_AVATARS__S3_REGION",
            with_s3(|a| a.s3_region = Some("eu central".into())),
        ),
        (
            "KEYWARD_AVATARS__PUBLIC_BASE_URL",
            with(|s| s.avatars.public_base_url = Some("cdn.example.com".into())),
        ),
        (
            "KEYWARD_AVATARS__PUBLIC_BASE_URL",
            with(|s| s.avatars.public_base_url = Some("https://cdn.example.com/?v=1".into())),
        ),
        (
            "KEYWARD_AVATARS__MAX_BYTES",
            with(|s| s.avatars.max_bytes = 1023),
        ),
        (
            "KEYWARD_AVATARS__MAX_BYTES",
            with(|s| s.avatars.max_bytes = 64 * 1024 * 1024 + 1),
        ),
        (
            "KEYWARD_AVATARS__MAX_PIXELS",
            with(|s| s.avatars.max_pixels = 100),
        ),
        (
            "KEYWARD_AVATARS__MAX_PIXELS",
            with(|s| s.avatars.max_pixels = 100_000_001),
        ),
    ];
    for (key, settings) in cases {
        let e = err(&settings);
        assert_eq!(e.key(), key, "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}

fn rp(m: &crate::MfaSettings, public: &str) -> Result<(String, Vec<String>), ConfigError> {
    m.relying_party(public).map(|r| {
        let origins = r
            .origins
            .iter()
            .map(|o| o.origin().ascii_serialization())
            .collect();
        (r.rp_id, origins)
    })
}

#[test]
fn passkeys_default_to_the_public_url_and_to_localhost_on_a_loopback_address() {
    let m = crate::MfaSettings::default();
    assert_eq!(
        rp(&m, "https://id.example.com").unwrap(),
        (
            "id.example.com".into(),
            vec!["https://id.example.com".into()]
        )
    );
    assert_eq!(
        rp(&m, "http://127.0.0.1:8080").unwrap(),
        ("localhost".into(), vec!["http://localhost:8080".into()])
    );
    let e = rp(&m, "http://10.0.0.5:8080").unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MFA__RP_ID");
    assert!(e.to_string().contains("IP address"), "{e}");
}

#[test]
fn passkey_origins_must_be_on_the_rp_id() {
    let m = crate::MfaSettings {
        rp_id: Some("example.com".into()),
        origins: "https://app.example.com, https://example.com".into(),
    };
    assert_eq!(
        rp(&m, "https://id.example.com").unwrap(),
        (
            "example.com".into(),
            vec![
                "https://app.example.com".into(),
                "https://example.com".into()
            ]
        )
    );
    let bad = crate::MfaSettings {
        rp_id: Some("example.com".into()),
        origins: "https://evil-example.com".into(),
    };
    assert_eq!(
        rp(&bad, "https://id.example.com").unwrap_err().key(),
        "KEYWARD_MFA__ORIGINS"
    );
    let e = err(&with(|s| s.mfa.rp_id = Some("https://example.com".into())));
    assert_eq!(e.key(), "KEYWARD_MFA__RP_ID");
    let e = err(&with(|s| s.mfa.rp_id = Some("192.168.1.2".into())));
    assert_eq!(e.key(), "KEYWARD_MFA__RP_ID");
    let e = err(&with(|s| {
        s.mfa.origins = "https://a.example.com/path".into()
    }));
    assert_eq!(e.key(), "KEYWARD_MFA__ORIGINS");
    let e = err(&with(|s| {
        s.public_url = Some("https://id.example.com".into());
        s.mfa.rp_id = Some("other.org".into());
    }));
    assert_eq!(e.key(), "KEYWARD_MFA__RP_ID");
}

fn with_vault(f: impl FnOnce(&mut crate::KeySettings)) -> Settings {
    with(|s| {
        s.keys.backend = "vault".into();
        s.keys.vault_addr = Some("https://vault.internal:8200/".into());
        s.keys.vault_token = Some(SecretString::from("hvs.very-secret-token"));
        f(&mut s.keys);
    })
}

#[test]
fn the_vault_backend_is_read_complete_with_its_token() {
    let s = with_vault(|_| {});
    s.validate().unwrap();
    let crate::KeyBackend::Vault(v) = s.keys.backend().unwrap() else {
        panic!("vault")
    };
    assert_eq!(v.addr, "https://vault.internal:8200");
    assert_eq!((v.mount.as_str(), v.key.as_str()), ("transit", "keyward"));
    assert_eq!(v.token.expose_secret(), "hvs.very-secret-token");
    assert_eq!(v.timeout, std::time::Duration::from_secs(2));
    assert!(!format!("{:?}", s.keys).contains("very-secret"));
    assert!(matches!(
        Settings::default().keys.backend().unwrap(),
        crate::KeyBackend::Local
    ));
}

#[test]
fn a_bad_vault_setting_names_its_key_and_never_the_token() {
    let cases: Vec<(Settings, &str, &str)> = vec![
        (
            with(|s| s.keys.backend = "hsm".into()),
            "KEYWARD_KEYS__BACKEND",
            "local or vault",
        ),
        (
            with_vault(|k| k.vault_addr = None),
            "KEYWARD_KEYS__VAULT_ADDR",
            "is not set",
        ),
        (
            with_vault(|k| k.vault_addr = Some("vault.internal:8200".into())),
            "KEYWARD_KEYS__VAULT_ADDR",
            "",
        ),
        (
            with_vault(|k| k.vault_token = None),
            "KEYWARD_KEYS__VAULT_TOKEN",
            "is not set",
        ),
        (
            with_vault(|k| k.vault_token_file = Some("/t".into())),
            "KEYWARD_KEYS__VAULT_TOKEN",
            "set only one",
        ),
        (
            with_vault(|k| k.vault_mount = "tran sit".into()),
            "KEYWARD_KEYS__VAULT_MOUNT",
            "not a mount path",
        ),
        (
            with_vault(|k| k.vault_key = "a/b".into()),
            "KEYWARD_KEYS__VAULT_KEY",
            "not a Transit key name",
        ),
        (
            with_vault(|k| k.vault_timeout_ms = 10),
            "KEYWARD_KEYS__VAULT_TIMEOUT_MS",
            "out of range",
        ),
    ];
    for (s, key, says) in cases {
        let e = err(&s);
        assert_eq!(e.key(), key, "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert!(!e.to_string().contains("very-secret"), "{e}");
    }
}

#[test]
fn the_vault_token_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "hvs.from-file\n").unwrap();
    let s = with_vault(|k| {
        k.vault_token = None;
        k.vault_token_file = Some(file.clone());
    });
    let crate::KeyBackend::Vault(v) = s.keys.backend().unwrap() else {
        panic!("vault")
    };
    assert_eq!(v.token.expose_secret(), "hvs.from-file");
    assert_eq!(v.token_file.as_deref(), Some(file.as_path()));
}

#[test]
fn a_zero_budget_of_sign_ins_per_ip_names_its_key() {
    let e = err(&with(|s| s.throttle.ceremonies_per_ip_per_hour = 0));
    assert_eq!(e.key(), "KEYWARD_THROTTLE__CEREMONIES_PER_IP_PER_HOUR");
}
