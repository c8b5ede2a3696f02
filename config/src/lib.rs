//! Typed settings for Keyward.
//!
//! This crate owns the shape, defaults, layering and validation of Keyward's
//! configuration: built-in defaults < `keyward.toml` (passed explicitly or
//! named by `KEYWARD_CONFIG`) < `KEYWARD_*` environment variables. Settings
//! are read once at start and are immutable afterwards.
//!
//! It refuses to: reload at runtime, open sockets, databases or files other
//! than the config file and the master key file, pick a log format for the
//! terminal (that is the binary's decision), and print secrets — `Debug`,
//! errors and [`Settings::redacted_toml`] never show them.

mod error;
mod load;
mod redact;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use redact::safe_url;

/// Everything Keyward can be configured with.
///
/// Obtained from [`Settings::load`] / [`Settings::load_from`], which
/// guarantee [`Settings::validate`] passed. Each field's doc names its
/// environment variable; in `keyward.toml` the key is the field name.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `KEYWARD_DATA_DIR`: where the SQLite database and local state live.
    pub data_dir: PathBuf,
    /// `KEYWARD_DATABASE_URL`: `sqlite:` or `postgres://` / `postgresql://`.
    /// Defaults to `sqlite://{data_dir}/keyward.db?mode=rwc` using the final `data_dir`.
    pub database_url: String,
    /// `KEYWARD_BIND`: public API listener, a socket address (port 0 = any free port).
    pub bind: String,
    /// `KEYWARD_MANAGEMENT_BIND`: health/metrics listener, a socket address.
    pub management_bind: String,
    /// `KEYWARD_PUBLIC_URL`: external base URL (http/https, no query or
    /// fragment, no trailing `/`). `None`: the node derives `http://{bind}` once bound.
    pub public_url: Option<String>,
    /// `KEYWARD_AMQP_URL`: `amqp://` or `amqps://`; setting it makes the node distributed.
    pub amqp_url: Option<SecretString>,
    /// `KEYWARD_SMTP_URL`: `smtp://` or `smtps://`; unset means mail is not sent.
    pub smtp_url: Option<SecretString>,
    /// `KEYWARD_MAIL_FROM`: sender of outgoing mail, e.g. `Keyward <no-reply@example.com>`.
    pub mail_from: String,
    /// `KEYWARD_LOG`: tracing filter directives, e.g. `info,keyward=debug`.
    pub log: String,
    /// `KEYWARD_LOG_FORMAT`: `pretty`, `json` or `auto`.
    pub log_format: LogFormat,
    /// `KEYWARD_MASTER_KEY`: base64 (standard or url-safe, padding optional)
    /// of exactly 32 bytes. Mutually exclusive with `master_key_file`.
    pub master_key: Option<SecretString>,
    /// `KEYWARD_MASTER_KEY_FILE`: a file holding the master key's base64
    /// (surrounding whitespace ignored). Mutually exclusive with `master_key`.
    pub master_key_file: Option<PathBuf>,
    /// `[tokens]` / `KEYWARD_TOKENS__*`.
    pub tokens: TokenSettings,
    /// `[passwords]` / `KEYWARD_PASSWORDS__*`.
    pub passwords: PasswordSettings,
    /// `[http]` / `KEYWARD_HTTP__*`.
    pub http: HttpSettings,
    /// `[throttle]` / `KEYWARD_THROTTLE__*`.
    pub throttle: ThrottleSettings,
    /// `[profiles]` / `KEYWARD_PROFILES__*`.
    pub profiles: ProfileSettings,
    /// `[avatars]` / `KEYWARD_AVATARS__*`.
    pub avatars: AvatarSettings,
    /// `[access]` / `KEYWARD_ACCESS__*`.
    pub access: AccessSettings,
    /// `[notify]` / `KEYWARD_NOTIFY__*`.
    pub notify: NotifySettings,
    /// `[sms]` / `KEYWARD_SMS__*`.
    pub sms: SmsSettings,
    /// `[mfa]` / `KEYWARD_MFA__*`.
    pub mfa: MfaSettings,
    /// `[oauth]` / `KEYWARD_OAUTH__*`: social login.
    pub oauth: OAuthSettings,
    /// `[retention]` / `KEYWARD_RETENTION__*`: what the purger removes, and when.
    pub retention: RetentionSettings,
    /// `[keys]` / `KEYWARD_KEYS__*`: signing key rotation.
    pub keys: KeySettings,
    /// `[cache]` / `KEYWARD_CACHE__*`: how many entries each node-local cache holds.
    pub cache: CacheSettings,
}

/// Token lifetimes, `[tokens]` / `KEYWARD_TOKENS__<FIELD>`. All durations in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct TokenSettings {
    /// `aud` claim of issued access tokens; non-empty.
    pub audience: String,
    /// Access token lifetime; at least 1.
    pub access_ttl_secs: u64,
    /// A refresh token unused for this long expires; at least 1.
    pub refresh_idle_ttl_secs: u64,
    /// A refresh token family expires this long after login; `>= refresh_idle_ttl_secs`.
    pub refresh_absolute_ttl_secs: u64,
    /// A just-rotated refresh token stays usable this long (concurrent clients).
    pub refresh_grace_secs: u64,
    /// E-mail verification link lifetime; at least 1.
    pub verification_ttl_secs: u64,
    /// Password reset link lifetime; at least 1.
    pub reset_ttl_secs: u64,
    /// The most a node may lag behind a revocation, 0..=1000: a session read as live is
    /// believed until it ends while the outbox feed caught up within this, and for this long
    /// from its own read otherwise. Within the one second DESIGN promises.
    pub session_recheck_ms: u64,
}

