#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::{AttributeEdit, AttributeKind, AttributeView, LogFormat};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use secrecy::SecretString;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn write_toml(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn master_key() -> String {
    STANDARD.encode([42u8; 32])
}

#[test]
fn nothing_configured_gives_the_defaults() {
    let s = Settings::load_from(None, &[]).unwrap();
    let d = Settings::default();
    assert_eq!(s.redacted_toml(), d.redacted_toml());
    assert_eq!(s.database_url, d.database_url);
}

#[test]
fn the_file_overrides_the_defaults() {
    let (_dir, path) = write_toml(
        "bind = \"0.0.0.0:80\"\nlog_format = \"json\"\n[tokens]\naccess_ttl_secs = 60\n",
    );
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    assert_eq!(s.bind, "0.0.0.0:80");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.tokens.access_ttl_secs, 60);
    assert_eq!(s.tokens.reset_ttl_secs, 3600, "unset keys keep defaults");
}

#[test]
fn an_env_variable_overrides_the_file() {
    let (_dir, path) = write_toml("bind = \"0.0.0.0:80\"\n[http]\nworkers = 2\n");
    let s = Settings::load_from(
        Some(&path),
        &env(&[
            ("KEYWARD_BIND", "0.0.0.0:8443"),
            ("KEYWARD_HTTP__WORKERS", "16"),
            ("KEYWARD_TOKENS__ACCESS_TTL_SECS", "120"),
            ("KEYWARD_LOG_FORMAT", "pretty"),
        ]),
    )
    .unwrap();
    assert_eq!(s.bind, "0.0.0.0:8443");
    assert_eq!(s.http.workers, 16);
    assert_eq!(s.tokens.access_ttl_secs, 120);
    assert_eq!(s.log_format, LogFormat::Pretty);
}

