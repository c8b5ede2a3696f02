//! Invariants of [`Settings`] and master-key decoding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    has_scheme, safe_url, AccessSettings, AvatarSettings, ConfigError, NotifySettings, S3Settings,
    Settings, SmsProvider, SmsSettings, ACCESS_PRESETS,
};

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
    profiles(s)?;
    access(&s.access)?;
    avatars(&s.avatars)?;
    notify(&s.notify)?;
    sms(&s.sms)?;
    mfa(s)?;
    oauth(&s.oauth)?;
    retention(s)?;
    cache(&s.cache)?;
    at_least(
        "KEYWARD_KEYS__PUBLISH_LEAD_SECS",
        s.keys.publish_lead_secs,
        JWKS_MAX_AGE_SECS,
    )?;
    keys(&s.keys)?;

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
    plain_http_url(
        "KEYWARD_PUBLIC_URL",
        value,
        "expected e.g. https://id.example.com or https://example.com/auth",
    )
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
mod trusted_proxy_tests;

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
    at_least(
        "KEYWARD_THROTTLE__MAIL_PER_ADDRESS_PER_HOUR",
        u64::from(t.mail_per_address_per_hour),
        1,
    )?;
    at_least(
        "KEYWARD_THROTTLE__MAIL_PER_IP_PER_HOUR",
        u64::from(t.mail_per_ip_per_hour),
        1,
    )?;
    at_least(
        "KEYWARD_THROTTLE__CEREMONIES_PER_IP_PER_HOUR",
        u64::from(t.ceremonies_per_ip_per_hour),
        1,
    )?;
    Ok(())
}

/// Standard profile fields, which an attribute may not shadow.
const PROFILE_FIELDS: &[&str] = &[
    "id",
    "email",
    "email_verified",
    "username",
    "display_name",
    "bio",
    "avatar",
    "locale",
    "timezone",
    "country",
    "phone",
    "phone_verified",
    "visibility",
    "attributes",
    "roles",
    "created_at",
    "updated_at",
    "settings",
];

fn profiles(s: &Settings) -> Result<(), ConfigError> {
    let p = &s.profiles;
    at_least(
        "KEYWARD_PROFILES__DELETION_GRACE_DAYS",
        u64::from(p.deletion_grace_days),
        0,
    )?;
    if !["public", "users", "private"].contains(&p.default_visibility.as_str()) {
        return Err(ConfigError::invalid(
            "KEYWARD_PROFILES__DEFAULT_VISIBILITY",
            format!(
                "{:?} is not a visibility (use public, users or private)",
                p.default_visibility
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for a in &p.attributes {
        let key = "profiles.attributes";
        let ok_name = a.name.len() <= 32
            && a.name.starts_with(|c: char| c.is_ascii_lowercase())
            && a.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_name {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "attribute name {:?}: use [a-z][a-z0-9_]*, at most 32 characters",
                    a.name
                ),
            ));
        }
        if PROFILE_FIELDS.contains(&a.name.as_str()) || !seen.insert(a.name.as_str()) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "attribute name {:?} is a standard field or declared twice",
                    a.name
                ),
            ));
        }
        if !(1..=10_000).contains(&a.max_length) || !(1..=1_000).contains(&a.max_items) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "attribute {:?}: max_length is 1..=10000 and max_items 1..=1000",
                    a.name
                ),
            ));
        }
    }
    Ok(())
}

fn access(a: &AccessSettings) -> Result<(), ConfigError> {
    use keyward_messages::access::{Permission, RoleName};
    if !a.preset.is_empty() && !ACCESS_PRESETS.contains(&a.preset.as_str()) {
        return Err(ConfigError::invalid(
            "KEYWARD_ACCESS__PRESET",
            format!(
                "{:?} is not a preset (use one of {}, or leave it empty)",
                a.preset,
                ACCESS_PRESETS.join(", ")
            ),
        ));
    }
    for r in a.default_role_list() {
        RoleName::parse("", &r).map_err(|e| {
            ConfigError::invalid(
                "KEYWARD_ACCESS__DEFAULT_ROLES",
                format!("{r:?}: {}", e.message),
            )
        })?;
    }
    at_least(
        "KEYWARD_ACCESS__CLIENT_TOKEN_TTL_SECS",
        a.client_token_ttl_secs,
        10,
    )?;
    let mut seen = std::collections::HashSet::new();
    for r in &a.roles {
        let key = "access.roles";
        RoleName::parse("", &r.name)
            .map_err(|e| ConfigError::invalid(key, format!("role {:?}: {}", r.name, e.message)))?;
        if r.name == keyward_messages::access::ADMIN_ROLE || !seen.insert(r.name.as_str()) {
            return Err(ConfigError::invalid(
                key,
                format!("role {:?} is built in or declared twice", r.name),
            ));
        }
        for p in &r.permissions {
            Permission::parse("", p).map_err(|e| {
                ConfigError::invalid(
                    key,
                    format!("role {:?}, permission {p:?}: {}", r.name, e.message),
                )
            })?;
        }
    }
    Ok(())
}