/// Password policy and hashing cost, `[passwords]` / `KEYWARD_PASSWORDS__<FIELD>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct PasswordSettings {
    /// Shortest accepted password, in characters; 8..=128.
    pub min_length: usize,
    /// Longest accepted password, in characters; `min_length..=1024` (bounds hashing cost).
    pub max_length: usize,
    /// Argon2id memory cost in KiB; at least `8 * argon2_parallelism` (an Argon2 rule).
    pub argon2_memory_kib: u32,
    /// Argon2id passes; at least 1.
    pub argon2_iterations: u32,
    /// Argon2id lanes; at least 1.
    pub argon2_parallelism: u32,
    /// Hashing threads; 0 = number of cores.
    pub hasher_threads: usize,
    /// Hash jobs allowed to wait before requests get 503; 0 = 4 × threads.
    pub hasher_queue: usize,
}

/// HTTP server limits, `[http]` / `KEYWARD_HTTP__<FIELD>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Largest accepted request body; at least 1.
    pub max_body_bytes: usize,
    /// Whole-request deadline; at least 1.
    pub request_timeout_secs: u64,
    /// HTTP worker threads; 0 = number of cores.
    pub workers: usize,
    /// Seconds a client has to send its whole request head (slow clients get 408); at least 1.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send its whole request body once the head is in (slow clients
    /// get 408); at least 1.
    pub body_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept between requests; at least 1.
    pub keep_alive_secs: u64,
    /// Seconds a connection may live: past this its next reply closes it, and a connection
    /// stuck anywhere (e.g. a client that never reads its reply) is cut when the request
    /// deadlines are also spent; at least 1.
    pub connection_max_secs: u64,
    /// Concurrent connections on the public port; more wait in the listen backlog. 0 = 3/4 of
    /// the descriptor limit (raised to the hard limit at start), at most 10,000. Always capped
    /// below the descriptor limit, so the management port and the database keep theirs.
    pub max_connections: usize,
    /// Comma-separated browser origins allowed to call the API cross-origin (exact, e.g.
    /// `https://app.example.com`); empty: no cross-origin access.
    pub cors_origins: String,
    /// Comma-separated IPs or CIDRs of proxies whose `X-Forwarded-For` is believed; empty:
    /// the client IP is always the TCP peer's.
    pub trusted_proxies: String,
}

impl HttpSettings {
    /// The CORS origins, each checked to be an origin (scheme, host, optional port; no path).
    pub fn cors_origin_list(&self) -> Result<Vec<String>, String> {
        split_list(&self.cors_origins)
            .map(|o| parse_origin(o).map(|_| o.to_owned()))
            .collect()
    }

    /// The trusted proxies as networks (a bare IP is a /32 or /128).
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("{p:?} is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)")
                    })
            })
            .collect()
    }
}

/// Failed-login throttling, `[throttle]` / `KEYWARD_THROTTLE__<FIELD>`. State lives in the
/// database, so every node counts the same failures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ThrottleSettings {
    /// Failed logins on one account within the window before it is throttled; at least 1.
    pub account_max_failures: u32,
    /// Failed logins from one client IP within the window before it is throttled; at least 1.
    pub ip_max_failures: u32,
    /// The sliding window; at least 1.
    pub window_secs: u64,
    /// First delay once throttled; it doubles with every further failure, up to the window.
    pub base_delay_secs: u64,
    /// Requests that mail an address (register, resend, forgot) per target address per hour;
    /// at least 1.
    pub mail_per_address_per_hour: u32,
    /// Requests that mail an address per client IP per hour; at least 1.
    pub mail_per_ip_per_hour: u32,
    /// Sign-ins begun without an account per client IP per hour (passkey login options, social
    /// login starts): each stores a ceremony until it expires; at least 1.
    pub ceremonies_per_ip_per_hour: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            account_max_failures: 5,
            ip_max_failures: 100,
            window_secs: 900,
            base_delay_secs: 30,
            mail_per_address_per_hour: 5,
            mail_per_ip_per_hour: 30,
            ceremonies_per_ip_per_hour: 300,
        }
    }
}

/// Profiles, `[profiles]` / `KEYWARD_PROFILES__<FIELD>`. Product attributes are declared in
/// keyward.toml as `[[profiles.attributes]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProfileSettings {
    /// Days between a self-deletion and the erasure of the account (logging in cancels it).
    pub deletion_grace_days: u32,
    /// The visibility of a profile its owner never set: `public`, `users` or `private`.
    pub default_visibility: String,
    /// Product fields of a profile, validated on every write.
    pub attributes: Vec<AttributeSettings>,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings {
            deletion_grace_days: 7,
            default_visibility: "users".to_owned(),
            attributes: Vec::new(),
        }
    }
}

