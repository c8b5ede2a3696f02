//! Layering with figment: defaults < TOML file < `KEYWARD_*` variables.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::ExposeSecret;

use crate::error::one_line;
use crate::{default_database_url, ConfigError, Settings};

const PREFIX: &str = "KEYWARD_";
/// Names the config file; not a setting.
const CONFIG_VAR: &str = "KEYWARD_CONFIG";
const ENV_SOURCE: &str = "KEYWARD_* environment variables";

/// Every key `Settings` accepts, as `(section, fields)`; `""` is the top level.
/// Kept in sync with the structs by `the_schema_matches_the_structs`.
pub(crate) const SCHEMA: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "data_dir",
            "database_url",
            "bind",
            "management_bind",
            "public_url",
            "amqp_url",
            "smtp_url",
            "mail_from",
            "log",
            "log_format",
            "master_key",
            "master_key_file",
        ],
    ),
    (
        "tokens",
        &[
            "audience",
            "access_ttl_secs",
            "refresh_idle_ttl_secs",
            "refresh_absolute_ttl_secs",
            "refresh_grace_secs",
            "verification_ttl_secs",
            "reset_ttl_secs",
            "session_recheck_ms",
        ],
    ),
    (
        "passwords",
        &[
            "min_length",
            "max_length",
            "argon2_memory_kib",
            "argon2_iterations",
            "argon2_parallelism",
            "hasher_threads",
            "hasher_queue",
        ],
    ),
    (
        "http",
        &[
            "max_body_bytes",
            "request_timeout_secs",
            "workers",
            "header_timeout_secs",
            "body_timeout_secs",
            "keep_alive_secs",
            "connection_max_secs",
            "max_connections",
            "cors_origins",
            "trusted_proxies",
        ],
    ),
    (
        "throttle",
        &[
            "account_max_failures",
            "ip_max_failures",
            "window_secs",
            "base_delay_secs",
            "mail_per_address_per_hour",
            "mail_per_ip_per_hour",
            "ceremonies_per_ip_per_hour",
        ],
    ),
    (
        "profiles",
        &["deletion_grace_days", "default_visibility", "attributes"],
    ),
    (
        "access",
        &["preset", "default_roles", "client_token_ttl_secs", "roles"],
    ),
    (
        "sms",
        &[
            "provider",
            "webhook_url",
            "webhook_secret",
            "webhook_secret_file",
            "twilio_account_sid",
            "twilio_auth_token",
            "twilio_auth_token_file",
            "twilio_from",
            "twilio_api_url",
            "max_per_ip_per_hour",
            "max_per_number_per_hour",
        ],
    ),
    ("mfa", &["rp_id", "origins"]),
    ("oauth", &["redirect_allowlist", "providers"]),
    (
        "avatars",
        &[
            "s3_endpoint",
            "s3_bucket",
            "s3_region",
            "s3_access_key_id",
            "s3_secret_access_key",
            "s3_secret_access_key_file",
            "public_base_url",
            "max_bytes",
            "max_pixels",
        ],
    ),
    (
        "retention",
        &[
            "every_secs",
            "batch_size",
            "outbox_days",
            "inbox_days",
            "sessions_days",
            "login_failures_days",
            "audit_days",
        ],
    ),
    (
        "keys",
        &[
            "publish_lead_secs",
            "backend",
            "vault_addr",
            "vault_token",
            "vault_token_file",
            "vault_mount",
            "vault_key",
            "vault_timeout_ms",
        ],
    ),
    ("cache", &["tokens", "sessions", "profiles", "users"]),
    (
        "notify",
        &["categories", "allow_loopback_push", "templates_file"],
    ),
];

/// The fields of `[oauth.providers.<name>]`.
pub(crate) const PROVIDER_FIELDS: &[&str] = &[
    "kind",
    "issuer",
    "client_id",
    "client_secret",
    "client_secret_file",
    "scopes",
    "auth_url",
    "token_url",
    "userinfo_url",
    "native_client_ids",
    "subject_claim",
    "email_claim",
    "email_verified_claim",
    "username_claim",
    "avatar_claim",
];

/// Settings whose values must never appear in messages.
const SECRET_FIELDS: &[&str] = &[
    "amqp_url",
    "smtp_url",
    "master_key",
    "s3_secret_access_key",
    "client_secret",
];

/// The settings key path (`["tokens", "access_ttl_secs"]`) as its variable name.
fn env_name(path: &[String]) -> String {
    format!("{PREFIX}{}", path.join("__").to_ascii_uppercase())
}

fn is_known(section: &str, field: &str) -> bool {
    SCHEMA
        .iter()
        .any(|(s, fields)| *s == section && fields.contains(&field))
}

fn is_section(name: &str) -> bool {
    !name.is_empty() && SCHEMA.iter().any(|(s, _)| *s == name)
}