#[test]
fn keyward_config_names_the_file_when_none_is_passed() {
    let (_dir, path) = write_toml("log = \"debug\"\n");
    let s = Settings::load_from(None, &env(&[("KEYWARD_CONFIG", path.to_str().unwrap())])).unwrap();
    assert_eq!(s.log, "debug");

    let (_other_dir, other) = write_toml("log = \"trace\"\n");
    let s = Settings::load_from(
        Some(&other),
        &env(&[("KEYWARD_CONFIG", path.to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(s.log, "trace", "an explicit path wins over KEYWARD_CONFIG");
}

#[test]
fn a_missing_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Settings::load_from(None, &env(&[("KEYWARD_CONFIG", missing.to_str().unwrap())]))
        .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_CONFIG");
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn invalid_toml_is_one_line_naming_the_file() {
    let (_dir, path) = write_toml("bind = \n");
    let e = Settings::load_from(Some(&path), &[]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConfigError::File { .. }), "{text}");
    assert_eq!(e.key(), "KEYWARD_CONFIG");
    assert!(text.contains("keyward.toml"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn an_empty_env_variable_counts_as_unset() {
    let (_dir, path) = write_toml("bind = \"0.0.0.0:80\"\n");
    let s = Settings::load_from(
        Some(&path),
        &env(&[
            ("KEYWARD_BIND", ""),
            ("KEYWARD_PUBLIC_URL", ""),
            ("KEYWARD_MASTER_KEY", ""),
            ("KEYWARD_TOKENS__ACCESS_TTL_SECS", ""),
            ("KEYWARD_CONFIG", ""),
        ]),
    )
    .unwrap();
    assert_eq!(s.bind, "0.0.0.0:80");
    assert_eq!(s.public_url, None);
    assert!(s.master_key.is_none());
    assert_eq!(s.tokens.access_ttl_secs, 900);
}

#[test]
fn the_database_url_default_follows_data_dir() {
    let s = Settings::load_from(None, &env(&[("KEYWARD_DATA_DIR", "/var/lib/keyward")])).unwrap();
    assert_eq!(
        s.database_url,
        "sqlite:///var/lib/keyward/keyward.db?mode=rwc"
    );

    let (_dir, path) = write_toml("data_dir = \"/srv/kw\"\n");
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    assert_eq!(s.database_url, "sqlite:///srv/kw/keyward.db?mode=rwc");

    let s = Settings::load_from(
        Some(&path),
        &env(&[("KEYWARD_DATABASE_URL", "sqlite::memory:")]),
    )
    .unwrap();
    assert_eq!(s.database_url, "sqlite::memory:", "an explicit URL is kept");
}

#[test]
fn a_wrongly_typed_env_variable_names_the_variable() {
    let e =
        Settings::load_from(None, &env(&[("KEYWARD_TOKENS__ACCESS_TTL_SECS", "abc")])).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_TOKENS__ACCESS_TTL_SECS");
    let text = e.to_string();
    assert!(
        text.starts_with("KEYWARD_TOKENS__ACCESS_TTL_SECS: "),
        "{text}"
    );
    assert!(text.contains("whole number"), "{text}");
    assert!(!text.contains('\n'), "{text}");

    let e = Settings::load_from(None, &env(&[("KEYWARD_HTTP__WORKERS", "-1")])).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_HTTP__WORKERS", "{e}");
}

#[test]
fn a_wrongly_typed_file_key_names_the_variable_and_the_file_key() {
    let (_dir, path) = write_toml("[passwords]\nmin_length = \"long\"\n");
    let e = Settings::load_from(Some(&path), &[]).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_PASSWORDS__MIN_LENGTH");
    assert!(e.to_string().contains("passwords.min_length"), "{e}");
}

#[test]
fn a_wrongly_typed_secret_is_not_echoed() {
    let (_dir, path) = write_toml("master_key = 123456789\n");
    let e = Settings::load_from(Some(&path), &[]).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
    assert!(!e.to_string().contains("123456789"), "{e}");
}

#[test]
fn an_unknown_log_format_lists_the_choices() {
    let e = Settings::load_from(None, &env(&[("KEYWARD_LOG_FORMAT", "xml")])).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_LOG_FORMAT");
    assert!(e.to_string().contains("pretty, json, auto"), "{e}");
}

#[test]
fn numeric_looking_strings_stay_strings() {
    let s = Settings::load_from(
        None,
        &env(&[("KEYWARD_TOKENS__AUDIENCE", "12345"), ("KEYWARD_LOG", "1")]),
    )
    .unwrap();
    assert_eq!(s.tokens.audience, "12345");
    assert_eq!(s.log, "1");
}

#[test]
fn unknown_keys_are_not_fatal() {
    let (_dir, path) = write_toml(
        "colour = \"blue\"\nbind = \"127.0.0.1:1\"\n[tokens]\nttl = 5\n[extra]\nx = 1\n",
    );
    let vars = env(&[
        ("KEYWARD_NOPE", "1"),
        ("KEYWARD_TOKENS_ACCESS_TTL_SECS", "5"),
        ("KEYWARD_TOKENS", "5"),
        ("OTHER_THING", "x"),
    ]);
    let s = Settings::load_from(Some(&path), &vars).unwrap();
    assert_eq!(s.bind, "127.0.0.1:1");
    assert_eq!(s.tokens.access_ttl_secs, 900);

    assert_eq!(
        EnvLayer::new(&vars).unknown,
        [
            "KEYWARD_NOPE",
            "KEYWARD_TOKENS_ACCESS_TTL_SECS",
            "KEYWARD_TOKENS"
        ]
    );
    let data = Toml::file_exact(&path).data().unwrap();
    assert_eq!(
        unknown_file_keys(&data[&Profile::Default]),
        ["colour", "extra", "tokens.ttl"]
    );
    assert_eq!(
        suggestion("KEYWARD_TOKENS_ACCESS_TTL_SECS").as_deref(),
        Some("KEYWARD_TOKENS__ACCESS_TTL_SECS")
    );
}

#[test]
fn every_documented_variable_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, master_key()).unwrap();
    let vars = env(&[
        ("KEYWARD_DATA_DIR", "/d"),
        ("KEYWARD_DATABASE_URL", "postgres://kw:pw@db/kw"),
        ("KEYWARD_BIND", "0.0.0.0:1"),
        ("KEYWARD_MANAGEMENT_BIND", "0.0.0.0:2"),
        ("KEYWARD_PUBLIC_URL", "https://id.example.com/"),
        ("KEYWARD_AMQP_URL", "amqp://mq"),
        ("KEYWARD_SMTP_URL", "smtp://mail"),
        ("KEYWARD_MAIL_FROM", "a@b.c"),
        ("KEYWARD_LOG", "debug"),
        ("KEYWARD_LOG_FORMAT", "json"),
        ("KEYWARD_MASTER_KEY_FILE", key_file.to_str().unwrap()),
        ("KEYWARD_TOKENS__AUDIENCE", "aud"),
        ("KEYWARD_TOKENS__ACCESS_TTL_SECS", "1"),
        ("KEYWARD_TOKENS__REFRESH_IDLE_TTL_SECS", "2"),
        ("KEYWARD_TOKENS__REFRESH_ABSOLUTE_TTL_SECS", "3"),
        ("KEYWARD_TOKENS__REFRESH_GRACE_SECS", "4"),
        ("KEYWARD_TOKENS__VERIFICATION_TTL_SECS", "5"),
        ("KEYWARD_TOKENS__RESET_TTL_SECS", "6"),
        ("KEYWARD_TOKENS__SESSION_RECHECK_MS", "7"),
        ("KEYWARD_PASSWORDS__MIN_LENGTH", "10"),
        ("KEYWARD_PASSWORDS__MAX_LENGTH", "20"),
        ("KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB", "64"),
        ("KEYWARD_PASSWORDS__ARGON2_ITERATIONS", "3"),
        ("KEYWARD_PASSWORDS__ARGON2_PARALLELISM", "2"),
        ("KEYWARD_PASSWORDS__HASHER_THREADS", "4"),
        ("KEYWARD_PASSWORDS__HASHER_QUEUE", "8"),
        ("KEYWARD_HTTP__MAX_BODY_BYTES", "100"),
        ("KEYWARD_HTTP__REQUEST_TIMEOUT_SECS", "7"),
        ("KEYWARD_HTTP__WORKERS", "9"),
    ]);
    let layer = EnvLayer::new(&vars);
    assert!(layer.unknown.is_empty(), "{:?}", layer.unknown);
    let s = Settings::load_from(None, &vars).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/d"));
    assert_eq!(s.database_url, "postgres://kw:pw@db/kw");
    assert_eq!(
        (s.bind.as_str(), s.management_bind.as_str()),
        ("0.0.0.0:1", "0.0.0.0:2")
    );
    assert_eq!(s.public_url.as_deref(), Some("https://id.example.com"));
    assert_eq!(s.amqp_url.as_ref().unwrap().expose_secret(), "amqp://mq");
    assert_eq!(s.smtp_url.as_ref().unwrap().expose_secret(), "smtp://mail");
    assert_eq!((s.mail_from.as_str(), s.log.as_str()), ("a@b.c", "debug"));
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.master_key_bytes().unwrap(), Some([42u8; 32]));
    assert!(s.is_distributed());
    assert_eq!(
        s.tokens,
        crate::TokenSettings {
            audience: "aud".into(),
            access_ttl_secs: 1,
            refresh_idle_ttl_secs: 2,
            refresh_absolute_ttl_secs: 3,
            refresh_grace_secs: 4,
            verification_ttl_secs: 5,
            reset_ttl_secs: 6,
            session_recheck_ms: 7,
        }
    );
    assert_eq!(
        s.passwords,
        crate::PasswordSettings {
            min_length: 10,
            max_length: 20,
            argon2_memory_kib: 64,
            argon2_iterations: 3,
            argon2_parallelism: 2,
            hasher_threads: 4,
            hasher_queue: 8,
        }
    );
    assert_eq!(
        s.http,
        crate::HttpSettings {
            max_body_bytes: 100,
            request_timeout_secs: 7,
            workers: 9,
            header_timeout_secs: 5,
            body_timeout_secs: 10,
            keep_alive_secs: 5,
            connection_max_secs: 300,
            max_connections: 0,
            cors_origins: String::new(),
            trusted_proxies: String::new(),
        }
    );
}

#[test]
fn the_schema_matches_the_structs() {
    let full = Settings {
        public_url: Some("https://x".into()),
        amqp_url: Some(SecretString::from("amqp://mq")),
        smtp_url: Some(SecretString::from("smtp://mail")),
        master_key: Some(SecretString::from(master_key())),
        master_key_file: Some("/k".into()),
        avatars: crate::AvatarSettings {
            s3_endpoint: Some("http://s3".into()),
            s3_bucket: Some("b".into()),
            s3_region: Some("r".into()),
            s3_access_key_id: Some("id".into()),
            s3_secret_access_key: Some(SecretString::from("secret")),
            s3_secret_access_key_file: Some("/s".into()),
            public_base_url: Some("https://cdn".into()),
            ..crate::AvatarSettings::default()
        },
        sms: crate::SmsSettings {
            webhook_url: Some("https://sms".into()),
            webhook_secret: Some(SecretString::from("secret")),
            webhook_secret_file: Some("/w".into()),
            twilio_account_sid: Some("AC1".into()),
            twilio_auth_token: Some(SecretString::from("token")),
            twilio_auth_token_file: Some("/t".into()),
            twilio_from: Some("+15005550006".into()),
            ..crate::SmsSettings::default()
        },
        mfa: crate::MfaSettings {
            rp_id: Some("example.com".into()),
            origins: "https://example.com".into(),
        },
        oauth: crate::OAuthSettings {
            redirect_allowlist: "https://app.example.com/done".into(),
            providers: Default::default(),
        },
        keys: crate::KeySettings {
            vault_addr: Some("https://vault".into()),
            vault_token: Some(SecretString::from("token")),
            vault_token_file: Some("/v".into()),
            ..crate::KeySettings::default()
        },
        retention: crate::RetentionSettings {
            audit_days: Some(365),
            ..crate::RetentionSettings::default()
        },
        notify: crate::NotifySettings {
            categories: vec![crate::CategorySettings {
                name: "booking".into(),
                channels: vec!["email".into()],
            }],
            allow_loopback_push: true,
            templates_file: Some("deploy/presets/clinic.templates.json".into()),
        },
        ..Settings::default()
    };
    let table: toml::Table = full.redacted_toml().parse().unwrap();
    let mut rendered: Vec<(String, String)> = Vec::new();
    for (key, value) in &table {
        match value.as_table() {
            Some(fields) => {
                rendered.extend(fields.keys().map(|f| (key.clone(), f.clone())));
            }
            None => rendered.push((String::new(), key.clone())),
        }
    }
    let mut schema: Vec<(String, String)> = SCHEMA
        .iter()
        .flat_map(|(s, fields)| fields.iter().map(|f| ((*s).to_owned(), (*f).to_owned())))
        .collect();
    rendered.sort();
    schema.sort();
    assert_eq!(rendered, schema);
}

#[test]
fn public_url_loses_its_trailing_slash() {
    let s = Settings::load_from(
        None,
        &env(&[("KEYWARD_PUBLIC_URL", "https://example.com/auth/")]),
    )
    .unwrap();
    assert_eq!(s.public_url.as_deref(), Some("https://example.com/auth"));
}

#[test]
fn a_distributed_env_without_a_master_key_fails_to_load() {
    let e = Settings::load_from(None, &env(&[("KEYWARD_AMQP_URL", "amqp://u:p@mq")])).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_MASTER_KEY");
    let s = Settings::load_from(
        None,
        &env(&[
            ("KEYWARD_AMQP_URL", "amqp://u:p@mq"),
            ("KEYWARD_MASTER_KEY", &master_key()),
        ]),
    )
    .unwrap();
    assert!(s.is_distributed());
}

#[test]
fn profile_attributes_are_declared_in_the_file_and_checked() {
    let (_dir, path) = write_toml(
        "[profiles]\ndefault_visibility = \"public\"\n\n[[profiles.attributes]]\nname = \"skills\"\ntype = \"string-list\"\nview = \"public\"\n\n[[profiles.attributes]]\nname = \"tier\"\ntype = \"string\"\nedit = \"admin\"\nview = \"admin\"\n",
    );
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    assert_eq!(s.profiles.default_visibility, "public");
    let names: Vec<_> = s
        .profiles
        .attributes
        .iter()
        .map(|a| (a.name.as_str(), a.kind, a.edit, a.view))
        .collect();
    assert_eq!(
        names,
        [
            (
                "skills",
                AttributeKind::StringList,
                AttributeEdit::User,
                AttributeView::Public
            ),
            (
                "tier",
                AttributeKind::String,
                AttributeEdit::Admin,
                AttributeView::Admin
            ),
        ]
    );

    let (_dir, path) = write_toml("[[profiles.attributes]]\nname = \"bio\"\ntype = \"string\"\n");
    let e = Settings::load_from(Some(&path), &[]).unwrap_err();
    assert!(e.to_string().contains("standard field"), "{e}");
    let (_dir, path) = write_toml("[[profiles.attributes]]\nname = \"x\"\ntype = \"date\"\n");
    assert!(Settings::load_from(Some(&path), &[]).is_err());
}

#[test]
fn every_avatar_variable_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("s3-secret");
    std::fs::write(&secret_file, "  from-the-file\n").unwrap();
    let vars = env(&[
        ("KEYWARD_AVATARS__S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("KEYWARD_AVATARS__S3_BUCKET", "keyward-avatars"),
        ("KEYWARD_AVATARS__S3_REGION", "us-east-1"),
        ("KEYWARD_AVATARS__S3_ACCESS_KEY_ID", "AKID"),
        (
            "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY_FILE",
            secret_file.to_str().unwrap(),
        ),
        (
            "KEYWARD_AVATARS__PUBLIC_BASE_URL",
            "https://cdn.example.com/a/",
        ),
        ("KEYWARD_AVATARS__MAX_BYTES", "2048"),
        ("KEYWARD_AVATARS__MAX_PIXELS", "1000000"),
    ]);
    let layer = EnvLayer::new(&vars);
    assert!(layer.unknown.is_empty(), "{:?}", layer.unknown);
    let s = Settings::load_from(None, &vars).unwrap();
    let a = &s.avatars;
    assert_eq!(
        a.public_base_url.as_deref(),
        Some("https://cdn.example.com/a"),
        "the trailing slash goes"
    );
    assert_eq!((a.max_bytes, a.max_pixels), (2048, 1_000_000));
    let s3 = a.s3().unwrap().unwrap();
    assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
    assert_eq!(s3.bucket, "keyward-avatars");
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.access_key_id, "AKID");
    assert_eq!(s3.secret_access_key.expose_secret(), "from-the-file");
}

#[test]
fn the_avatar_secret_can_come_from_the_environment_and_an_empty_one_is_unset() {
    let base = [
        ("KEYWARD_AVATARS__S3_ENDPOINT", "https://s3.example.com"),
        ("KEYWARD_AVATARS__S3_BUCKET", "avatars"),
        ("KEYWARD_AVATARS__S3_REGION", "auto"),
        ("KEYWARD_AVATARS__S3_ACCESS_KEY_ID", "AKID"),
    ];
    let mut vars = base.to_vec();
    vars.push(("KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY", "shh"));
    let s = Settings::load_from(None, &env(&vars)).unwrap();
    let s3 = s.avatars.s3().unwrap().unwrap();
    assert_eq!(s3.secret_access_key.expose_secret(), "shh");

    let mut vars = base.to_vec();
    vars.push(("KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY", ""));
    let e = Settings::load_from(None, &env(&vars)).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY");
}

#[test]
fn a_wrongly_typed_avatar_secret_in_the_file_is_not_echoed() {
    let (_dir, path) = write_toml("[avatars]\ns3_secret_access_key = 12345678\n");
    let e = Settings::load_from(Some(&path), &[]).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY");
    assert!(!e.to_string().contains("12345678"), "{e}");
}

#[test]
fn no_avatar_settings_means_the_embedded_store() {
    let s = Settings::load_from(None, &[]).unwrap();
    assert!(s.avatars.s3().unwrap().is_none());
    assert_eq!(s.avatars.max_bytes, 5 * 1024 * 1024);
    assert_eq!(s.avatars.max_pixels, 40_000_000);
}

#[test]
fn a_social_login_provider_is_configured_from_the_environment() {
    let load = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs));
    let s = load(&[
        ("KEYWARD_OAUTH__PROVIDERS__ACME__KIND", "oidc"),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__ISSUER",
            "https://id.example",
        ),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_ID", "keyward"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_SECRET", "s3cret"),
        ("KEYWARD_OAUTH__PROVIDERS__GH__KIND", "google"),
        (
            "KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_ID",
            "123.apps.googleusercontent.com",
        ),
        ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_SECRET", "gh-secret"),
        (
            "KEYWARD_OAUTH__REDIRECT_ALLOWLIST",
            "https://app.example.com/done, com.example.app:/oauth",
        ),
    ])
    .unwrap();
    let acme = &s.oauth.providers["acme"];
    assert_eq!(acme.kind, "oidc");
    assert_eq!(acme.issuer.as_deref(), Some("https://id.example"));
    assert_eq!(s.oauth.providers["gh"].kind, "google");
    assert_eq!(s.oauth.redirect_uris().unwrap().len(), 2);
    let shown = s.redacted_toml();
    assert!(
        !shown.contains("s3cret") && !shown.contains("gh-secret"),
        "{shown}"
    );
    assert!(shown.contains("[oauth.providers.acme]"), "{shown}");

    let e = load(&[
        ("KEYWARD_OAUTH__PROVIDERS__ACME__KIND", "oidc"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_ID", "keyward"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_SECRET", "s3cret"),
    ])
    .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__PROVIDERS__ACME__ISSUER");
    let e = load(&[("KEYWARD_OAUTH__PROVIDERS__X__KIND", "facebook")]).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__PROVIDERS__X__KIND");
    let e = load(&[(
        "KEYWARD_OAUTH__REDIRECT_ALLOWLIST",
        "https://app.example.com/#x",
    )])
    .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__REDIRECT_ALLOWLIST");
}