/// Roles, permissions and service clients, `[access]` / `KEYWARD_ACCESS__<FIELD>`. Roles
/// are declared in keyward.toml as `[[access.roles]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct AccessSettings {
    /// A seed product's roles: `clinic`, `events`, `social` or `marketplace`; empty: none.
    pub preset: String,
    /// Comma-separated roles every new account gets at registration.
    pub default_roles: String,
    /// Lifetime of a service client's access token, in seconds.
    pub client_token_ttl_secs: u64,
    /// Roles declared here (they win over a preset's role of the same name).
    pub roles: Vec<RoleSettings>,
}

impl AccessSettings {
    /// `default_roles` as a list.
    pub fn default_role_list(&self) -> Vec<String> {
        self.default_roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            preset: String::new(),
            default_roles: String::new(),
            client_token_ttl_secs: 300,
            roles: Vec::new(),
        }
    }
}

/// One declared role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// Notifications, `[notify]` / `KEYWARD_NOTIFY__<FIELD>`. Categories are declared in
/// keyward.toml as `[[notify.categories]]` tables; `security` and `general` always exist
/// (declaring one of them changes its default channels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct NotifySettings {
    pub categories: Vec<CategorySettings>,
    /// `KEYWARD_NOTIFY__ALLOW_LOOPBACK_PUSH`: accept push subscriptions whose endpoint is plain
    /// http on the loopback (a local push service, for tests). Off: endpoints are https on a
    /// domain name, so a subscription cannot point Keyward at an internal address.
    pub allow_loopback_push: bool,
    /// `KEYWARD_NOTIFY__TEMPLATES_FILE`: a JSON file of the product's templates (the format of
    /// deploy/presets/*.templates.json), put in place at every start; a template edited
    /// through the admin API is kept. A relative path is from the working directory.
    pub templates_file: Option<PathBuf>,
}

/// One declared notification category and the channels it uses unless a send names others.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CategorySettings {
    pub name: String,
    /// Any of `email`, `in_app`, `sms`, `push`.
    pub channels: Vec<String>,
}

impl NotifySettings {
    /// Every category with its default channels: the built-in ones, then those declared.
    pub fn category_list(&self) -> Vec<CategorySettings> {
        let mut out: Vec<CategorySettings> = ["security", "general"]
            .into_iter()
            .map(|name| CategorySettings {
                name: name.to_owned(),
                channels: vec!["email".to_owned(), "in_app".to_owned()],
            })
            .collect();
        for c in &self.categories {
            match out.iter_mut().find(|o| o.name == c.name) {
                Some(o) => o.channels = c.channels.clone(),
                None => out.push(c.clone()),
            }
        }
        out
    }
}

/// Where SMS texts go, `[sms]` / `KEYWARD_SMS__<FIELD>`. `Debug` hides the secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    /// `KEYWARD_SMS__PROVIDER`: `log` (default: each text written as a JSON file under
    /// `{data_dir}/sms/`), `webhook` (POST `{to, text}` to `webhook_url`, signed with
    /// `webhook_secret`) or `twilio` (Twilio's Messages API).
    pub provider: String,
    /// `KEYWARD_SMS__WEBHOOK_URL`: http or https, no credentials or fragment.
    pub webhook_url: Option<String>,
    /// `KEYWARD_SMS__WEBHOOK_SECRET`: the HMAC-SHA256 key of the `X-Keyward-Signature`
    /// header; at least 16 characters. Mutually exclusive with `webhook_secret_file`.
    pub webhook_secret: Option<SecretString>,
    /// `KEYWARD_SMS__WEBHOOK_SECRET_FILE`: a file holding that secret.
    pub webhook_secret_file: Option<PathBuf>,
    /// `KEYWARD_SMS__TWILIO_ACCOUNT_SID`: `AC…`.
    pub twilio_account_sid: Option<String>,
    /// `KEYWARD_SMS__TWILIO_AUTH_TOKEN`. Mutually exclusive with `twilio_auth_token_file`.
    pub twilio_auth_token: Option<SecretString>,
    /// `KEYWARD_SMS__TWILIO_AUTH_TOKEN_FILE`: a file holding the auth token.
    pub twilio_auth_token_file: Option<PathBuf>,
    /// `KEYWARD_SMS__TWILIO_FROM`: the sender, an E.164 number or a Messaging Service SID
    /// (`MG…`).
    pub twilio_from: Option<String>,
    /// `KEYWARD_SMS__TWILIO_API_URL`: Twilio's API base, `https://api.twilio.com` unless a
    /// regional edge or a test double is wanted.
    pub twilio_api_url: String,
    /// `KEYWARD_SMS__MAX_PER_IP_PER_HOUR`: codes sent by SMS for requests from one client IP
    /// in an hour; 1..=1000, default 2. This is what stops SMS pumping: a run from 50
    /// addresses gets at most 100 texts an hour, however many numbers it tries.
    pub max_per_ip_per_hour: u32,
    /// `KEYWARD_SMS__MAX_PER_NUMBER_PER_HOUR`: codes sent to one phone number in an hour;
    /// 1..=1000, default 3.
    pub max_per_number_per_hour: u32,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            provider: "log".to_owned(),
            webhook_url: None,
            webhook_secret: None,
            webhook_secret_file: None,
            twilio_account_sid: None,
            twilio_auth_token: None,
            twilio_auth_token_file: None,
            twilio_from: None,
            twilio_api_url: "https://api.twilio.com".to_owned(),
            max_per_ip_per_hour: 2,
            max_per_number_per_hour: 3,
        }
    }
}