fn notify(n: &NotifySettings) -> Result<(), ConfigError> {
    use keyward_messages::notify::{Category, Channel};
    let key = "notify.categories";
    let mut seen = std::collections::HashSet::new();
    for c in &n.categories {
        Category::parse("", &c.name).map_err(|e| {
            ConfigError::invalid(key, format!("category {:?}: {}", c.name, e.message))
        })?;
        if !seen.insert(c.name.as_str()) {
            return Err(ConfigError::invalid(
                key,
                format!("category {:?} is declared twice", c.name),
            ));
        }
        if c.channels.is_empty() {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "category {:?} has no channels (give at least one, e.g. [\"in_app\"])",
                    c.name
                ),
            ));
        }
        for ch in &c.channels {
            Channel::parse("", ch).map_err(|e| {
                ConfigError::invalid(
                    key,
                    format!("category {:?}, channel {ch:?}: {}", c.name, e.message),
                )
            })?;
        }
    }
    Ok(())
}

const S3_ENDPOINT: &str = "KEYWARD_AVATARS__S3_ENDPOINT";
const S3_BUCKET: &str = "KEYWARD_AVATARS__S3_BUCKET";
const S3_REGION: &str = "KEYWARD_AVATARS__S3_REGION";
const S3_ACCESS_KEY_ID: &str = "KEYWARD_AVATARS__S3_ACCESS_KEY_ID";
const S3_SECRET: &str = "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY";
const S3_SECRET_FILE: &str = "KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY_FILE";

fn avatars(a: &AvatarSettings) -> Result<(), ConfigError> {
    const MAX_BYTES: u64 = 64 * 1024 * 1024;
    const MAX_PIXELS: u64 = 100_000_000;
    if a.max_bytes < 1024 || a.max_bytes as u64 > MAX_BYTES {
        return Err(ConfigError::invalid(
            "KEYWARD_AVATARS__MAX_BYTES",
            format!(
                "{} is out of range (expected 1024..={MAX_BYTES}; the default is 5242880, 5 MiB)",
                a.max_bytes
            ),
        ));
    }
    if !(1024..=MAX_PIXELS).contains(&a.max_pixels) {
        return Err(ConfigError::invalid(
            "KEYWARD_AVATARS__MAX_PIXELS",
            format!(
                "{} is out of range (expected 1024..={MAX_PIXELS}; the default is 40000000, 40 megapixels)",
                a.max_pixels
            ),
        ));
    }
    if let Some(url) = &a.public_base_url {
        plain_http_url(
            "KEYWARD_AVATARS__PUBLIC_BASE_URL",
            url,
            "expected the URL browsers fetch avatars from, e.g. https://cdn.example.com/avatars",
        )?;
    }
    avatar_s3(a).map(|_| ())
}

