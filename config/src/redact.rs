//! Rendering settings without their secrets.

use serde::Serialize;

use crate::{
    AccessSettings, AvatarSettings, HttpSettings, LogFormat, PasswordSettings, ProfileSettings,
    Settings, SmsSettings, ThrottleSettings, TokenSettings,
};

const MASK: &str = "***";

/// Mask the password of a URL so it can be logged:
/// `amqp://u:secret@h` → `amqp://u:***@h`.
///
/// URLs without a password are returned unchanged. When the text does not
/// parse as a URL (e.g. an unescaped `/` in the password), everything between
/// the first `:` of the user-info and the last `@` is masked, erring on the
/// side of hiding too much.
pub fn safe_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_none() {
            return url.to_owned();
        }
        if parsed.set_password(Some(MASK)).is_ok() {
            return parsed.to_string();
        }
    }
    mask_unparsed(url)
}

fn mask_unparsed(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:{MASK}{}",
        &url[..authority_start],
        &rest[..colon],
        &rest[at..]
    )
}

/// What `keyward config check` prints: the settings with secrets masked.
#[derive(Serialize)]
struct Redacted<'a> {
    data_dir: String,
    database_url: String,
    bind: &'a str,
    management_bind: &'a str,
    public_url: Option<&'a str>,
    amqp_url: Option<&'static str>,
    smtp_url: Option<&'static str>,
    mail_from: &'a str,
    log: &'a str,
    log_format: LogFormat,
    master_key: Option<&'static str>,
    master_key_file: Option<String>,
    tokens: &'a TokenSettings,
    passwords: &'a PasswordSettings,
    http: &'a HttpSettings,
    throttle: &'a ThrottleSettings,
    profiles: &'a ProfileSettings,
    access: &'a AccessSettings,
    avatars: RedactedAvatars<'a>,
    sms: RedactedSms<'a>,
    mfa: &'a crate::MfaSettings,
    oauth: RedactedOAuth<'a>,
    retention: &'a crate::RetentionSettings,
    keys: RedactedKeys<'a>,
    cache: &'a crate::CacheSettings,
    notify: RedactedNotify<'a>,
}

/// `[notify]`, its plain value before its categories (TOML's tables come last).
#[derive(Serialize)]
struct RedactedNotify<'a> {
    allow_loopback_push: bool,
    templates_file: Option<String>,
    categories: &'a [crate::CategorySettings],
}

/// `[oauth]` with every client secret masked.
#[derive(Serialize)]
struct RedactedOAuth<'a> {
    redirect_allowlist: &'a str,
    providers: std::collections::BTreeMap<&'a str, RedactedProvider<'a>>,
}

#[derive(Serialize)]
struct RedactedProvider<'a> {
    kind: &'a str,
    issuer: Option<&'a str>,
    client_id: Option<&'a str>,
    client_secret: Option<&'static str>,
    client_secret_file: Option<String>,
    scopes: Option<&'a str>,
    auth_url: Option<&'a str>,
    token_url: Option<&'a str>,
    userinfo_url: Option<&'a str>,
    native_client_ids: Option<&'a str>,
    subject_claim: Option<&'a str>,
    email_claim: Option<&'a str>,
    email_verified_claim: Option<&'a str>,
    username_claim: Option<&'a str>,
    avatar_claim: Option<&'a str>,
}