/// The SMS provider [`SmsSettings::provider`] describes, with its secrets read.
#[derive(Debug, Clone)]
pub enum SmsProvider {
    /// JSON files under `{data_dir}/sms/`.
    Log,
    Webhook {
        url: String,
        secret: SecretString,
    },
    Twilio {
        api_url: String,
        account_sid: String,
        auth_token: SecretString,
        from: String,
    },
}

impl SmsSettings {
    /// The provider, its settings complete and its secret read; errors name the variable and
    /// the fix, never the secret.
    pub fn provider(&self) -> Result<SmsProvider, ConfigError> {
        validate::sms(self)
    }
}

fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|o| !o.is_empty())
}

/// An origin: scheme (http or https), host, optional port; no path, query or credentials.
fn parse_origin(o: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(o)
        .map_err(|_| format!("{o:?} is not an origin (e.g. https://app.example.com)"))?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && !o.ends_with('/')
        && url.query().is_none()
        && url.username().is_empty();
    if bare {
        Ok(url)
    } else {
        Err(format!("{o:?} is not an origin: use scheme://host[:port] with no path (e.g. https://app.example.com)"))
    }
}

/// Passkeys (WebAuthn), `[mfa]` / `KEYWARD_MFA__<FIELD>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct MfaSettings {
    /// `KEYWARD_MFA__RP_ID`: the WebAuthn relying party ID, a domain name (no scheme or
    /// port) that every origin is or is under. Default: the host of the public URL
    /// (`localhost` when that is a loopback address, as browsers refuse IP addresses).
    pub rp_id: Option<String>,
    /// `KEYWARD_MFA__ORIGINS`: comma-separated origins whose pages may use the passkeys
    /// (e.g. `https://app.example.com,https://id.example.com`). Default: the public URL's
    /// origin.
    pub origins: String,
}

/// Social login, `[oauth]` / `KEYWARD_OAUTH__<FIELD>`; each provider under
/// `[oauth.providers.<name>]` / `KEYWARD_OAUTH__PROVIDERS__<NAME>__<FIELD>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OAuthSettings {
    /// `KEYWARD_OAUTH__REDIRECT_ALLOWLIST`: comma-separated redirect URIs of the apps (exact
    /// match), where a finished web login sends its one-time code. Empty: no web login.
    pub redirect_allowlist: String,
    pub providers: std::collections::BTreeMap<String, ProviderSettings>,
}

/// The kinds of provider `[oauth.providers.<name>] kind` takes.
pub const PROVIDER_KINDS: &[&str] = &["oidc", "google", "github", "vk", "yandex", "oauth2"];

/// One social login provider. `Debug` hides the secret.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    /// `oidc`, `google`, `github`, `vk`, `yandex` or `oauth2`.
    pub kind: String,
    /// `oidc`: the issuer (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// A file holding the client secret. Mutually exclusive with `client_secret`.
    pub client_secret_file: Option<PathBuf>,
    /// Space- or comma-separated scopes; the kind's default when unset.
    pub scopes: Option<String>,
    /// The authorization, token and userinfo endpoints: required for `oauth2`; for `github`,
    /// `vk` and `yandex` they replace the provider's own (`github` reads the emails at
    /// `{userinfo_url}/emails`). Unused by the OpenID kinds, whose discovery names them.
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    /// `oauth2`: the userinfo member holding the user's stable id (default `sub`); a number
    /// is taken as its decimal string.
    pub subject_claim: Option<String>,
    /// `oauth2`: the member holding the email (default `email`).
    pub email_claim: Option<String>,
    /// `oauth2`: the member saying the provider verified the email (default
    /// `email_verified`); absent means not verified.
    pub email_verified_claim: Option<String>,
    /// `oauth2`: the member holding a login name (default `preferred_username`).
    pub username_claim: Option<String>,
    /// `oauth2`: the member holding the picture's URL (default `picture`).
    pub avatar_claim: Option<String>,
    /// `oidc`, `google`: comma-separated client ids of the product's own native apps (its iOS
    /// and Android clients at the provider), whose ID tokens `POST /v1/auth/oauth` accepts
    /// beside `client_id`'s.
    pub native_client_ids: Option<String>,
}

impl ProviderSettings {
    /// The client secret (inline or from its file) of the provider named `name`.
    pub fn secret(&self, name: &str) -> Result<SecretString, ConfigError> {
        validate::provider_secret(name, self)
    }
}

impl OAuthSettings {
    /// The redirect allowlist, each entry checked to be an absolute URI without a fragment.
    pub fn redirect_uris(&self) -> Result<Vec<url::Url>, ConfigError> {
        validate::redirect_allowlist(self)
    }
}

