//! Invariants of [`Settings`] and master-key decoding.

use std::net::SocketAddr;
use std::path::Path;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use crate::{has_scheme, safe_url, ConfigError, Settings};

const GENERATE_HINT: &str = "generate one with `openssl rand -base64 32`";

pub(crate) fn validate(s: &Settings) -> Result<(), ConfigError> {
    if s.data_dir.as_os_str().is_empty() {
        return Err(ConfigError::invalid(
            "KEYWARD_DATA_DIR",
            "is empty (expected a directory path, e.g. ./data)",
        ));
    }
    database_url(&s.database_url)?;
    let bind = socket_addr("KEYWARD_BIND", &s.bind, "127.0.0.1:8080")?;
    let management = socket_addr(
        "KEYWARD_MANAGEMENT_BIND",
        &s.management_bind,
        "127.0.0.1:9090",
    )?;
    if bind == management && bind.port() != 0 {
        return Err(ConfigError::invalid(
            "KEYWARD_MANAGEMENT_BIND",
            format!(
                "\"{management}\" is the same address as KEYWARD_BIND (use a different port, e.g. 127.0.0.1:9090)"
            ),
        ));
    }
    if let Some(public_url) = &s.public_url {
        check_public_url(public_url)?;
    }
    if let Some(amqp) = &s.amqp_url {
        secret_url(
            "KEYWARD_AMQP_URL",
            amqp,
            &["amqp", "amqps"],
            "amqp://user:pass@host:5672/%2f",
        )?;
    }
    if let Some(smtp) = &s.smtp_url {
        secret_url(
            "KEYWARD_SMTP_URL",
            smtp,
            &["smtp", "smtps"],
            "smtps://user:pass@smtp.example.com:465",
        )?;
    }
    if !s.mail_from.contains('@') {
        return Err(ConfigError::invalid(
            "KEYWARD_MAIL_FROM",
            format!(
                "\"{}\" is not a mail address (expected e.g. `Keyward <no-reply@example.com>`)",
                s.mail_from
            ),
        ));
    }
    if s.log.trim().is_empty() {
        return Err(ConfigError::invalid(
            "KEYWARD_LOG",
            "is empty (expected tracing filter directives, e.g. info or info,keyward=debug)",
        ));
    }
    tokens(s)?;
    passwords(s)?;
    http(s)?;
    throttle(s)?;

    let has_key = master_key_bytes(s)?.is_some();
    if s.is_distributed() && !has_key {
        return Err(ConfigError::invalid(
            "KEYWARD_MASTER_KEY",
            format!(
                "is required when running distributed (KEYWARD_AMQP_URL set or a postgres KEYWARD_DATABASE_URL); \
                 set KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_FILE to the same 32-byte base64 key on every node ({GENERATE_HINT})"
            ),
        ));
    }
    Ok(())
}

fn database_url(value: &str) -> Result<(), ConfigError> {
    const KEY: &str = "KEYWARD_DATABASE_URL";
    const EXPECTED: &str =
        "expected sqlite://path/keyward.db?mode=rwc or postgres://user:pass@host/db";
    if has_scheme(value, &["sqlite"]) {
        return Ok(());
    }
    if !has_scheme(value, &["postgres", "postgresql"]) {
        return Err(ConfigError::invalid(
            KEY,
            format!(
                "\"{}\" is not a sqlite or postgres URL ({EXPECTED})",
                safe_url(value)
            ),
        ));
    }
    match url::Url::parse(value) {
        Ok(url) if url.has_host() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            KEY,
            format!("\"{}\" has no host ({EXPECTED})", safe_url(value)),
        )),
        Err(err) => Err(ConfigError::invalid(
            KEY,
            format!(
                "\"{}\" is not a valid URL: {err} ({EXPECTED}; percent-encode special characters in the password)",
                safe_url(value)
            ),
        )),
    }
}

fn socket_addr(key: &str, value: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("\"{value}\" is not a socket address (expected host:port, e.g. {example})"),
        )
    })
}

fn check_public_url(value: &str) -> Result<(), ConfigError> {
    const KEY: &str = "KEYWARD_PUBLIC_URL";
    const EXPECTED: &str = "expected e.g. https://id.example.com or https://example.com/auth";
    let url = url::Url::parse(value).map_err(|err| {
        ConfigError::invalid(
            KEY,
            format!("\"{}\" is not a URL: {err} ({EXPECTED})", safe_url(value)),
        )
    })?;
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("must use http or https")
    } else if !url.has_host() {
        Some("has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not contain credentials")
    } else if url.query().is_some() || url.fragment().is_some() {
        Some("must not have a query or fragment")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::invalid(
            KEY,
            format!("\"{}\" {problem} ({EXPECTED})", safe_url(value)),
        )),
        None => Ok(()),
    }
}