#[test]
fn the_plain_oauth2_kinds_are_configured_from_the_environment() {
    let load = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs));
    let s = load(&[
        ("KEYWARD_OAUTH__PROVIDERS__GH__KIND", "github"),
        ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_ID", "Iv1.abc"),
        ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_SECRET", "gh-secret"),
        ("KEYWARD_OAUTH__PROVIDERS__YA__KIND", "yandex"),
        ("KEYWARD_OAUTH__PROVIDERS__YA__CLIENT_ID", "ya-id"),
        ("KEYWARD_OAUTH__PROVIDERS__YA__CLIENT_SECRET", "ya-secret"),
        (
            "KEYWARD_OAUTH__PROVIDERS__YA__USERINFO_URL",
            "http://127.0.0.1:9999/info",
        ),
        // VK ID's code exchange takes no client secret.
        ("KEYWARD_OAUTH__PROVIDERS__VK__KIND", "vk"),
        ("KEYWARD_OAUTH__PROVIDERS__VK__CLIENT_ID", "51234567"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__KIND", "oauth2"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_ID", "keyward"),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_SECRET",
            "acme-secret",
        ),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__AUTH_URL",
            "https://id.acme.example/authorize",
        ),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__TOKEN_URL",
            "https://id.acme.example/token",
        ),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__USERINFO_URL",
            "https://api.acme.example/me",
        ),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__SUBJECT_CLAIM", "id"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__EMAIL_CLAIM", "mail"),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__EMAIL_VERIFIED_CLAIM",
            "mail_confirmed",
        ),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__USERNAME_CLAIM", "login"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__AVATAR_CLAIM", "avatar_url"),
    ])
    .unwrap();
    assert_eq!(s.oauth.providers["gh"].kind, "github");
    assert_eq!(
        s.oauth.providers["ya"].userinfo_url.as_deref(),
        Some("http://127.0.0.1:9999/info")
    );
    assert!(s.oauth.providers["vk"].client_secret.is_none());
    let acme = &s.oauth.providers["acme"];
    assert_eq!(acme.subject_claim.as_deref(), Some("id"));
    assert_eq!(acme.email_claim.as_deref(), Some("mail"));
    assert_eq!(acme.email_verified_claim.as_deref(), Some("mail_confirmed"));
    assert_eq!(acme.username_claim.as_deref(), Some("login"));
    assert_eq!(acme.avatar_claim.as_deref(), Some("avatar_url"));
    let shown = s.redacted_toml();
    assert!(
        !shown.contains("gh-secret") && !shown.contains("acme-secret"),
        "{shown}"
    );
    assert!(shown.contains("subject_claim = \"id\""), "{shown}");
}