/// Where passkeys are used: the relying party ID and the origins allowed to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub rp_id: String,
    pub origins: Vec<url::Url>,
}

impl MfaSettings {
    /// The relying party for a node whose public URL is `public_url`: Err says why passkeys
    /// cannot work there (naming the variable to set).
    pub fn relying_party(&self, public_url: &str) -> Result<RelyingParty, ConfigError> {
        validate::relying_party(self, public_url)
    }
}

/// The seed products whose roles `KEYWARD_ACCESS__PRESET` loads.
pub const ACCESS_PRESETS: [&str; 4] = ["clinic", "events", "social", "marketplace"];

/// One declared profile attribute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSettings {
    /// `[a-z][a-z0-9_]*`, at most 32 characters, not a standard profile field.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AttributeKind,
    /// Longest string (or list item), in characters; default 256.
    #[serde(default = "default_attribute_length")]
    pub max_length: u32,
    /// Most items of a string-list; default 20.
    #[serde(default = "default_attribute_items")]
    pub max_items: u32,
    /// Who may change it.
    #[serde(default)]
    pub edit: AttributeEdit,
    /// Who may see it.
    #[serde(default)]
    pub view: AttributeView,
}

fn default_attribute_length() -> u32 {
    256
}
fn default_attribute_items() -> u32 {
    20
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttributeKind {
    String,
    Number,
    Bool,
    StringList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeEdit {
    #[default]
    User,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeView {
    Public,
    Users,
    #[default]
    #[serde(rename = "self")]
    Owner,
    Admin,
}

/// Log output format. `Auto` lets the binary pick: JSON when stdout is not a TTY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
}

impl Default for Settings {
    fn default() -> Self {
        let data_dir = PathBuf::from("./data");
        Settings {
            database_url: default_database_url(&data_dir),
            data_dir,
            bind: "127.0.0.1:8080".to_owned(),
            management_bind: "127.0.0.1:9090".to_owned(),
            public_url: None,
            amqp_url: None,
            smtp_url: None,
            mail_from: "Keyward <no-reply@localhost>".to_owned(),
            log: "info".to_owned(),
            log_format: LogFormat::Auto,
            master_key: None,
            master_key_file: None,
            tokens: TokenSettings::default(),
            passwords: PasswordSettings::default(),
            http: HttpSettings::default(),
            throttle: ThrottleSettings::default(),
            profiles: ProfileSettings::default(),
            access: AccessSettings::default(),
            avatars: AvatarSettings::default(),
            notify: NotifySettings::default(),
            sms: SmsSettings::default(),
            mfa: MfaSettings::default(),
            oauth: OAuthSettings::default(),
            retention: RetentionSettings::default(),
            keys: KeySettings::default(),
            cache: CacheSettings::default(),
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            audience: "keyward".to_owned(),
            access_ttl_secs: 900,
            refresh_idle_ttl_secs: 14 * 24 * 3600,
            refresh_absolute_ttl_secs: 30 * 24 * 3600,
            refresh_grace_secs: 10,
            verification_ttl_secs: 24 * 3600,
            reset_ttl_secs: 3600,
            session_recheck_ms: 500,
        }
    }
}

impl Default for PasswordSettings {
    fn default() -> Self {
        PasswordSettings {
            min_length: 8,
            max_length: 256,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hasher_threads: 0,
            hasher_queue: 0,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 16384,
            request_timeout_secs: 30,
            workers: 0,
            header_timeout_secs: 5,
            body_timeout_secs: 10,
            keep_alive_secs: 5,
            connection_max_secs: 300,
            max_connections: 0,
            cors_origins: String::new(),
            trusted_proxies: String::new(),
        }
    }
}

/// Hand-written so a password inside `database_url` (a plain `String`) is
/// masked too; secret fields are already redacted by `secrecy`.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &safe_url(&self.database_url))
            .field("bind", &self.bind)
            .field("management_bind", &self.management_bind)
            .field("public_url", &self.public_url)
            .field("amqp_url", &self.amqp_url)
            .field("smtp_url", &self.smtp_url)
            .field("mail_from", &self.mail_from)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .field("master_key", &self.master_key)
            .field("master_key_file", &self.master_key_file)
            .field("tokens", &self.tokens)
            .field("passwords", &self.passwords)
            .field("http", &self.http)
            .field("throttle", &self.throttle)
            .field("profiles", &self.profiles)
            .field("access", &self.access)
            .field("avatars", &self.avatars)
            .field("notify", &self.notify)
            .field("sms", &self.sms)
            .field("retention", &self.retention)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Avatar uploads and where their renditions are kept, `[avatars]` / `KEYWARD_AVATARS__<FIELD>`.
///
/// Without any `s3_*` setting the renditions live under `{data_dir}/avatars/` (embedded mode);
/// with all of them (the secret from `s3_secret_access_key` or `s3_secret_access_key_file`)
/// they go to that bucket of any S3-compatible store. Half a set is refused at start.
/// `Debug` hides the secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AvatarSettings {
    /// `KEYWARD_AVATARS__S3_ENDPOINT`: the store's base URL, http or https with no credentials,
    /// query or fragment, e.g. `https://s3.eu-central-1.amazonaws.com` or
    /// `http://127.0.0.1:9000`. Buckets are addressed path-style (`{endpoint}/{bucket}/{key}`),
    /// which every S3-compatible store accepts.
    pub s3_endpoint: Option<String>,
    /// `KEYWARD_AVATARS__S3_BUCKET`: an existing bucket; 3–63 of `a-z 0-9 . -`, starting and
    /// ending with a letter or digit.
    pub s3_bucket: Option<String>,
    /// `KEYWARD_AVATARS__S3_REGION`: the signing region, e.g. `eu-central-1` (`us-east-1` for
    /// most self-hosted stores, `auto` for Cloudflare R2).
    pub s3_region: Option<String>,
    /// `KEYWARD_AVATARS__S3_ACCESS_KEY_ID`: the access key's id (not a secret; shown by
    /// `keyward config check`).
    pub s3_access_key_id: Option<String>,
    /// `KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY`: the access key's secret. Mutually exclusive with
    /// `s3_secret_access_key_file`.
    pub s3_secret_access_key: Option<SecretString>,
    /// `KEYWARD_AVATARS__S3_SECRET_ACCESS_KEY_FILE`: a file holding that secret (surrounding
    /// whitespace ignored). Mutually exclusive with `s3_secret_access_key`.
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// `KEYWARD_AVATARS__PUBLIC_BASE_URL`: where browsers fetch renditions directly (a CDN or
    /// the bucket's public URL), so that avatar URLs are `{public_base_url}/{key}`; http or
    /// https, no query or fragment, no trailing `/`. Unset: avatars are served by Keyward at
    /// `{public_url}/v1/avatars/{key}`.
    pub public_base_url: Option<String>,
    /// `KEYWARD_AVATARS__MAX_BYTES`: the largest accepted upload, in bytes (larger is 413);
    /// 1024..=67108864, default 5 MiB.
    pub max_bytes: usize,
    /// `KEYWARD_AVATARS__MAX_PIXELS`: the most pixels (width × height, read from the image's
    /// header before anything is decoded) an upload may have (more is 422); 1024..=100000000,
    /// default 40 megapixels. Decoding needs up to 8 bytes per pixel (16-bit RGBA PNG).
    pub max_pixels: u64,
}

/// A complete set of S3 settings, from [`AvatarSettings::s3`]: the secret is read (from its
/// file if that is how it was given) and every field is present.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The store's base URL, as `KEYWARD_AVATARS__S3_ENDPOINT`.
    pub endpoint: String,
    /// The bucket, as `KEYWARD_AVATARS__S3_BUCKET`.
    pub bucket: String,
    /// The signing region, as `KEYWARD_AVATARS__S3_REGION`.
    pub region: String,
    /// The access key's id.
    pub access_key_id: String,
    /// The access key's secret.
    pub secret_access_key: SecretString,
}