/// The complete S3 settings, or `None` when none is set; half a set names the first missing key.
pub(crate) fn avatar_s3(a: &AvatarSettings) -> Result<Option<S3Settings>, ConfigError> {
    let secret_set = a.s3_secret_access_key.is_some() || a.s3_secret_access_key_file.is_some();
    let given = [
        (S3_ENDPOINT, a.s3_endpoint.is_some()),
        (S3_BUCKET, a.s3_bucket.is_some()),
        (S3_REGION, a.s3_region.is_some()),
        (S3_ACCESS_KEY_ID, a.s3_access_key_id.is_some()),
        (S3_SECRET, secret_set),
    ];
    let Some((first_set, _)) = given.iter().find(|(_, set)| *set) else {
        return Ok(None);
    };
    if let Some((missing, _)) = given.iter().find(|(_, set)| !*set) {
        let what = if *missing == S3_SECRET {
            format!("{S3_SECRET} or {S3_SECRET_FILE}")
        } else {
            (*missing).to_owned()
        };
        return Err(ConfigError::invalid(
            *missing,
            format!(
                "is not set, but {first_set} is: the S3 avatar store needs all of {S3_ENDPOINT}, \
                 {S3_BUCKET}, {S3_REGION}, {S3_ACCESS_KEY_ID} and {S3_SECRET} (or {S3_SECRET_FILE}); \
                 set {what}, or unset them all to keep avatars under {{data_dir}}/avatars"
            ),
        ));
    }
    let (Some(endpoint), Some(bucket), Some(region), Some(access_key_id)) = (
        &a.s3_endpoint,
        &a.s3_bucket,
        &a.s3_region,
        &a.s3_access_key_id,
    ) else {
        return Ok(None);
    };
    plain_http_url(
        S3_ENDPOINT,
        endpoint,
        "expected the store's base URL, e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:9000",
    )?;
    if !is_bucket_name(bucket) {
        return Err(ConfigError::invalid(
            S3_BUCKET,
            format!(
                "\"{bucket}\" is not a bucket name (expected 3-63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit, e.g. keyward-avatars)"
            ),
        ));
    }
    if region.chars().any(char::is_whitespace) {
        return Err(ConfigError::invalid(
            S3_REGION,
            format!("\"{region}\" contains blanks (expected e.g. eu-central-1, us-east-1 or auto)"),
        ));
    }
    let Some(secret) = secret_from(
        (S3_SECRET, &a.s3_secret_access_key),
        (S3_SECRET_FILE, &a.s3_secret_access_key_file),
        "the secret access key",
    )?
    else {
        return Ok(None);
    };
    Ok(Some(S3Settings {
        endpoint: endpoint.clone(),
        bucket: bucket.clone(),
        region: region.clone(),
        access_key_id: access_key_id.clone(),
        secret_access_key: secret,
    }))
}

/// A secret given inline or as a file (surrounding whitespace ignored): `None` when neither
/// is set; both, an unreadable file or an empty one is an error naming the variable.
fn secret_from(
    (key, inline): (&str, &Option<SecretString>),
    (file_key, file): (&str, &Option<PathBuf>),
    what: &str,
) -> Result<Option<SecretString>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            key,
            format!("is set together with {file_key}; set only one of them"),
        )),
        (Some(secret), None) => Ok(Some(SecretString::from(secret.expose_secret().trim()))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                ConfigError::invalid(
                    file_key,
                    format!(
                        "cannot read \"{}\": {err} (point it at a readable file holding {what})",
                        path.display()
                    ),
                )
            })?;
            let text = Zeroizing::new(text);
            if text.trim().is_empty() {
                return Err(ConfigError::invalid(
                    file_key,
                    format!("\"{}\" is empty (expected {what})", path.display()),
                ));
            }
            Ok(Some(SecretString::from(text.trim())))
        }
        (None, None) => Ok(None),
    }
}

const KEYS_BACKEND: &str = "KEYWARD_KEYS__BACKEND";
const VAULT_ADDR: &str = "KEYWARD_KEYS__VAULT_ADDR";
const VAULT_TOKEN: &str = "KEYWARD_KEYS__VAULT_TOKEN";