impl<'a> RedactedOAuth<'a> {
    fn new(o: &'a crate::OAuthSettings) -> Self {
        RedactedOAuth {
            redirect_allowlist: &o.redirect_allowlist,
            providers: o
                .providers
                .iter()
                .map(|(name, p)| {
                    (
                        name.as_str(),
                        RedactedProvider {
                            kind: &p.kind,
                            issuer: p.issuer.as_deref(),
                            client_id: p.client_id.as_deref(),
                            client_secret: p.client_secret.is_some().then_some(MASK),
                            client_secret_file: p
                                .client_secret_file
                                .as_ref()
                                .map(|f| f.display().to_string()),
                            scopes: p.scopes.as_deref(),
                            auth_url: p.auth_url.as_deref(),
                            token_url: p.token_url.as_deref(),
                            userinfo_url: p.userinfo_url.as_deref(),
                            native_client_ids: p.native_client_ids.as_deref(),
                            subject_claim: p.subject_claim.as_deref(),
                            email_claim: p.email_claim.as_deref(),
                            email_verified_claim: p.email_verified_claim.as_deref(),
                            username_claim: p.username_claim.as_deref(),
                            avatar_claim: p.avatar_claim.as_deref(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// `[keys]` with the Vault token masked.
#[derive(Serialize)]
struct RedactedKeys<'a> {
    publish_lead_secs: u64,
    backend: &'a str,
    vault_addr: Option<String>,
    vault_token: Option<&'static str>,
    vault_token_file: Option<String>,
    vault_mount: &'a str,
    vault_key: &'a str,
    vault_timeout_ms: u64,
}

impl<'a> RedactedKeys<'a> {
    fn new(k: &'a crate::KeySettings) -> Self {
        RedactedKeys {
            publish_lead_secs: k.publish_lead_secs,
            backend: &k.backend,
            vault_addr: k.vault_addr.as_deref().map(safe_url),
            vault_token: k.vault_token.is_some().then_some(MASK),
            vault_token_file: k.vault_token_file.as_ref().map(|p| p.display().to_string()),
            vault_mount: &k.vault_mount,
            vault_key: &k.vault_key,
            vault_timeout_ms: k.vault_timeout_ms,
        }
    }
}

/// `[sms]` with the webhook secret and the Twilio token masked.
#[derive(Serialize)]
struct RedactedSms<'a> {
    provider: &'a str,
    webhook_url: Option<String>,
    webhook_secret: Option<&'static str>,
    webhook_secret_file: Option<String>,
    twilio_account_sid: Option<&'a str>,
    twilio_auth_token: Option<&'static str>,
    twilio_auth_token_file: Option<String>,
    twilio_from: Option<&'a str>,
    twilio_api_url: &'a str,
    max_per_ip_per_hour: u32,
    max_per_number_per_hour: u32,
}

impl<'a> RedactedSms<'a> {
    fn new(s: &'a SmsSettings) -> Self {
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        RedactedSms {
            provider: &s.provider,
            webhook_url: s.webhook_url.as_deref().map(safe_url),
            webhook_secret: s.webhook_secret.is_some().then_some(MASK),
            webhook_secret_file: path(&s.webhook_secret_file),
            twilio_account_sid: s.twilio_account_sid.as_deref(),
            twilio_auth_token: s.twilio_auth_token.is_some().then_some(MASK),
            twilio_auth_token_file: path(&s.twilio_auth_token_file),
            twilio_from: s.twilio_from.as_deref(),
            twilio_api_url: &s.twilio_api_url,
            max_per_ip_per_hour: s.max_per_ip_per_hour,
            max_per_number_per_hour: s.max_per_number_per_hour,
        }
    }
}

/// `[avatars]` with the secret access key masked.
#[derive(Serialize)]
struct RedactedAvatars<'a> {
    s3_endpoint: Option<String>,
    s3_bucket: Option<&'a str>,
    s3_region: Option<&'a str>,
    s3_access_key_id: Option<&'a str>,
    s3_secret_access_key: Option<&'static str>,
    s3_secret_access_key_file: Option<String>,
    public_base_url: Option<&'a str>,
    max_bytes: usize,
    max_pixels: u64,
}

impl<'a> RedactedAvatars<'a> {
    fn new(a: &'a AvatarSettings) -> Self {
        RedactedAvatars {
            s3_endpoint: a.s3_endpoint.as_deref().map(safe_url),
            s3_bucket: a.s3_bucket.as_deref(),
            s3_region: a.s3_region.as_deref(),
            s3_access_key_id: a.s3_access_key_id.as_deref(),
            s3_secret_access_key: a.s3_secret_access_key.is_some().then_some(MASK),
            s3_secret_access_key_file: a
                .s3_secret_access_key_file
                .as_ref()
                .map(|p| p.display().to_string()),
            public_base_url: a.public_base_url.as_deref(),
            max_bytes: a.max_bytes,
            max_pixels: a.max_pixels,
        }
    }
}

pub(crate) fn redacted_toml(settings: &Settings) -> String {
    let mask = |set: bool| set.then_some(MASK);
    let view = Redacted {
        data_dir: settings.data_dir.display().to_string(),
        database_url: safe_url(&settings.database_url),
        bind: &settings.bind,
        management_bind: &settings.management_bind,
        public_url: settings.public_url.as_deref(),
        amqp_url: mask(settings.amqp_url.is_some()),
        smtp_url: mask(settings.smtp_url.is_some()),
        mail_from: &settings.mail_from,
        log: &settings.log,
        log_format: settings.log_format,
        master_key: mask(settings.master_key.is_some()),
        master_key_file: settings
            .master_key_file
            .as_ref()
            .map(|p| p.display().to_string()),
        tokens: &settings.tokens,
        passwords: &settings.passwords,
        http: &settings.http,
        throttle: &settings.throttle,
        profiles: &settings.profiles,
        access: &settings.access,
        avatars: RedactedAvatars::new(&settings.avatars),
        sms: RedactedSms::new(&settings.sms),
        mfa: &settings.mfa,
        oauth: RedactedOAuth::new(&settings.oauth),
        retention: &settings.retention,
        keys: RedactedKeys::new(&settings.keys),
        cache: &settings.cache,
        notify: RedactedNotify {
            allow_loopback_push: settings.notify.allow_loopback_push,
            templates_file: settings
                .notify
                .templates_file
                .as_ref()
                .map(|p| p.display().to_string()),
            categories: &settings.notify.categories,
        },
    };
    match toml::to_string(&view) {
        Ok(text) => text,
        // Only plain strings and integers are serialised; keep the signature
        // infallible for the CLI but still say what happened.
        Err(err) => format!("# could not render the settings as TOML: {err}\n"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn safe_url_masks_the_password() {
        assert_eq!(safe_url("amqp://u:secret@h"), "amqp://u:***@h");
        assert_eq!(
            safe_url("postgres://user:pw@host:5432/db?sslmode=require"),
            "postgres://user:***@host:5432/db?sslmode=require"
        );
        assert_eq!(
            safe_url("smtps://mailer:p%40ss@smtp.example.com:465"),
            "smtps://mailer:***@smtp.example.com:465"
        );
    }

    #[test]
    fn safe_url_leaves_urls_without_a_password_alone() {
        for url in [
            "amqp://mq:5672",
            "postgres://user@host/db",
            "sqlite://./data/keyward.db?mode=rwc",
            "not a url",
        ] {
            assert_eq!(safe_url(url), url);
        }
    }

    #[test]
    fn safe_url_masks_passwords_even_in_unparseable_urls() {
        assert_eq!(safe_url("amqp://u:pa/ss@h"), "amqp://u:***@h");
        assert_eq!(
            safe_url("postgres://u:p@ss:w@rd@db/x"),
            "postgres://u:***@db/x"
        );
    }

    #[test]
    fn redacted_output_never_contains_the_secret() {
        let settings = Settings {
            database_url: "postgres://keyward:dbsecret@db/keyward".to_owned(),
            amqp_url: Some(SecretString::from("amqps://mq:mqsecret@mq.internal")),
            smtp_url: Some(SecretString::from("smtps://mail:smtpsecret@smtp.internal")),
            master_key: Some(SecretString::from(
                "a2V5c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0MTIz",
            )),
            sms: crate::SmsSettings {
                webhook_secret: Some(SecretString::from("hooksecret")),
                twilio_auth_token: Some(SecretString::from("twiliosecret")),
                ..crate::SmsSettings::default()
            },
            keys: crate::KeySettings {
                vault_token: Some(SecretString::from("vaultsecret")),
                ..crate::KeySettings::default()
            },
            ..Settings::default()
        };
        let text = settings.redacted_toml();
        for secret in [
            "dbsecret",
            "mqsecret",
            "mq.internal",
            "smtpsecret",
            "a2V5c2VjcmV0",
            "hooksecret",
            "twiliosecret",
            "vaultsecret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(
            table["database_url"].as_str(),
            Some("postgres://keyward:***@db/keyward")
        );
        assert_eq!(table["amqp_url"].as_str(), Some("***"));
        assert_eq!(table["smtp_url"].as_str(), Some("***"));
        assert_eq!(table["master_key"].as_str(), Some("***"));
    }

    #[test]
    fn redacted_output_masks_the_s3_secret_access_key() {
        let mut settings = Settings::default();
        settings.avatars.s3_endpoint = Some("https://s3.example.com".to_owned());
        settings.avatars.s3_access_key_id = Some("AKIDVISIBLE".to_owned());
        settings.avatars.s3_secret_access_key = Some(SecretString::from("s3-secret-value"));
        let text = settings.redacted_toml();
        assert!(!text.contains("s3-secret-value"), "leaked in:\n{text}");
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(
            table["avatars"]["s3_secret_access_key"].as_str(),
            Some("***")
        );
        assert_eq!(
            table["avatars"]["s3_access_key_id"].as_str(),
            Some("AKIDVISIBLE")
        );
        assert!(!format!("{settings:?}").contains("s3-secret-value"));
    }

    #[test]
    fn redacted_output_is_the_effective_config_and_loads_back() {
        let settings = Settings::default();
        let text = settings.redacted_toml();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table["bind"].as_str(), Some("127.0.0.1:8080"));
        assert_eq!(table["log_format"].as_str(), Some("auto"));
        assert_eq!(table["tokens"]["access_ttl_secs"].as_integer(), Some(900));
        assert!(!table.contains_key("public_url"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyward.toml");
        std::fs::write(&path, &text).unwrap();
        let loaded = Settings::load_from(Some(&path), &[]).unwrap();
        assert_eq!(loaded.redacted_toml(), text);
    }
}