#[test]
fn a_generic_oauth2_provider_without_its_endpoints_names_the_missing_one() {
    let base = [
        ("KEYWARD_OAUTH__PROVIDERS__ACME__KIND", "oauth2"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_ID", "keyward"),
        ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_SECRET", "s3cret"),
    ];
    let endpoints = [
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__AUTH_URL",
            "https://id.acme.example/authorize",
        ),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__TOKEN_URL",
            "https://id.acme.example/token",
        ),
        (
            "KEYWARD_OAUTH__PROVIDERS__ACME__USERINFO_URL",
            "https://id.acme.example/userinfo",
        ),
    ];
    for missing in 0..endpoints.len() {
        let mut pairs = base.to_vec();
        pairs.extend(
            endpoints
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, p)| *p),
        );
        let e = Settings::load_from(None, &env(&pairs)).unwrap_err();
        assert_eq!(e.key(), endpoints[missing].0, "{e}");
        assert!(e.to_string().contains("is not set"), "{e}");
    }
    let mut pairs = base.to_vec();
    pairs.extend(endpoints);
    Settings::load_from(None, &env(&pairs)).unwrap();
}

#[test]
fn a_bad_endpoint_url_of_a_plain_oauth2_provider_is_refused() {
    for (kind, bad) in [
        ("oauth2", "not a url"),
        ("oauth2", "ftp://id.acme.example/token"),
        (
            "github",
            "https://user:pw@github.example/login/oauth/access_token",
        ),
        ("yandex", "https://oauth.yandex.example/token?x=1"),
        ("vk", "id.vk.example/oauth2/auth"),
    ] {
        let mut pairs = vec![
            ("KEYWARD_OAUTH__PROVIDERS__P__KIND", kind),
            ("KEYWARD_OAUTH__PROVIDERS__P__CLIENT_ID", "keyward"),
            ("KEYWARD_OAUTH__PROVIDERS__P__CLIENT_SECRET", "s3cret"),
            ("KEYWARD_OAUTH__PROVIDERS__P__TOKEN_URL", bad),
        ];
        if kind == "oauth2" {
            pairs.extend([
                (
                    "KEYWARD_OAUTH__PROVIDERS__P__AUTH_URL",
                    "https://id.acme.example/authorize",
                ),
                (
                    "KEYWARD_OAUTH__PROVIDERS__P__USERINFO_URL",
                    "https://id.acme.example/userinfo",
                ),
            ]);
        }
        let e = Settings::load_from(None, &env(&pairs)).unwrap_err();
        assert_eq!(
            e.key(),
            "KEYWARD_OAUTH__PROVIDERS__P__TOKEN_URL",
            "{kind} {bad}: {e}"
        );
        assert!(!e.to_string().contains("pw@"), "no credentials echoed: {e}");
    }
}