/// `KEYWARD_TOKENS__ACCESS_TTL_SECS` → `["tokens", "access_ttl_secs"]`.
fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.to_ascii_uppercase();
    let rest = rest.strip_prefix(PREFIX)?.to_ascii_lowercase();
    // KEYWARD_OAUTH__PROVIDERS__<NAME>__<FIELD>
    if let Some(provider) = rest.strip_prefix("oauth__providers__") {
        let (name, field) = provider.rsplit_once("__")?;
        return (!name.is_empty() && PROVIDER_FIELDS.contains(&field)).then(|| {
            vec![
                "oauth".to_owned(),
                "providers".to_owned(),
                name.to_owned(),
                field.to_owned(),
            ]
        });
    }
    match rest.split_once("__") {
        Some((section, field)) if is_section(section) && is_known(section, field) => {
            Some(vec![section.to_owned(), field.to_owned()])
        }
        Some(_) => None,
        None if is_known("", &rest) => Some(vec![rest]),
        None => None,
    }
}

/// The process environment's `KEYWARD_*` variables, for [`Settings::load`].
pub(crate) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.to_ascii_uppercase().starts_with(PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => vars.push((name.to_owned(), value)),
            Err(_) => {
                return Err(ConfigError::invalid(
                    name,
                    "is not valid UTF-8 (set it to a UTF-8 value or unset it)",
                ))
            }
        }
    }
    Ok(vars)
}

/// The `KEYWARD_*` part of an environment, as a figment provider.
struct EnvLayer {
    /// `(settings path, value)` of known, non-empty variables; later wins.
    values: Vec<(Vec<String>, String)>,
    /// `KEYWARD_CONFIG`, if set and non-empty.
    config_file: Option<PathBuf>,
    /// `KEYWARD_*` names that are not settings.
    unknown: Vec<String>,
}

impl EnvLayer {
    fn new(env: &[(String, String)]) -> Self {
        let mut layer = EnvLayer {
            values: Vec::new(),
            config_file: None,
            unknown: Vec::new(),
        };
        for (name, value) in env {
            let upper = name.trim().to_ascii_uppercase();
            if !upper.starts_with(PREFIX) {
                continue;
            }
            let value = value.trim();
            if upper == CONFIG_VAR {
                layer.config_file = (!value.is_empty()).then(|| PathBuf::from(value));
                continue;
            }
            match env_path(&upper) {
                // Empty counts as unset: drop what an earlier duplicate set.
                Some(path) if value.is_empty() => layer.values.retain(|(p, _)| *p != path),
                Some(path) => layer.values.push((path, value.to_owned())),
                None => layer.unknown.push(name.trim().to_owned()),
            }
        }
        layer
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        let mut sections: Map<String, Dict> = Map::new();
        let mut providers: Map<String, Dict> = Map::new();
        for (path, value) in &self.values {
            // Strings stay strings; `extract_lossy` turns them into numbers
            // only where a number is expected.
            let value = Value::from(value.clone());
            match path.as_slice() {
                [field] => {
                    root.insert(field.clone(), value);
                }
                [section, field] => {
                    sections
                        .entry(section.clone())
                        .or_default()
                        .insert(field.clone(), value);
                }
                [_, _, name, field] => {
                    providers
                        .entry(name.clone())
                        .or_default()
                        .insert(field.clone(), value);
                }
                _ => {}
            }
        }
        if !providers.is_empty() {
            let named: Dict = providers
                .into_iter()
                .map(|(name, dict)| (name, Value::from(dict)))
                .collect();
            sections
                .entry("oauth".to_owned())
                .or_default()
                .insert("providers".to_owned(), Value::from(named));
        }
        for (section, dict) in sections {
            root.insert(section, Value::from(dict));
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Where the TOML layer comes from, for messages. Named `KEYWARD_CONFIG`
/// even when passed explicitly: the binary's `--config` mirrors that variable.
struct FileSource {
    path: PathBuf,
}

impl FileSource {
    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::File {
            key: CONFIG_VAR.to_owned(),
            path: self.path.clone(),
            message: one_line(&message.into()),
        }
    }
}

pub(crate) fn load_from(
    file: Option<&Path>,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let env = EnvLayer::new(env);
    for name in &env.unknown {
        match suggestion(name) {
            Some(known) => tracing::warn!(
                variable = %name,
                "ignoring unknown environment variable {name} (did you mean {known}?)"
            ),
            None => {
                tracing::warn!(variable = %name, "ignoring unknown environment variable {name}")
            }
        }
    }

    let source = match file {
        Some(path) => Some(FileSource {
            path: path.to_owned(),
        }),
        None => env.config_file.clone().map(|path| FileSource { path }),
    };

    let mut figment = Figment::new();
    if let Some(source) = &source {
        let toml = read_toml(source)?;
        figment = figment.merge(toml);
    }
    let figment = figment.merge(env);

    let mut settings: Settings = figment
        .extract_lossy()
        .map_err(|err| from_figment(err, source.as_ref()))?;
    if !figment.contains("database_url") || settings.database_url.trim().is_empty() {
        settings.database_url = default_database_url(&settings.data_dir);
    }
    normalize(&mut settings);
    settings.validate()?;
    Ok(settings)
}

/// The TOML layer, after checking the file exists and warning about unknown keys.
fn read_toml(source: &FileSource) -> Result<figment::providers::Data<Toml>, ConfigError> {
    match std::fs::metadata(&source.path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(source.error("is not a file (fix the path)")),
        Err(err) => return Err(source.error(format!("{err} (fix the path)"))),
    }
    let toml = Toml::file_exact(&source.path);
    let data = toml.data().map_err(|err| {
        source.error(format!(
            "{} (fix the TOML syntax)",
            one_line(&err.kind.to_string())
        ))
    })?;
    if let Some(dict) = data.get(&Profile::Default) {
        for key in unknown_file_keys(dict) {
            tracing::warn!(
                key = %key,
                file = %source.path.display(),
                "ignoring unknown key {key} in {}",
                source.path.display()
            );
        }
    }
    Ok(toml)
}

/// Dotted names of keys in a TOML document that are not settings.
fn unknown_file_keys(dict: &Dict) -> Vec<String> {
    let mut unknown = Vec::new();
    for (key, value) in dict {
        if is_section(key) {
            if let Value::Dict(_, fields) = value {
                unknown.extend(
                    fields
                        .keys()
                        .filter(|field| !is_known(key, field))
                        .map(|field| format!("{key}.{field}")),
                );
                if let Some(Value::Dict(_, providers)) = fields.get("providers") {
                    for (name, p) in providers {
                        if let Value::Dict(_, p) = p {
                            unknown.extend(
                                p.keys()
                                    .filter(|f| !PROVIDER_FIELDS.contains(&f.as_str()))
                                    .map(|f| format!("{key}.providers.{name}.{f}")),
                            );
                        }
                    }
                }
            }
        } else if !is_known("", key) {
            unknown.push(key.clone());
        }
    }
    unknown
}

/// The known variable an unknown one most likely meant, e.g. a single `_`
/// where the section separator `__` belongs.
fn suggestion(name: &str) -> Option<String> {
    let squash = |s: &str| s.to_ascii_uppercase().replace("__", "_");
    let wanted = squash(name);
    SCHEMA
        .iter()
        .flat_map(|(section, fields)| {
            fields.iter().map(move |field| {
                let path: Vec<String> = if section.is_empty() {
                    vec![(*field).to_owned()]
                } else {
                    vec![(*section).to_owned(), (*field).to_owned()]
                };
                env_name(&path)
            })
        })
        .find(|known| squash(known) == wanted && known != name)
}

/// Turn a figment extraction error into a one-line error naming the variable.
fn from_figment(err: figment::Error, file: Option<&FileSource>) -> ConfigError {
    let in_file = err
        .metadata
        .as_ref()
        .is_some_and(|meta| meta.name != ENV_SOURCE);
    let secret = err
        .path
        .last()
        .is_some_and(|field| SECRET_FIELDS.contains(&field.as_str()));
    let key = match (err.path.is_empty(), file) {
        (false, _) => env_name(&err.path),
        (true, Some(_)) => CONFIG_VAR.to_owned(),
        (true, None) => "configuration".to_owned(),
    };
    let mut message = describe(&err.kind, secret);
    if let (true, Some(file), false) = (in_file, file, err.path.is_empty()) {
        message.push_str(&format!(
            " (key {} in {})",
            err.path.join("."),
            file.path.display()
        ));
    }
    ConfigError::invalid(key, message)
}

fn describe(kind: &figment::error::Kind, secret: bool) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(_, expected) if secret => {
            format!("has the wrong type, expected {}", human(expected))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {actual}", human(expected))
        }
        Kind::UnknownVariant(found, expected) => format!(
            "unknown value \"{found}\", expected one of: {}",
            expected.join(", ")
        ),
        other => other.to_string(),
    }
}