/// `[keys]`: the backend and, for `vault`, its address, token and key.
pub(crate) fn keys(s: &crate::KeySettings) -> Result<crate::KeyBackend, ConfigError> {
    let missing = |key: &str, why: &str| {
        ConfigError::invalid(
            key,
            format!("is not set, but {KEYS_BACKEND} is vault: {why}"),
        )
    };
    match s.backend.as_str() {
        "local" => Ok(crate::KeyBackend::Local),
        "vault" => {
            let addr = s.vault_addr.as_deref().ok_or_else(|| {
                missing(
                    VAULT_ADDR,
                    "set the Vault or OpenBao address, e.g. https://vault.internal:8200",
                )
            })?;
            plain_http_url(
                VAULT_ADDR,
                addr,
                "expected the server's base URL, e.g. https://vault.internal:8200",
            )?;
            let token = secret_from(
                (VAULT_TOKEN, &s.vault_token),
                ("KEYWARD_KEYS__VAULT_TOKEN_FILE", &s.vault_token_file),
                "a Vault token",
            )?
            .ok_or_else(|| {
                missing(
                    VAULT_TOKEN,
                    "set a token allowed to sign with the Transit key (or _FILE)",
                )
            })?;
            let mount = s.vault_mount.trim_matches('/');
            let name_ok = |v: &str, slashes: bool| {
                !v.is_empty()
                    && v.chars().all(|c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, '-' | '_' | '.')
                            || (slashes && c == '/')
                    })
            };
            if !name_ok(mount, true) {
                return Err(ConfigError::invalid(
                    "KEYWARD_KEYS__VAULT_MOUNT",
                    format!(
                        "\"{}\" is not a mount path (letters, digits, - _ . and /; e.g. transit)",
                        s.vault_mount
                    ),
                ));
            }
            if !name_ok(&s.vault_key, false) {
                return Err(ConfigError::invalid(
                    "KEYWARD_KEYS__VAULT_KEY",
                    format!(
                        "\"{}\" is not a Transit key name (letters, digits, - _ .; e.g. keyward)",
                        s.vault_key
                    ),
                ));
            }
            if !(100..=60_000).contains(&s.vault_timeout_ms) {
                return Err(ConfigError::invalid(
                    "KEYWARD_KEYS__VAULT_TIMEOUT_MS",
                    format!(
                        "{} is out of range (100..=60000 milliseconds)",
                        s.vault_timeout_ms
                    ),
                ));
            }
            Ok(crate::KeyBackend::Vault(crate::VaultTransit {
                addr: addr.trim_end_matches('/').to_owned(),
                token,
                token_file: s.vault_token_file.clone(),
                mount: mount.to_owned(),
                key: s.vault_key.clone(),
                timeout: std::time::Duration::from_millis(s.vault_timeout_ms),
            }))
        }
        other => Err(ConfigError::invalid(
            KEYS_BACKEND,
            format!("\"{other}\" is not a key backend (expected local or vault)"),
        )),
    }
}

const SMS_PROVIDER: &str = "KEYWARD_SMS__PROVIDER";
const SMS_WEBHOOK_URL: &str = "KEYWARD_SMS__WEBHOOK_URL";
const SMS_WEBHOOK_SECRET: &str = "KEYWARD_SMS__WEBHOOK_SECRET";
const SMS_TWILIO_SID: &str = "KEYWARD_SMS__TWILIO_ACCOUNT_SID";
const SMS_TWILIO_TOKEN: &str = "KEYWARD_SMS__TWILIO_AUTH_TOKEN";
const SMS_TWILIO_FROM: &str = "KEYWARD_SMS__TWILIO_FROM";