fn secret_url(
    key: &str,
    value: &SecretString,
    schemes: &[&str],
    example: &str,
) -> Result<(), ConfigError> {
    let value = value.expose_secret();
    let expected = format!("expected {} URL, e.g. {example}", schemes.join(" or "));
    match url::Url::parse(value) {
        Ok(url) if schemes.contains(&url.scheme()) && url.has_host() => Ok(()),
        Ok(url) if schemes.contains(&url.scheme()) => Err(ConfigError::invalid(
            key,
            format!("\"{}\" has no host ({expected})", safe_url(value)),
        )),
        Ok(url) => Err(ConfigError::invalid(
            key,
            format!("scheme \"{}\" is not supported ({expected})", url.scheme()),
        )),
        Err(err) => Err(ConfigError::invalid(
            key,
            format!(
                "\"{}\" is not a valid URL: {err} ({expected}; percent-encode special characters in the password)",
                safe_url(value)
            ),
        )),
    }
}

fn tokens(s: &Settings) -> Result<(), ConfigError> {
    let t = &s.tokens;
    if t.audience.trim().is_empty() {
        return Err(ConfigError::invalid(
            "KEYWARD_TOKENS__AUDIENCE",
            "is empty (expected the aud claim of access tokens, e.g. keyward)",
        ));
    }
    at_least("KEYWARD_TOKENS__ACCESS_TTL_SECS", t.access_ttl_secs, 1)?;
    at_least(
        "KEYWARD_TOKENS__REFRESH_IDLE_TTL_SECS",
        t.refresh_idle_ttl_secs,
        1,
    )?;
    at_least(
        "KEYWARD_TOKENS__VERIFICATION_TTL_SECS",
        t.verification_ttl_secs,
        1,
    )?;
    at_least("KEYWARD_TOKENS__RESET_TTL_SECS", t.reset_ttl_secs, 1)?;
    if t.session_recheck_ms > 1000 {
        return Err(ConfigError::invalid(
            "KEYWARD_TOKENS__SESSION_RECHECK_MS",
            format!(
                "{} is above 1000; a node must notice a revocation within a second even when a broadcast is lost",
                t.session_recheck_ms
            ),
        ));
    }
    if t.refresh_absolute_ttl_secs < t.refresh_idle_ttl_secs {
        return Err(ConfigError::invalid(
            "KEYWARD_TOKENS__REFRESH_ABSOLUTE_TTL_SECS",
            format!(
                "{} is shorter than KEYWARD_TOKENS__REFRESH_IDLE_TTL_SECS ({}); raise it or lower the idle TTL",
                t.refresh_absolute_ttl_secs, t.refresh_idle_ttl_secs
            ),
        ));
    }
    Ok(())
}

fn passwords(s: &Settings) -> Result<(), ConfigError> {
    let p = &s.passwords;
    in_range("KEYWARD_PASSWORDS__MIN_LENGTH", p.min_length, 8, 128)?;
    in_range(
        "KEYWARD_PASSWORDS__MAX_LENGTH",
        p.max_length,
        p.min_length,
        1024,
    )?;
    at_least(
        "KEYWARD_PASSWORDS__ARGON2_ITERATIONS",
        u64::from(p.argon2_iterations),
        1,
    )?;
    at_least(
        "KEYWARD_PASSWORDS__ARGON2_PARALLELISM",
        u64::from(p.argon2_parallelism),
        1,
    )?;
    at_least(
        "KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB",
        u64::from(p.argon2_memory_kib),
        u64::from(p.argon2_parallelism).saturating_mul(8),
    )
    .map_err(|_| {
        ConfigError::invalid(
            "KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB",
            format!(
                "{} is too small (Argon2 needs at least 8 KiB per lane, here {}; the default is 19456)",
                p.argon2_memory_kib,
                u64::from(p.argon2_parallelism).saturating_mul(8)
            ),
        )
    })?;
    Ok(())
}

fn http(s: &Settings) -> Result<(), ConfigError> {
    s.http
        .cors_origin_list()
        .map_err(|e| ConfigError::invalid("KEYWARD_HTTP__CORS_ORIGINS", e))?;
    s.http
        .trusted_proxy_nets()
        .map_err(|e| ConfigError::invalid("KEYWARD_HTTP__TRUSTED_PROXIES", e))?;
    at_least(
        "KEYWARD_HTTP__MAX_BODY_BYTES",
        s.http.max_body_bytes as u64,
        1,
    )?;
    at_least(
        "KEYWARD_HTTP__REQUEST_TIMEOUT_SECS",
        s.http.request_timeout_secs,
        1,
    )?;
    at_least(
        "KEYWARD_HTTP__HEADER_TIMEOUT_SECS",
        s.http.header_timeout_secs,
        1,
    )?;
    at_least(
        "KEYWARD_HTTP__BODY_TIMEOUT_SECS",
        s.http.body_timeout_secs,
        1,
    )?;
    at_least("KEYWARD_HTTP__KEEP_ALIVE_SECS", s.http.keep_alive_secs, 1)?;
    at_least(
        "KEYWARD_HTTP__CONNECTION_MAX_SECS",
        s.http.connection_max_secs,
        1,
    )?;
    Ok(())
}