#[test]
fn claim_settings_are_checked_and_belong_to_the_generic_kind_only() {
    let generic = |claim: (&str, &str)| {
        Settings::load_from(
            None,
            &env(&[
                ("KEYWARD_OAUTH__PROVIDERS__ACME__KIND", "oauth2"),
                ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_ID", "keyward"),
                ("KEYWARD_OAUTH__PROVIDERS__ACME__CLIENT_SECRET", "s3cret"),
                (
                    "KEYWARD_OAUTH__PROVIDERS__ACME__AUTH_URL",
                    "https://id.acme.example/authorize",
                ),
                (
                    "KEYWARD_OAUTH__PROVIDERS__ACME__TOKEN_URL",
                    "https://id.acme.example/token",
                ),
                (
                    "KEYWARD_OAUTH__PROVIDERS__ACME__USERINFO_URL",
                    "https://id.acme.example/userinfo",
                ),
                claim,
            ]),
        )
    };
    let e = generic(("KEYWARD_OAUTH__PROVIDERS__ACME__SUBJECT_CLAIM", "user id")).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__PROVIDERS__ACME__SUBJECT_CLAIM");
    let long = "x".repeat(129);
    let e = generic(("KEYWARD_OAUTH__PROVIDERS__ACME__EMAIL_CLAIM", &long)).unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__PROVIDERS__ACME__EMAIL_CLAIM");
    generic(("KEYWARD_OAUTH__PROVIDERS__ACME__AVATAR_CLAIM", "avatar_url")).unwrap();

    let e = Settings::load_from(
        None,
        &env(&[
            ("KEYWARD_OAUTH__PROVIDERS__GH__KIND", "github"),
            ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_ID", "Iv1.abc"),
            ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_SECRET", "s3cret"),
            ("KEYWARD_OAUTH__PROVIDERS__GH__EMAIL_CLAIM", "email"),
        ]),
    )
    .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__PROVIDERS__GH__EMAIL_CLAIM");
    assert!(e.to_string().contains("oauth2"), "{e}");
}