impl Default for AvatarSettings {
    fn default() -> Self {
        AvatarSettings {
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_secret_access_key_file: None,
            public_base_url: None,
            max_bytes: 5 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

impl AvatarSettings {
    /// The S3 store's settings when all of them are set, `None` when none is (embedded mode).
    /// Reads `s3_secret_access_key_file`; errors name the variable and the fix, never the secret.
    pub fn s3(&self) -> Result<Option<S3Settings>, ConfigError> {
        validate::avatar_s3(self)
    }
}

impl Settings {
    /// Load from the process: defaults < the file named by `KEYWARD_CONFIG`
    /// (if set) < `KEYWARD_*` environment variables, then validate.
    pub fn load() -> Result<Settings, ConfigError> {
        let env = load::process_env()?;
        Self::load_from(None, &env)
    }

    /// Defaults < `file` (or, when `None`, the file named by `KEYWARD_CONFIG`
    /// in `env`) < `KEYWARD_*` entries of `env`, then validate.
    ///
    /// `env` stands in for the process environment so callers and tests can
    /// load without touching it. Empty values count as unset; unknown
    /// `KEYWARD_*` names and unknown file keys are warned about, not fatal.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        load::load_from(file, env)
    }

    /// Check every invariant documented on the fields, including that the
    /// master key decodes and that distributed mode has one.
    /// Called by the loaders; call it again after mutating a `Settings`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// Whether this node shares state with others (AMQP set, or a
    /// PostgreSQL database), which requires a master key.
    pub fn is_distributed(&self) -> bool {
        self.amqp_url.is_some() || self.is_postgres()
    }

    /// Whether the database is SQLite (`sqlite:` URL).
    pub fn is_sqlite(&self) -> bool {
        has_scheme(&self.database_url, &["sqlite"])
    }

    fn is_postgres(&self) -> bool {
        has_scheme(&self.database_url, &["postgres", "postgresql"])
    }

    /// The effective configuration as TOML, for `keyward config check`.
    /// Secrets are replaced by `"***"` and URL passwords masked.
    pub fn redacted_toml(&self) -> String {
        redact::redacted_toml(self)
    }

    /// The 32 master-key bytes from `master_key` or `master_key_file`;
    /// `None` when neither is set. Errors name the key and the fix.
    pub fn master_key_bytes(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        validate::master_key_bytes(self)
    }
}

pub(crate) fn default_database_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("keyward.db").display()
    )
}