/// The SMS provider with what it needs, or an error naming the first missing or bad setting.
pub(crate) fn sms(s: &SmsSettings) -> Result<SmsProvider, ConfigError> {
    for (key, v) in [
        ("KEYWARD_SMS__MAX_PER_IP_PER_HOUR", s.max_per_ip_per_hour),
        (
            "KEYWARD_SMS__MAX_PER_NUMBER_PER_HOUR",
            s.max_per_number_per_hour,
        ),
    ] {
        if !(1..=1000).contains(&v) {
            return Err(ConfigError::invalid(
                key,
                format!("{v} is out of range (expected 1..=1000)"),
            ));
        }
    }
    let missing = |key: &str, why: &str| {
        ConfigError::invalid(
            key,
            format!("is not set, but {SMS_PROVIDER} is {}: {why}", s.provider),
        )
    };
    match s.provider.as_str() {
        "log" => Ok(SmsProvider::Log),
        "webhook" => {
            let url = s
                .webhook_url
                .as_deref()
                .ok_or_else(|| missing(SMS_WEBHOOK_URL, "set the URL texts are POSTed to"))?;
            plain_http_url(
                SMS_WEBHOOK_URL,
                url,
                "expected the URL texts are POSTed to, e.g. https://sms-gateway.internal/send",
            )?;
            let secret = secret_from(
                (SMS_WEBHOOK_SECRET, &s.webhook_secret),
                ("KEYWARD_SMS__WEBHOOK_SECRET_FILE", &s.webhook_secret_file),
                "the webhook's signing secret",
            )?
            .ok_or_else(|| {
                missing(
                    SMS_WEBHOOK_SECRET,
                    "set the key the receiver checks X-Keyward-Signature with (or _FILE)",
                )
            })?;
            if secret.expose_secret().chars().count() < 16 {
                return Err(ConfigError::invalid(
                    SMS_WEBHOOK_SECRET,
                    "is shorter than 16 characters (use a long random string, e.g. `openssl rand -hex 32`)",
                ));
            }
            Ok(SmsProvider::Webhook {
                url: url.to_owned(),
                secret,
            })
        }
        "twilio" => {
            let sid = s
                .twilio_account_sid
                .as_deref()
                .ok_or_else(|| missing(SMS_TWILIO_SID, "set the account SID (AC…)"))?;
            if !sid.starts_with("AC") || !sid[2..].chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ConfigError::invalid(
                    SMS_TWILIO_SID,
                    format!(
                        "\"{sid}\" is not an account SID (expected AC followed by 32 hex digits)"
                    ),
                ));
            }
            let token = secret_from(
                (SMS_TWILIO_TOKEN, &s.twilio_auth_token),
                (
                    "KEYWARD_SMS__TWILIO_AUTH_TOKEN_FILE",
                    &s.twilio_auth_token_file,
                ),
                "the Twilio auth token",
            )?
            .ok_or_else(|| missing(SMS_TWILIO_TOKEN, "set the auth token (or _FILE)"))?;
            let from = s.twilio_from.as_deref().ok_or_else(|| {
                missing(
                    SMS_TWILIO_FROM,
                    "set the sender number (+E.164) or Messaging Service SID (MG…)",
                )
            })?;
            let e164 = from.len() > 8
                && from.len() <= 16
                && from.starts_with('+')
                && from[1..].chars().all(|c| c.is_ascii_digit());
            if !e164 && !from.starts_with("MG") {
                return Err(ConfigError::invalid(
                    SMS_TWILIO_FROM,
                    format!("\"{from}\" is neither an E.164 number nor a Messaging Service SID (expected e.g. +15005550006 or MG…)"),
                ));
            }
            plain_http_url(
                "KEYWARD_SMS__TWILIO_API_URL",
                &s.twilio_api_url,
                "expected Twilio's API base, e.g. https://api.twilio.com",
            )?;
            Ok(SmsProvider::Twilio {
                api_url: s.twilio_api_url.trim_end_matches('/').to_owned(),
                account_sid: sid.to_owned(),
                auth_token: token,
                from: from.to_owned(),
            })
        }
        other => Err(ConfigError::invalid(
            SMS_PROVIDER,
            format!("\"{other}\" is not a provider (expected log, webhook or twilio)"),
        )),
    }
}

/// AWS's rules for new buckets, which every S3-compatible store accepts.
fn is_bucket_name(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
}

/// An http(s) URL with a host and no credentials, query or fragment.
fn plain_http_url(key: &str, value: &str, expected: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|err| {
        ConfigError::invalid(
            key,
            format!("\"{}\" is not a URL: {err} ({expected})", safe_url(value)),
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
            key,
            format!("\"{}\" {problem} ({expected})", safe_url(value)),
        )),
        None => Ok(()),
    }
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
mod tests;

const MFA_RP_ID: &str = "KEYWARD_MFA__RP_ID";
const MFA_ORIGINS: &str = "KEYWARD_MFA__ORIGINS";

