//! Stored templates: what Keyward ships (the wave-1 auth mails, and `generic` for every
//! channel, in English and Russian), rendering with MiniJinja, the checks a template passes
//! before it is saved, and the node's template cache.
//!
//! Only an email's `html` part is HTML: it is auto-escaped. The other parts are plain text,
//! rendered as written (apps escape what they display). A variable used but not given is an
//! error, except in a test (`{% if action_url %}`); every render has a fuel limit, so a
//! template cannot loop forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyward_messages::commands::Locale;
use keyward_messages::notify::Channel;
use keyward_messages::FieldError;
use keyward_storage::{StorageError, Store, TemplateRecord};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// `source` of the templates Keyward ships; an edit through the API makes it `api`.
pub const SHIPPED: &str = "shipped";
/// Instructions one render may run.
const FUEL: u64 = 200_000;
/// The longest part source accepted.
pub const MAX_PART_BYTES: usize = 64 * 1024;
/// How long a node keeps a template before reading it again: an edit reaches every node
/// within this.
const TEMPLATE_TTL: Duration = Duration::from_millis(900);

/// Why a template cannot be saved or rendered, as the field errors an API answers.
fn fault(part: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(&format!("parts.{part}"), code, message)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn syntax(part: &str, e: &minijinja::Error) -> FieldError {
    let detail = e.detail().unwrap_or("syntax error");
    match e.line() {
        Some(line) => fault(
            part,
            "template_syntax",
            format!("line {line}: {detail} ({})", e.kind()),
        ),
        None => fault(part, "template_syntax", format!("{detail} ({})", e.kind())),
    }
}

/// Checks a template before it is saved: exactly the channel's parts, each within
/// [`MAX_PART_BYTES`], each parsing, and using only `declared` variables. Every fault at once.
pub fn check(
    channel: Channel,
    parts: &BTreeMap<String, String>,
    declared: &[String],
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let wanted = channel.parts();
    for name in parts.keys().filter(|k| !wanted.contains(&k.as_str())) {
        errors.push(fault(
            name,
            "unknown_part",
            format!(
                "a {} template has the parts {}",
                channel.as_str(),
                wanted.join(", ")
            ),
        ));
    }
    let env = environment();
    for name in wanted {
        let Some(source) = parts.get(*name) else {
            errors.push(fault(name, "required", format!("give the {name} part")));
            continue;
        };
        if source.len() > MAX_PART_BYTES {
            errors.push(fault(
                name,
                "too_long",
                format!("a part is at most {MAX_PART_BYTES} bytes"),
            ));
            continue;
        }
        match env.template_from_named_str(name, source) {
            Err(e) => errors.push(syntax(name, &e)),
            Ok(t) => {
                let mut used: Vec<_> = t
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !declared.contains(v))
                    .collect();
                used.sort();
                for v in used {
                    errors.push(fault(
                        name,
                        "undeclared_variable",
                        format!("the template uses {v:?}, which is not among its variables; declare it in variables or remove it"),
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Renders every part with `variables`. A render error (a variable used but not given, a
/// type error, fuel spent) names the part.
pub fn render(
    parts: &BTreeMap<String, String>,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, FieldError> {
    let env = environment();
    let ctx = minijinja::Value::from(minijinja::value::Serde(variables));
    let mut out = BTreeMap::new();
    for (name, source) in parts {
        let t = env
            .template_from_named_str(name, source)
            .map_err(|e| syntax(name, &e))?;
        let text = t.render(&ctx).map_err(|e| {
            let detail = e.detail().unwrap_or("cannot be rendered").to_owned();
            FieldError::new(
                "variables",
                "template_error",
                format!("the {name} part: {detail} ({})", e.kind()),
            )
        })?;
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// Variables given that the template does not declare (they would be silently ignored).
pub fn unknown_variables<'a>(
    given: &'a serde_json::Map<String, serde_json::Value>,
    declared: &[String],
) -> Vec<&'a str> {
    given
        .keys()
        .filter(|k| !declared.contains(k))
        .map(String::as_str)
        .collect()
}

/// A node's stored templates, each re-read after [`TEMPLATE_TTL`]; the locale chain is
/// `ru → en`.
#[derive(Default)]
pub struct TemplateCache {
    entries: Mutex<HashMap<TemplateAddress, Read>>,
}

type TemplateAddress = (String, Channel, Locale);
/// When a template was read, and what was found.
type Read = (Instant, Option<Arc<TemplateRecord>>);

impl TemplateCache {
    /// The template of (key, channel) in `locale`, else in English; none when neither exists.
    pub async fn get(
        &self,
        store: &Store,
        key: &str,
        channel: Channel,
        locale: Locale,
    ) -> Result<Option<Arc<TemplateRecord>>, StorageError> {
        if let Some(t) = self.exact(store, key, channel, locale).await? {
            return Ok(Some(t));
        }
        if locale == Locale::En {
            return Ok(None);
        }
        self.exact(store, key, channel, Locale::En).await
    }

    async fn exact(
        &self,
        store: &Store,
        key: &str,
        channel: Channel,
        locale: Locale,
    ) -> Result<Option<Arc<TemplateRecord>>, StorageError> {
        let id = (key.to_owned(), channel, locale);
        if let Ok(entries) = self.entries.lock() {
            if let Some((at, t)) = entries.get(&id) {
                if at.elapsed() < TEMPLATE_TTL {
                    return Ok(t.clone());
                }
            }
        }
        let read = store
            .reads()
            .notices()
            .template(key, channel.as_str(), locale.as_str())
            .await?
            .map(Arc::new);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(id, (Instant::now(), read.clone()));
        }
        Ok(read)
    }

    /// After an edit on this node: it renders with the edit at once.
    pub fn forget_all(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// A shipped mail: key, locale, subject, paragraphs, and the link's label.
type AuthMail = (
    &'static str,
    Locale,
    &'static str,
    &'static [&'static str],
    Option<&'static str>,
);

const AUTH_MAILS: &[AuthMail] = &[
    ("verify_email", Locale::En, "Confirm your email address",
        &["Welcome! Please confirm your email address to finish creating your account.", "The link is valid for 24 hours. If you did not sign up, ignore this email."],
        Some("Confirm email")),
    ("verify_email", Locale::Ru, "Подтвердите адрес электронной почты",
        &["Добро пожаловать! Подтвердите адрес электронной почты, чтобы завершить регистрацию.", "Ссылка действует 24 часа. Если вы не регистрировались, просто проигнорируйте это письмо."],
        Some("Подтвердить адрес")),
    ("account_exists", Locale::En, "Someone tried to sign up with your email",
        &["Someone tried to create an account with this email address, but you already have one.", "If it was you, log in or reset your password. If not, you can ignore this email."],
        None),
    ("account_exists", Locale::Ru, "Кто-то пытался зарегистрироваться с вашим адресом",
        &["Кто-то пытался создать учётную запись с этим адресом, но она у вас уже есть.", "Если это были вы, войдите или сбросьте пароль. Если нет, просто проигнорируйте письмо."],
        None),
    ("password_reset", Locale::En, "Reset your password",
        &["We received a request to reset your password. The link is valid for one hour.", "If you did not ask for it, ignore this email: your password stays as it is."],
        Some("Reset password")),
    ("password_reset", Locale::Ru, "Сброс пароля",
        &["Мы получили запрос на сброс пароля. Ссылка действует один час.", "Если вы не запрашивали сброс, проигнорируйте письмо: пароль останется прежним."],
        Some("Сбросить пароль")),
    ("password_changed", Locale::En, "Your password was changed",
        &["The password of your account was just changed, and your other sessions were signed out.", "If this was not you, reset your password now."],
        None),
    ("password_changed", Locale::Ru, "Ваш пароль изменён",
        &["Пароль вашей учётной записи только что изменён, остальные сеансы завершены.", "Если это были не вы, немедленно сбросьте пароль."],
        None),
    ("invitation", Locale::En, "You have been invited",
        &["An administrator created an account for this email address. Choose a password to start using it.", "The link is valid for 7 days. If you did not expect this, ignore this email."],
        Some("Choose a password")),
    ("invitation", Locale::Ru, "Вас пригласили",
        &["Администратор создал учётную запись для этого адреса. Выберите пароль, чтобы начать ею пользоваться.", "Ссылка действует 7 дней. Если вы не ждали этого письма, просто проигнорируйте его."],
        Some("Выбрать пароль")),
];

const HTML_OPEN: &str = "<!doctype html><html><body style=\"font-family:sans-serif\">";
const HTML_CLOSE: &str = "</body></html>";

fn record(
    key: &str,
    channel: Channel,
    locale: Locale,
    parts: &[(&str, String)],
    variables: &[&str],
    now: DateTime<Utc>,
) -> TemplateRecord {
    TemplateRecord {
        key: key.to_owned(),
        channel: channel.as_str().to_owned(),
        locale: locale.as_str().to_owned(),
        parts: parts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        variables: variables.iter().map(|v| (*v).to_owned()).collect(),
        source: SHIPPED.to_owned(),
        updated_at: now,
        updated_by: None,
    }
}

/// Every template Keyward ships.
pub fn shipped(now: DateTime<Utc>) -> Vec<TemplateRecord> {
    let mut out = Vec::new();
    for (key, locale, subject, paragraphs, label) in AUTH_MAILS {
        let mut text = paragraphs.join("\n\n");
        let mut html = String::from(HTML_OPEN);
        for p in *paragraphs {
            html.push_str(&format!("<p>{}</p>", minijinja::HtmlEscape(p)));
        }
        if let Some(label) = label {
            text.push_str(&format!(
                "{{% if link %}}\n\n{label}: {{{{ link }}}}\n{{% endif %}}"
            ));
            html.push_str(&format!(
                "{{% if link %}}<p><a href=\"{{{{ link }}}}\">{}</a></p>{{% endif %}}",
                minijinja::HtmlEscape(label)
            ));
        }
        html.push_str(HTML_CLOSE);
        let variables: &[&str] = if label.is_some() { &["link"] } else { &[] };
        let parts = [
            ("subject", (*subject).to_owned()),
            ("text", text),
            ("html", html),
        ];
        out.push(record(key, Channel::Email, *locale, &parts, variables, now));
    }
    let generic = ["title", "body", "action_url"];
    for (locale, open) in [(Locale::En, "Open"), (Locale::Ru, "Открыть")] {
        let email = [
            ("subject", "{{ title }}".to_owned()),
            (
                "text",
                "{{ body }}{% if action_url %}\n\n{{ action_url }}\n{% endif %}".to_owned(),
            ),
            (
                "html",
                format!("{HTML_OPEN}<h2>{{{{ title }}}}</h2><p>{{{{ body }}}}</p>{{% if action_url %}}<p><a href=\"{{{{ action_url }}}}\">{open}</a></p>{{% endif %}}{HTML_CLOSE}"),
            ),
        ];
        out.push(record(
            "generic",
            Channel::Email,
            locale,
            &email,
            &generic,
            now,
        ));
        let short = [
            ("title", "{{ title }}".to_owned()),
            ("body", "{{ body }}".to_owned()),
        ];
        for channel in [Channel::InApp, Channel::Push] {
            out.push(record("generic", channel, locale, &short, &generic, now));
        }
        let sms = [(
            "text",
            "{{ title }}: {{ body }}{% if action_url %} {{ action_url }}{% endif %}".to_owned(),
        )];
        out.push(record("generic", Channel::Sms, locale, &sms, &generic, now));
    }
    for (locale, text) in [
        (
            Locale::En,
            "Your verification code: {{ code }}. It expires in 5 minutes. Do not share it.",
        ),
        (
            Locale::Ru,
            "Ваш код подтверждения: {{ code }}. Он действует 5 минут. Никому его не сообщайте.",
        ),
    ] {
        let parts = [("text", text.to_owned())];
        out.push(record(
            PHONE_CODE,
            Channel::Sms,
            locale,
            &parts,
            &["code"],
            now,
        ));
    }
    for (locale, text, subject) in [
        (
            Locale::En,
            "Your sign-in code: {{ code }}. It expires in 5 minutes. If you did not try to sign in, change your password.",
            "Your sign-in code",
        ),
        (
            Locale::Ru,
            "Ваш код для входа: {{ code }}. Он действует 5 минут. Если вы не входили, смените пароль.",
            "Ваш код для входа",
        ),
    ] {
        let sms = [("text", text.to_owned())];
        out.push(record(MFA_CODE, Channel::Sms, locale, &sms, &["code"], now));
        let email = [
            ("subject", subject.to_owned()),
            ("text", text.to_owned()),
            (
                "html",
                format!("{HTML_OPEN}<p>{}</p>{HTML_CLOSE}", minijinja::HtmlEscape(text)),
            ),
        ];
        out.push(record(MFA_CODE, Channel::Email, locale, &email, &["code"], now));
    }
    for (locale, text, subject) in [
        (
            Locale::En,
            "Someone is linking a sign-in with {{ provider }} to your account. If it is you, enter this code: {{ code }}. It expires in 10 minutes. If it is not you, ignore this email and never share the code: it would let them into your account.",
            "Link a sign-in to your account",
        ),
        (
            Locale::Ru,
            "Кто-то привязывает вход через {{ provider }} к вашему аккаунту. Если это вы, введите код: {{ code }}. Он действует 10 минут. Если это не вы, ничего не делайте и никому не сообщайте код: он даст доступ к вашему аккаунту.",
            "Привязка входа к вашему аккаунту",
        ),
    ] {
        let email = [
            ("subject", subject.to_owned()),
            ("text", text.to_owned()),
            (
                "html",
                format!("{HTML_OPEN}<p>{}</p>{HTML_CLOSE}", minijinja::HtmlEscape(text)),
            ),
        ];
        let vars = ["code", "provider"];
        out.push(record(LINK_CODE, Channel::Email, locale, &email, &vars, now));
    }
    out
}

/// The SMS that carries a phone verification code (variable `code`).
pub const PHONE_CODE: &str = "phone_code";
/// The SMS or email that carries a second-factor code (variable `code`).
pub const MFA_CODE: &str = "mfa_code";
/// The email that carries the code proving an account to link a social login to it
/// (variables `code`, `provider`).
pub const LINK_CODE: &str = "link_code";

/// Writes the shipped templates: a missing one is added, a shipped one that changed is
/// replaced, an edited one (`api`) is kept. Runs at every start and in `keyward migrate`.
pub async fn sync_shipped(store: &Store, now: DateTime<Utc>) -> Result<(), StorageError> {
    let stored: HashMap<_, _> = store
        .notices()
        .templates()
        .await?
        .into_iter()
        .map(|t| ((t.key.clone(), t.channel.clone(), t.locale.clone()), t))
        .collect();
    for t in shipped(now) {
        let id = (t.key.clone(), t.channel.clone(), t.locale.clone());
        let keep = match stored.get(&id) {
            None => false,
            Some(s) => s.source != SHIPPED || (s.parts == t.parts && s.variables == t.variables),
        };
        if !keep {
            store.notices().put_template(&t).await?;
        }
    }
    Ok(())
}

/// The source of a template from `KEYWARD_NOTIFY__TEMPLATES_FILE`.
pub const CONFIG: &str = "config";

/// One template of a templates file: its variables and, per channel and locale, its parts.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredTemplate {
    key: String,
    #[serde(default)]
    variables: Vec<String>,
    channels: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

#[derive(serde::Deserialize)]
struct TemplatesFile {
    templates: Vec<DeclaredTemplate>,
}

/// The templates of `path` (the format of deploy/presets/*.templates.json), each checked as
/// the admin API checks one; Err names the file, the template and what is wrong.
pub fn declared(path: &std::path::Path, now: DateTime<Utc>) -> Result<Vec<TemplateRecord>, String> {
    let at = |what: String| format!("KEYWARD_NOTIFY__TEMPLATES_FILE {}: {what}", path.display());
    let raw = std::fs::read_to_string(path).map_err(|e| at(format!("{e} (fix the path)")))?;
    let file: TemplatesFile =
        serde_json::from_str(&raw).map_err(|e| at(format!("{e} (fix the JSON)")))?;
    let mut out = Vec::new();
    for t in file.templates {
        let key = keyward_messages::notify::TemplateKey::parse("key", &t.key)
            .map_err(|e| at(format!("template {:?}: {}", t.key, e.message)))?;
        let mut variables = t.variables.clone();
        variables.sort();
        variables.dedup();
        for (channel, locales) in &t.channels {
            let ch = Channel::parse("channel", channel)
                .map_err(|e| at(format!("{} {channel}: {}", t.key, e.message)))?;
            for (locale, parts) in locales {
                let loc = match locale.as_str() {
                    "en" => Locale::En,
                    "ru" => Locale::Ru,
                    other => {
                        return Err(at(format!(
                            "{} {channel}: {other:?} is not a locale (en, ru)",
                            t.key
                        )))
                    }
                };
                check(ch, parts, &variables).map_err(|errors| {
                    let why: Vec<String> = errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect();
                    at(format!("{} {channel} {locale}: {}", t.key, why.join("; ")))
                })?;
                out.push(TemplateRecord {
                    key: key.as_str().to_owned(),
                    channel: ch.as_str().to_owned(),
                    locale: loc.as_str().to_owned(),
                    parts: parts.clone(),
                    variables: variables.clone(),
                    source: CONFIG.to_owned(),
                    updated_at: now,
                    updated_by: None,
                });
            }
        }
    }
    Ok(out)
}

/// Puts the templates of `KEYWARD_NOTIFY__TEMPLATES_FILE` in place: a missing or shipped one is
/// written, a changed one from the file replaced, one edited through the admin API kept.
pub async fn sync_declared(
    store: &Store,
    path: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<usize, crate::StartError> {
    let declared = declared(path, now).map_err(crate::StartError::Config)?;
    let mut written = 0;
    for t in declared {
        let stored = store
            .notices()
            .template(&t.key, &t.channel, &t.locale)
            .await?;
        let keep = stored.is_some_and(|s| {
            s.source == "api"
                || (s.source == CONFIG && s.parts == t.parts && s.variables == t.variables)
        });
        if !keep {
            store.notices().put_template(&t).await?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn parts(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_shipped_template_passes_its_own_checks() {
        for t in shipped(Utc::now()) {
            let channel = Channel::parse("c", &t.channel).unwrap();
            check(channel, &t.parts, &t.variables)
                .unwrap_or_else(|e| panic!("{}/{}/{}: {e:?}", t.key, t.channel, t.locale));
        }
    }

    #[test]
    fn the_html_part_escapes_variables_and_the_text_part_keeps_them() {
        let t = shipped(Utc::now())
            .into_iter()
            .find(|t| t.key == "verify_email" && t.locale == "ru")
            .unwrap();
        let out = render(&t.parts, &vars(json!({"link": "http://x/v?token=a&b"}))).unwrap();
        assert!(out["subject"].contains("Подтвердите"));
        assert!(out["text"].contains("http://x/v?token=a&b"));
        // MiniJinja also escapes `/` (as &#x2f;), which HTML decodes back in the href.
        assert!(out["html"].contains("token=a&amp;b\">"), "{}", out["html"]);
    }

    #[test]
    fn an_optional_variable_may_be_left_out_and_a_required_one_may_not() {
        let t = shipped(Utc::now())
            .into_iter()
            .find(|t| t.key == "generic" && t.channel == "email" && t.locale == "en")
            .unwrap();
        let out = render(&t.parts, &vars(json!({"title": "Hi", "body": "<b>x</b>"}))).unwrap();
        assert!(!out["html"].contains("href"));
        assert!(
            out["html"].contains("<p>&lt;b&gt;x&lt;&#x2f;b&gt;</p>"),
            "{}",
            out["html"]
        );
        assert_eq!(out["text"], "<b>x</b>");

        let e = render(&t.parts, &vars(json!({"body": "x"}))).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code.as_str()),
            ("variables", "template_error")
        );
    }

    #[test]
    fn a_syntax_error_is_refused_with_its_part_and_line() {
        let p = parts(&[
            ("title", "ok"),
            ("body", "line one\n{% if x %}never closed"),
        ]);
        let e = check(Channel::InApp, &p, &["x".into()]).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "parts.body");
        assert_eq!(e[0].code, "template_syntax");
        assert!(e[0].message.starts_with("line 2:"), "{}", e[0].message);
    }

    #[test]
    fn undeclared_variables_missing_and_unknown_parts_are_all_named() {
        let p = parts(&[("title", "{{ who }} {{ title }}"), ("footer", "x")]);
        let e = check(Channel::Push, &p, &["title".into()]).unwrap_err();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("parts.footer", "unknown_part"),
                ("parts.title", "undeclared_variable"),
                ("parts.body", "required"),
            ]
        );
        assert!(e[1].message.contains("\"who\""));
    }

    #[test]
    fn a_template_that_loops_forever_runs_out_of_fuel() {
        let p = parts(&[(
            "text",
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
        )]);
        let e = render(&p, &serde_json::Map::new()).unwrap_err();
        assert_eq!(e.code, "template_error");
    }
}

#[cfg(test)]
mod declared_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn presets() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/presets")
    }

    #[test]
    fn every_presets_templates_file_checks_out() {
        let mut files = 0;
        for entry in std::fs::read_dir(presets()).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".templates.json") {
                let t = declared(&path, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
                assert!(!t.is_empty(), "{}", path.display());
                files += 1;
            }
        }
        assert_eq!(files, 4, "clinic, events, social, marketplace");
    }

    #[test]
    fn a_bad_template_names_the_file_the_template_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(
            &path,
            r#"{"templates": [{"key": "booking_ok", "variables": ["name"],
                "channels": {"email": {"en": {"subject": "Hi {{ nam }}", "text": "x"}}}}]}"#,
        )
        .unwrap();
        let e = declared(&path, Utc::now()).unwrap_err();
        assert!(
            e.contains("KEYWARD_NOTIFY__TEMPLATES_FILE") && e.contains("booking_ok email en"),
            "{e}"
        );
        std::fs::write(
            &path,
            r#"{"templates": [{"key": "b", "channels": {"fax": {}}}]}"#,
        )
        .unwrap();
        assert!(declared(&path, Utc::now()).unwrap_err().contains("fax"));
        assert!(declared(&dir.path().join("none.json"), Utc::now())
            .unwrap_err()
            .contains("fix the path"));
    }

    #[tokio::test]
    async fn a_declared_template_is_written_replaced_when_changed_and_kept_when_edited() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let file = |subject: &str| {
            format!(
                r#"{{"templates": [{{"key": "booking_confirmed", "variables": ["when"],
                "channels": {{"in_app": {{"en": {{"title": "{subject}", "body": "At {{{{ when }}}}"}}}}}}}}]}}"#
            )
        };
        std::fs::write(&path, file("Booked")).unwrap();
        assert_eq!(sync_declared(&store, &path, Utc::now()).await.unwrap(), 1);
        assert_eq!(
            sync_declared(&store, &path, Utc::now()).await.unwrap(),
            0,
            "unchanged"
        );
        std::fs::write(&path, file("Booked!")).unwrap();
        assert_eq!(sync_declared(&store, &path, Utc::now()).await.unwrap(), 1);
        let t = store
            .notices()
            .template("booking_confirmed", "in_app", "en")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.parts["title"].as_str(), t.source.as_str()),
            ("Booked!", CONFIG)
        );
        // Edited through the admin API: the file no longer overrides it.
        let edited = TemplateRecord {
            source: "api".into(),
            parts: [
                ("title".to_owned(), "Mine".to_owned()),
                ("body".to_owned(), "x".to_owned()),
            ]
            .into(),
            ..t
        };
        store.notices().put_template(&edited).await.unwrap();
        std::fs::write(&path, file("Booked again")).unwrap();
        assert_eq!(sync_declared(&store, &path, Utc::now()).await.unwrap(), 0);
    }
}