#[test]
fn every_plain_kind_but_vk_needs_a_client_secret() {
    for kind in ["github", "yandex"] {
        let e = Settings::load_from(
            None,
            &env(&[
                ("KEYWARD_OAUTH__PROVIDERS__P__KIND", kind),
                ("KEYWARD_OAUTH__PROVIDERS__P__CLIENT_ID", "keyward"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.key(),
            "KEYWARD_OAUTH__PROVIDERS__P__CLIENT_SECRET",
            "{kind}"
        );
    }
    let e = Settings::load_from(None, &env(&[("KEYWARD_OAUTH__PROVIDERS__VK__KIND", "vk")]))
        .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_OAUTH__PROVIDERS__VK__CLIENT_ID");
}

#[test]
fn native_client_ids_are_for_openid_providers_and_have_no_empty_entry() {
    let load_from = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs));
    let google = [
        ("KEYWARD_OAUTH__PROVIDERS__G__KIND", "google"),
        ("KEYWARD_OAUTH__PROVIDERS__G__CLIENT_ID", "web.apps.example"),
        ("KEYWARD_OAUTH__PROVIDERS__G__CLIENT_SECRET", "s3cret"),
    ];
    let mut ok = google.to_vec();
    ok.push((
        "KEYWARD_OAUTH__PROVIDERS__G__NATIVE_CLIENT_IDS",
        "ios.apps.example,android.apps.example",
    ));
    let s = load_from(&ok).unwrap();
    assert_eq!(
        s.oauth.providers["g"].native_client_ids.as_deref(),
        Some("ios.apps.example,android.apps.example")
    );
    assert!(s.redacted_toml().contains("ios.apps.example"));
    let mut empty = google.to_vec();
    empty.push((
        "KEYWARD_OAUTH__PROVIDERS__G__NATIVE_CLIENT_IDS",
        "ios.apps.example,,x",
    ));
    let e = load_from(&empty).unwrap_err().to_string();
    assert!(
        e.contains("KEYWARD_OAUTH__PROVIDERS__G__NATIVE_CLIENT_IDS"),
        "{e}"
    );
    let github = [
        ("KEYWARD_OAUTH__PROVIDERS__GH__KIND", "github"),
        ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_ID", "Iv1.x"),
        ("KEYWARD_OAUTH__PROVIDERS__GH__CLIENT_SECRET", "s3cret"),
        ("KEYWARD_OAUTH__PROVIDERS__GH__NATIVE_CLIENT_IDS", "other"),
    ];
    let e = load_from(&github).unwrap_err().to_string();
    assert!(
        e.contains("NATIVE_CLIENT_IDS") && e.contains("OpenID"),
        "{e}"
    );
}

#[test]
fn the_notify_section_is_known_to_the_file_and_the_environment() {
    let s = Settings::load_from(
        None,
        &env(&[("KEYWARD_NOTIFY__ALLOW_LOOPBACK_PUSH", "true")]),
    )
    .unwrap();
    assert!(s.notify.allow_loopback_push);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.toml");
    std::fs::write(
        &path,
        "[[notify.categories]]\nname = \"booking\"\nchannels = [\"email\"]\n",
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    assert_eq!(s.notify.categories[0].name, "booking");
    let data = Toml::file_exact(&path).data().unwrap();
    assert!(unknown_file_keys(&data[&Profile::Default]).is_empty());
}