/// What can be checked of `[mfa]` before the node knows its public URL.
fn mfa(s: &Settings) -> Result<(), ConfigError> {
    if let Some(id) = &s.mfa.rp_id {
        rp_id_host(id)?;
    }
    for o in crate::split_list(&s.mfa.origins) {
        crate::parse_origin(o).map_err(|e| ConfigError::invalid(MFA_ORIGINS, e))?;
    }
    match &s.public_url {
        // Passkeys being unavailable on an IP address is not an error at start: a node
        // without them still serves everything else.
        Some(url) if s.mfa.rp_id.is_some() || !s.mfa.origins.trim().is_empty() => {
            relying_party(&s.mfa, url).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// A relying party ID: a domain name, not an IP address, with no scheme, port or path.
fn rp_id_host(id: &str) -> Result<String, ConfigError> {
    let host = url::Host::parse(id).map_err(|_| {
        ConfigError::invalid(
            MFA_RP_ID,
            format!(
                "\"{id}\" is not a domain name (expected e.g. example.com, without scheme or port)"
            ),
        )
    })?;
    match host {
        url::Host::Domain(d) if !d.is_empty() && !id.contains([':', '/']) => Ok(d),
        _ => Err(ConfigError::invalid(
            MFA_RP_ID,
            format!("\"{id}\" is not a domain name (browsers refuse IP addresses as relying party IDs; expected e.g. example.com)"),
        )),
    }
}

/// Whether `host` is `rp_id` or a subdomain of it.
fn under(host: &str, rp_id: &str) -> bool {
    host == rp_id || host.ends_with(&format!(".{rp_id}"))
}

pub(crate) fn relying_party(
    m: &crate::MfaSettings,
    public_url: &str,
) -> Result<crate::RelyingParty, ConfigError> {
    let public = url::Url::parse(public_url)
        .map_err(|e| ConfigError::invalid("KEYWARD_PUBLIC_URL", e.to_string()))?;
    let loopback = match public.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    let rp_id = match (&m.rp_id, public.host()) {
        (Some(id), _) => rp_id_host(id)?,
        (None, Some(url::Host::Domain(d))) => d.to_owned(),
        (None, _) if loopback => "localhost".to_owned(),
        (None, _) => {
            return Err(ConfigError::invalid(
                MFA_RP_ID,
                format!("is not set and the public URL {public_url} has an IP address, which browsers refuse for passkeys: set KEYWARD_PUBLIC_URL to a domain name or KEYWARD_MFA__RP_ID"),
            ))
        }
    };
    let mut origins: Vec<url::Url> = crate::split_list(&m.origins)
        .map(crate::parse_origin)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::invalid(MFA_ORIGINS, e))?;
    if origins.is_empty() {
        let mut origin = public.clone();
        origin.set_path("");
        origin.set_query(None);
        if loopback && m.rp_id.is_none() {
            // Pages on http://localhost:PORT reach a node bound to the loopback address.
            origin
                .set_host(Some("localhost"))
                .map_err(|e| ConfigError::invalid("KEYWARD_PUBLIC_URL", e.to_string()))?;
        }
        origins.push(origin);
    }
    for o in &origins {
        let host = o.host_str().unwrap_or_default();
        if !under(host, &rp_id) {
            return Err(ConfigError::invalid(
                if m.origins.trim().is_empty() { MFA_RP_ID } else { MFA_ORIGINS },
                format!("the origin {} is not on {rp_id} or a subdomain of it: WebAuthn allows only those", o.origin().ascii_serialization()),
            ));
        }
    }
    Ok(crate::RelyingParty { rp_id, origins })
}

const OAUTH_ALLOWLIST: &str = "KEYWARD_OAUTH__REDIRECT_ALLOWLIST";

pub(crate) fn redirect_allowlist(o: &crate::OAuthSettings) -> Result<Vec<url::Url>, ConfigError> {
    crate::split_list(&o.redirect_allowlist)
        .map(|raw| {
            let bad = |why: &str| {
                ConfigError::invalid(
                    OAUTH_ALLOWLIST,
                    format!("\"{raw}\" {why} (expected exact redirect URIs of your apps, e.g. https://app.example.com/auth/done or com.example.app:/oauth)"),
                )
            };
            let url = url::Url::parse(raw).map_err(|_| bad("is not an absolute URI"))?;
            if url.fragment().is_some() {
                return Err(bad("has a fragment"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("contains credentials"));
            }
            if matches!(url.scheme(), "http" | "https") && !url.has_host() {
                return Err(bad("has no host"));
            }
            if matches!(url.scheme(), "javascript" | "data" | "file") {
                return Err(bad("uses a scheme no app redirect may use"));
            }
            Ok(url)
        })
        .collect()
}

/// A provider's variable name, for messages.
fn provider_key(name: &str, field: &str) -> String {
    format!(
        "KEYWARD_OAUTH__PROVIDERS__{}__{}",
        name.to_ascii_uppercase(),
        field.to_ascii_uppercase()
    )
}

pub(crate) fn provider_secret(
    name: &str,
    p: &crate::ProviderSettings,
) -> Result<SecretString, ConfigError> {
    let key = |f: &str| provider_key(name, f);
    secret_from(
        (&key("client_secret"), &p.client_secret),
        (&key("client_secret_file"), &p.client_secret_file),
        "the client secret",
    )?
    .ok_or_else(|| {
        ConfigError::invalid(
            key("client_secret"),
            "is not set (the client secret the provider issued, or _FILE)",
        )
    })
}

/// A userinfo member's name: printable, no spaces, at most 128 bytes.
fn claim_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 128
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::invalid(
            key,
            format!("\"{name}\" is not a member name (a top-level member of the userinfo JSON, e.g. id or email; no spaces, at most 128 bytes)"),
        ));
    }
    Ok(())
}