fn human(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        other if other.starts_with("struct ") => "a table of settings".to_owned(),
        other => other.to_owned(),
    }
}

/// Canonical forms: empty optional values are unset, `public_url` and
/// `avatars.public_base_url` have no trailing `/`.
fn normalize(settings: &mut Settings) {
    settings.public_url = settings
        .public_url
        .take()
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty());
    for secret in [
        &mut settings.amqp_url,
        &mut settings.smtp_url,
        &mut settings.master_key,
    ] {
        if secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().trim().is_empty())
        {
            *secret = None;
        }
    }
    if settings
        .master_key_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        settings.master_key_file = None;
    }
    normalize_avatars(&mut settings.avatars);
}

/// Empty avatar settings are unset, values lose surrounding blanks, and
/// `public_base_url` loses its trailing `/`.
fn normalize_avatars(a: &mut crate::AvatarSettings) {
    for text in [
        &mut a.s3_endpoint,
        &mut a.s3_bucket,
        &mut a.s3_region,
        &mut a.s3_access_key_id,
        &mut a.public_base_url,
    ] {
        *text = text
            .take()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
    }
    a.public_base_url = a
        .public_base_url
        .take()
        .map(|url| url.trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty());
    if a.s3_secret_access_key
        .as_ref()
        .is_some_and(|s| s.expose_secret().trim().is_empty())
    {
        a.s3_secret_access_key = None;
    }
    if a.s3_secret_access_key_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        a.s3_secret_access_key_file = None;
    }
}

#[cfg(test)]
mod tests;