/// Whether `url` starts with `<one of schemes>:` (ASCII case-insensitive).
pub(crate) fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    match url.split_once(':') {
        Some((scheme, _)) => schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_match_the_documented_values() {
        let s = Settings::default();
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.database_url, "sqlite://./data/keyward.db?mode=rwc");
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.management_bind, "127.0.0.1:9090");
        assert_eq!(s.public_url, None);
        assert!(s.amqp_url.is_none() && s.smtp_url.is_none());
        assert_eq!(s.mail_from, "Keyward <no-reply@localhost>");
        assert_eq!(s.log, "info");
        assert_eq!(s.log_format, LogFormat::Auto);
        assert!(s.master_key.is_none() && s.master_key_file.is_none());
        assert_eq!(s.tokens.audience, "keyward");
        assert_eq!(s.tokens.access_ttl_secs, 900);
        assert_eq!(s.tokens.refresh_idle_ttl_secs, 1_209_600);
        assert_eq!(s.tokens.refresh_absolute_ttl_secs, 2_592_000);
        assert_eq!(s.tokens.refresh_grace_secs, 10);
        assert_eq!(s.tokens.verification_ttl_secs, 86_400);
        assert_eq!(s.tokens.reset_ttl_secs, 3600);
        assert_eq!(
            s.passwords,
            PasswordSettings {
                min_length: 8,
                max_length: 256,
                argon2_memory_kib: 19456,
                argon2_iterations: 2,
                argon2_parallelism: 1,
                hasher_threads: 0,
                hasher_queue: 0,
            }
        );
        assert_eq!(
            s.http,
            HttpSettings {
                max_body_bytes: 16384,
                request_timeout_secs: 30,
                workers: 0,
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
    fn avatars_default_to_the_embedded_store_with_the_documented_limits() {
        let a = Settings::default().avatars;
        assert_eq!(a.max_bytes, 5 * 1024 * 1024);
        assert_eq!(a.max_pixels, 40_000_000);
        assert!(a.s3_endpoint.is_none() && a.public_base_url.is_none());
        assert!(a.s3().unwrap().is_none());
    }

    #[test]
    fn the_defaults_are_valid_and_not_distributed() {
        let s = Settings::default();
        s.validate().unwrap();
        assert!(s.is_sqlite());
        assert!(!s.is_distributed());
        assert_eq!(s.master_key_bytes().unwrap(), None);
    }

    #[test]
    fn postgres_or_amqp_makes_the_node_distributed() {
        let mut s = Settings {
            database_url: "postgresql://u:p@db/keyward".to_owned(),
            ..Settings::default()
        };
        assert!(s.is_distributed());
        assert!(!s.is_sqlite());
        s.database_url = "POSTGRES://db/keyward".to_owned();
        assert!(s.is_distributed());
        s.database_url = Settings::default().database_url;
        s.amqp_url = Some(SecretString::from("amqp://mq"));
        assert!(s.is_distributed());
        assert!(s.is_sqlite());
    }

    #[test]
    fn debug_output_hides_secrets_and_database_passwords() {
        let s = Settings {
            database_url: "postgres://keyward:dbpass@db/keyward".to_owned(),
            amqp_url: Some(SecretString::from("amqp://u:mqpass@mq")),
            master_key: Some(SecretString::from("c2VjcmV0LWtleQ")),
            ..Settings::default()
        };
        let debug = format!("{s:?}");
        for secret in ["dbpass", "mqpass", "c2VjcmV0LWtleQ"] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("postgres://keyward:***@db/keyward"));
        assert_eq!(
            s.master_key.as_ref().unwrap().expose_secret(),
            "c2VjcmV0LWtleQ"
        );
    }
}

/// The purger, `[retention]` / `KEYWARD_RETENTION__<FIELD>`: rows that have done their work are
/// deleted on a schedule, in batches, by one node at a time. Unpublished outbox rows and live
/// sessions are never touched; the audit log is kept unless `audit_days` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// `KEYWARD_RETENTION__EVERY_SECS`: seconds between two purges (the first one comes this
    /// long after start); 0 turns the purger off; at most 604800 (a week). Default 3600.
    pub every_secs: u64,
    /// `KEYWARD_RETENTION__BATCH_SIZE`: rows deleted per statement (each its own short
    /// transaction); 1..=100000. Default 1000.
    pub batch_size: u64,
    /// `KEYWARD_RETENTION__OUTBOX_DAYS`: days a published outbox row is kept after its
    /// publication; 1..=36500. Default 7.
    pub outbox_days: u32,
    /// `KEYWARD_RETENTION__INBOX_DAYS`: days a consumer's record of a processed message is
    /// kept (a redelivery older than that would be processed again); 1..=36500. Default 7.
    pub inbox_days: u32,
    /// `KEYWARD_RETENTION__SESSIONS_DAYS`: days an ended session (revoked or expired) and its
    /// refresh tokens, and a used or expired one-time email token, are kept after they end;
    /// 1..=36500. Default 30.
    pub sessions_days: u32,
    /// `KEYWARD_RETENTION__LOGIN_FAILURES_DAYS`: days a failed-login row is kept; its span
    /// must cover `KEYWARD_THROTTLE__WINDOW_SECS`; 1..=36500. Default 7.
    pub login_failures_days: u32,
    /// `KEYWARD_RETENTION__AUDIT_DAYS`: days an audit log line is kept; 1..=36500. Unset
    /// (the default): forever.
    pub audit_days: Option<u32>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            every_secs: 3600,
            batch_size: 1000,
            outbox_days: 7,
            inbox_days: 7,
            sessions_days: 30,
            login_failures_days: 7,
            audit_days: None,
        }
    }
}