fn oauth(o: &crate::OAuthSettings) -> Result<(), ConfigError> {
    redirect_allowlist(o)?;
    for (name, p) in &o.providers {
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ConfigError::invalid(
                provider_key(name, "kind"),
                format!("\"{name}\" is not a provider name (lower-case letters, digits and _, at most 32)"),
            ));
        }
        let key = |f: &str| provider_key(name, f);
        if !crate::PROVIDER_KINDS.contains(&p.kind.as_str()) {
            return Err(ConfigError::invalid(
                key("kind"),
                format!(
                    "\"{}\" is not a provider kind (expected one of {})",
                    p.kind,
                    crate::PROVIDER_KINDS.join(", ")
                ),
            ));
        }
        if p.client_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(ConfigError::invalid(
                key("client_id"),
                "is not set (the client id the provider issued for this site)",
            ));
        }
        // NOTE: VK ID exchanges its code with PKCE and the device_id, never with a client
        // secret (its documented token request has none), so a vk provider needs none.
        if p.kind != "vk" || p.client_secret.is_some() || p.client_secret_file.is_some() {
            provider_secret(name, p)?;
        }
        let endpoint = |f: &str, v: &Option<String>| match v.as_deref() {
            Some(v) => plain_http_url(
                &key(f),
                v,
                "the endpoint's URL, e.g. https://id.example.com/oauth/token",
            ),
            None => Ok(()),
        };
        let endpoints = [
            ("auth_url", &p.auth_url),
            ("token_url", &p.token_url),
            ("userinfo_url", &p.userinfo_url),
        ];
        let claims = [
            ("subject_claim", &p.subject_claim),
            ("email_claim", &p.email_claim),
            ("email_verified_claim", &p.email_verified_claim),
            ("username_claim", &p.username_claim),
            ("avatar_claim", &p.avatar_claim),
        ];
        match p.kind.as_str() {
            "oidc" => {
                let issuer = p.issuer.as_deref().ok_or_else(|| {
                    ConfigError::invalid(
                        key("issuer"),
                        "is not set: an oidc provider is found by its issuer (e.g. https://id.example.com)",
                    )
                })?;
                plain_http_url(
                    &key("issuer"),
                    issuer,
                    "the issuer URL, e.g. https://id.example.com",
                )?;
            }
            "oauth2" => {
                for (f, v) in endpoints {
                    if v.is_none() {
                        return Err(ConfigError::invalid(key(f), "is not set: a generic oauth2 provider needs its authorization, token and userinfo endpoints"));
                    }
                    endpoint(f, v)?;
                }
                for (f, v) in claims {
                    if let Some(c) = v.as_deref() {
                        claim_name(&key(f), c)?;
                    }
                }
            }
            // github, vk, yandex: their own endpoints unless replaced.
            _ => {
                for (f, v) in endpoints {
                    endpoint(f, v)?;
                }
            }
        }
        if p.native_client_ids.is_some() && !matches!(p.kind.as_str(), "oidc" | "google") {
            return Err(ConfigError::invalid(
                key("native_client_ids"),
                format!("is set, but only an OpenID provider (oidc, google) has ID tokens to check against more client ids; a {} provider's native sign-in checks the access token instead", p.kind),
            ));
        }
        if let Some(ids) = p.native_client_ids.as_deref() {
            if ids.split(',').any(|id| id.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    key("native_client_ids"),
                    "has an empty entry: comma-separated client ids, e.g. 123-ios.apps.googleusercontent.com,123-android.apps.googleusercontent.com",
                ));
            }
        }
        if p.kind != "oauth2" {
            if let Some((f, _)) = claims.iter().find(|(_, v)| v.is_some()) {
                return Err(ConfigError::invalid(
                    key(f),
                    format!("is set, but only an oauth2 provider maps claims (a {} provider's answer has a fixed shape): remove it, or use kind oauth2", p.kind),
                ));
            }
        }
    }
    Ok(())
}