#[cfg(test)]
mod trusted_proxy_tests {
    #![allow(clippy::unwrap_used)]
    use crate::Settings;

    #[test]
    fn trusted_proxies_take_ips_and_cidrs_and_a_bad_one_names_the_key() {
        let mut s = Settings::default();
        s.http.trusted_proxies = " 127.0.0.1, 10.0.0.0/8 ,::1".into();
        assert_eq!(s.http.trusted_proxy_nets().unwrap().len(), 3);
        assert!(s.validate().is_ok());
        s.http.trusted_proxies = "10.0.0.0/8, nginx".into();
        let e = s.validate().unwrap_err();
        assert!(
            e.to_string().contains("KEYWARD_HTTP__TRUSTED_PROXIES"),
            "{e}"
        );
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        let mut s = Settings::default();
        s.http.cors_origins = "https://app.example.com, http://localhost:3000".into();
        assert_eq!(s.http.cors_origin_list().unwrap().len(), 2);
        for bad in [
            "https://app.example.com/path",
            "app.example.com",
            "ftp://x.example.com",
            "https://app.example.com/",
        ] {
            s.http.cors_origins = bad.into();
            let e = s.validate().unwrap_err();
            assert!(
                e.to_string().contains("KEYWARD_HTTP__CORS_ORIGINS"),
                "{bad}: {e}"
            );
        }
    }
}

fn throttle(s: &Settings) -> Result<(), ConfigError> {
    let t = &s.throttle;
    at_least(
        "KEYWARD_THROTTLE__ACCOUNT_MAX_FAILURES",
        u64::from(t.account_max_failures),
        1,
    )?;
    at_least(
        "KEYWARD_THROTTLE__IP_MAX_FAILURES",
        u64::from(t.ip_max_failures),
        1,
    )?;
    at_least("KEYWARD_THROTTLE__WINDOW_SECS", t.window_secs, 1)?;
    at_least("KEYWARD_THROTTLE__BASE_DELAY_SECS", t.base_delay_secs, 1)?;
    Ok(())
}

fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(
            key,
            format!("{value} is too small (expected at least {min})"),
        ));
    }
    Ok(())
}

fn in_range(key: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("{value} is out of range (expected {min}..={max})"),
        ));
    }
    Ok(())
}

pub(crate) fn master_key_bytes(s: &Settings) -> Result<Option<[u8; 32]>, ConfigError> {
    match (&s.master_key, &s.master_key_file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "KEYWARD_MASTER_KEY",
            "is set together with KEYWARD_MASTER_KEY_FILE; set only one of them",
        )),
        (Some(key), None) => decode_key("KEYWARD_MASTER_KEY", key.expose_secret()).map(Some),
        (None, Some(path)) => {
            let text = read_key_file(path)?;
            decode_key("KEYWARD_MASTER_KEY_FILE", text.expose_secret())
                .map_err(|err| match err {
                    ConfigError::Invalid { key, message } => ConfigError::Invalid {
                        key,
                        message: format!("\"{}\": {message}", path.display()),
                    },
                    other => other,
                })
                .map(Some)
        }
        (None, None) => Ok(None),
    }
}

fn read_key_file(path: &Path) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|err| {
            ConfigError::invalid(
                "KEYWARD_MASTER_KEY_FILE",
                format!(
                    "cannot read \"{}\": {err} (point it at a readable file holding the base64 key)",
                    path.display()
                ),
            )
        })
}

/// Standard or url-safe alphabet, padding optional; never echoes the input.
fn decode_key(key: &str, text: &str) -> Result<[u8; 32], ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("is empty (expected base64 of 32 random bytes; {GENERATE_HINT})"),
        ));
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engine = if text.contains(['-', '_']) {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
    } else {
        GeneralPurpose::new(&alphabet::STANDARD, config)
    };
    let bytes = Zeroizing::new(engine.decode(text).map_err(|_| {
        ConfigError::invalid(
            key,
            format!("is not valid base64 (expected base64 of 32 random bytes; {GENERATE_HINT})"),
        )
    })?);
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "decodes to {} bytes, expected exactly 32 ({GENERATE_HINT})",
                bytes.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
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
}