/// Signing keys, `[keys]` / `KEYWARD_KEYS__<FIELD>`. `Debug` hides the Vault token.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KeySettings {
    /// Seconds between `keyward keys rotate` publishing a new key and the key signing: longer
    /// than the JWKS cache max-age (300), so every verifier knows a key before its first
    /// token. At least 300; `keys rotate --now` skips it in an emergency.
    pub publish_lead_secs: u64,
    /// `KEYWARD_KEYS__BACKEND`: `local` (keys made here, stored encrypted under the master
    /// key) or `vault` (the Transit engine of HashiCorp Vault or OpenBao signs; the private
    /// key never leaves it).
    pub backend: String,
    /// `KEYWARD_KEYS__VAULT_ADDR`: the Vault server, e.g. `https://vault.internal:8200`.
    pub vault_addr: Option<String>,
    /// `KEYWARD_KEYS__VAULT_TOKEN`: a token allowed to read, (create,) rotate and sign with
    /// the key. Mutually exclusive with `vault_token_file`.
    pub vault_token: Option<SecretString>,
    /// `KEYWARD_KEYS__VAULT_TOKEN_FILE`: a file holding that token (e.g. a Vault Agent sink);
    /// read again when Vault refuses the token it held.
    pub vault_token_file: Option<PathBuf>,
    /// `KEYWARD_KEYS__VAULT_MOUNT`: where the Transit engine is mounted (default `transit`).
    pub vault_mount: String,
    /// `KEYWARD_KEYS__VAULT_KEY`: the Transit key's name (default `keyward`); made as an
    /// `ed25519` key at first start when the token may create it.
    pub vault_key: String,
    /// `KEYWARD_KEYS__VAULT_TIMEOUT_MS`: how long a signature may wait for Vault before the
    /// request that needs it gets a 503 (default 2000).
    pub vault_timeout_ms: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            publish_lead_secs: 600,
            backend: "local".to_owned(),
            vault_addr: None,
            vault_token: None,
            vault_token_file: None,
            vault_mount: "transit".to_owned(),
            vault_key: "keyward".to_owned(),
            vault_timeout_ms: 2000,
        }
    }
}

/// Where signing keys live: [`KeySettings::backend`] checked, its token read.
#[derive(Debug, Clone)]
pub enum KeyBackend {
    Local,
    Vault(VaultTransit),
}

/// A Transit key in Vault or OpenBao. `Debug` hides the token.
#[derive(Debug, Clone)]
pub struct VaultTransit {
    /// No trailing slash.
    pub addr: String,
    pub token: SecretString,
    /// Where to read the token again when Vault refuses it.
    pub token_file: Option<PathBuf>,
    /// No surrounding slashes.
    pub mount: String,
    pub key: String,
    pub timeout: std::time::Duration,
}

impl KeySettings {
    /// The backend, its settings complete and its token read; errors name the variable and
    /// the fix, never the token.
    pub fn backend(&self) -> Result<KeyBackend, ConfigError> {
        validate::keys(self)
    }
}

/// Capacities of the node-local caches, `[cache]` / `KEYWARD_CACHE__<FIELD>`, in entries.
/// Each is bounded: past its capacity the least useful entries are dropped and read again
/// from the database (or the token verified again), so a smaller cache costs reads, never
/// correctness. With the ghosts `quick_cache` keeps of evicted keys, a full cache holds up to
/// about 1.5 times its capacity; the bytes per entry are measured by the bench's `cache_cost`
/// (docs/PERFORMANCE.md, "Soak"). Each is 1024..=8388608.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct CacheSettings {
    /// `KEYWARD_CACHE__TOKENS`: access tokens verified before (a repeat skips the signature
    /// check); about 250 B each, 62.5 MiB full at the default 262144.
    pub tokens: usize,
    /// `KEYWARD_CACHE__SESSIONS`: sessions remembered live, and separately sessions
    /// remembered ended; about 90 + 50 B each, 36 MiB for both full at the default 262144.
    pub sessions: usize,
    /// `KEYWARD_CACHE__PROFILES`: profiles served by `GET /v1/users/me` without a read;
    /// about 800 B each, 50 MiB full at the default 65536.
    pub profiles: usize,
    /// `KEYWARD_CACHE__USERS`: users' roles and standing for permission checks; about
    /// 80–100 B each without a role, 7.6 MiB full at the default 100000.
    pub users: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            tokens: 262_144,
            sessions: 262_144,
            profiles: 65_536,
            users: 100_000,
        }
    }
}