/// `[retention]`: bounded periods, and failed logins kept at least as long as the throttle
/// counts them.
/// The max-age of GET /.well-known/jwks.json: a rotated-in key must be published at least
/// this long before it signs.
const JWKS_MAX_AGE_SECS: u64 = 300;

fn retention(s: &Settings) -> Result<(), ConfigError> {
    const MAX_DAYS: u64 = 36_500;
    let r = &s.retention;
    if r.every_secs > 604_800 {
        return Err(ConfigError::invalid(
            "KEYWARD_RETENTION__EVERY_SECS",
            format!(
                "{} is above 604800 (a week); purge at least weekly, or set 0 to turn the purger off",
                r.every_secs
            ),
        ));
    }
    if !(1..=100_000).contains(&r.batch_size) {
        return Err(ConfigError::invalid(
            "KEYWARD_RETENTION__BATCH_SIZE",
            format!(
                "{} is out of range (expected 1..=100000 rows per delete; the default is 1000)",
                r.batch_size
            ),
        ));
    }
    let days = [
        ("KEYWARD_RETENTION__OUTBOX_DAYS", Some(r.outbox_days)),
        ("KEYWARD_RETENTION__INBOX_DAYS", Some(r.inbox_days)),
        ("KEYWARD_RETENTION__SESSIONS_DAYS", Some(r.sessions_days)),
        (
            "KEYWARD_RETENTION__LOGIN_FAILURES_DAYS",
            Some(r.login_failures_days),
        ),
        ("KEYWARD_RETENTION__AUDIT_DAYS", r.audit_days),
    ];
    for (key, value) in days {
        let Some(value) = value.map(u64::from) else {
            continue;
        };
        if !(1..=MAX_DAYS).contains(&value) {
            return Err(ConfigError::invalid(
                key,
                format!("{value} is out of range (expected 1..={MAX_DAYS} days)"),
            ));
        }
    }
    if u64::from(r.login_failures_days).saturating_mul(86_400) < s.throttle.window_secs {
        return Err(ConfigError::invalid(
            "KEYWARD_RETENTION__LOGIN_FAILURES_DAYS",
            format!(
                "{} day(s) is shorter than KEYWARD_THROTTLE__WINDOW_SECS ({} s): the throttle would lose failures it still counts; raise it",
                r.login_failures_days, s.throttle.window_secs
            ),
        ));
    }
    Ok(())
}

/// `[cache]`: each capacity bounded below (a smaller cache misses on a small node's own
/// working set) and above (a typo with extra zeros would let a cache grow past the memory).
const CACHE_MIN: usize = 1024;
const CACHE_MAX: usize = 8_388_608;

fn cache(c: &crate::CacheSettings) -> Result<(), ConfigError> {
    let caps = [
        ("KEYWARD_CACHE__TOKENS", c.tokens, 262_144),
        ("KEYWARD_CACHE__SESSIONS", c.sessions, 262_144),
        ("KEYWARD_CACHE__PROFILES", c.profiles, 65_536),
        ("KEYWARD_CACHE__USERS", c.users, 100_000),
    ];
    for (key, value, default) in caps {
        if !(CACHE_MIN..=CACHE_MAX).contains(&value) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{value} is out of range: set it to {CACHE_MIN}..={CACHE_MAX} entries (the default is {default}; docs/operations.md sizes it by memory)"
                ),
            ));
        }
    }
    Ok(())
}

/// Settings loaded from these environment variables alone, as a node would load them.
#[cfg(test)]
fn load_env(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::load_from(None, &env)
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod retention_tests;
