//! Value types with one fallible constructor each. JSON decoding goes through the same
//! constructor (`serde(try_from = "String")`), so an invalid value cannot be built anywhere.

use std::fmt;
use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::error::FieldError;

/// Longest email accepted (RFC 5321 path limit), in bytes of the canonical form.
pub const EMAIL_MAX_LEN: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1), in bytes of the canonical form.
pub const EMAIL_LOCAL_MAX_LEN: usize = 64;
/// Passwords longer than this many bytes are refused before any hashing, so a huge body
/// cannot buy a long argon2 run. The configurable character limit is checked by the policy.
pub const PASSWORD_MAX_BYTES: usize = 4096;

/// A mailbox, held only in its canonical form: the local part NFKC-normalised and lower-cased
/// (so `\u{212A}ate` is `kate` and fullwidth `ａｌｉｃｅ` is `alice`), the domain in its IDNA
/// (UTS #46) ASCII form (so `bücher.example` is `xn--bcher-kva.example`). Every spelling of
/// one mailbox parses to one equal value, which is what is stored, looked up, compared and
/// mailed to. Only addresses the delivery path (SMTP without SMTPUTF8) can carry are accepted:
/// an ASCII dot-atom local part and a DNS domain; quoted local parts and IP literals are refused.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

const TRY_LIKE: &str = "use an address like name@example.com";

fn invalid_email(field: &str) -> FieldError {
    FieldError::new(
        field,
        "invalid_email",
        "enter an email address like name@example.com",
    )
}

/// RFC 5322 `atext`: what an unquoted local part may hold between dots.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|a| !a.is_empty() && a.bytes().all(is_atext))
}

/// A DNS host name of at least two LDH labels, each 1–63 bytes, no hyphen at either end.
fn is_ldh_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn nfkc(s: &str) -> String {
    s.nfkc().collect()
}

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::new(field, "required", "enter an email address"));
        }
        let too_long = || {
            FieldError::new(
                field,
                "too_long",
                format!("an email address has at most {EMAIL_MAX_LEN} characters"),
            )
        };
        // Bounds the work below; the canonical form is checked again at the end.
        if s.chars().count() > EMAIL_MAX_LEN {
            return Err(too_long());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid_email(field));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(invalid_email(field));
        };
        let quoted = || {
            FieldError::new(
                field,
                "quoted_local_part_unsupported",
                format!("a quoted name before the @ cannot be delivered; {TRY_LIKE}"),
            )
        };
        if local.starts_with('"') {
            return Err(quoted());
        }
        let ip_literal = || {
            FieldError::new(
                field,
                "ip_literal_unsupported",
                format!("an IP address after the @ cannot be delivered; {TRY_LIKE}"),
            )
        };
        if domain.starts_with('[') {
            return Err(ip_literal());
        }

        // NOTE: NFKC, lower-case, NFKC again: lower-casing can produce characters that
        // compose differently, and the result must be stable under a second parse.
        let local = nfkc(&nfkc(local).to_lowercase());
        if local.starts_with('"') {
            return Err(quoted());
        }
        if !local.is_ascii() {
            return Err(FieldError::new(
                field,
                "non_ascii_local_part_unsupported",
                format!(
                    "the name before the @ must use Latin letters, digits and !#$%&'*+/=?^_`{{|}}~.- only; {TRY_LIKE}"
                ),
            ));
        }
        if !is_dot_atom(&local) {
            return Err(invalid_email(field));
        }
        if local.len() > EMAIL_LOCAL_MAX_LEN {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("the name before the @ has at most {EMAIL_LOCAL_MAX_LEN} characters"),
            ));
        }

        let domain = idna::domain_to_ascii_strict(domain).map_err(|_| invalid_email(field))?;
        let last_label = domain.rsplit('.').next().unwrap_or_default();
        if !last_label.is_empty() && last_label.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ip_literal());
        }
        if !is_ldh_domain(&domain) {
            return Err(invalid_email(field));
        }

        let canonical = format!("{local}@{domain}");
        if canonical.len() > EMAIL_MAX_LEN {
            return Err(too_long());
        }
        Ok(Self(canonical))
    }

    /// An address stored before the canonical rule that no longer parses (quoted local part, IP
    /// literal: the upgrade left it as it was and listed it in `email_canonical_conflicts`),
    /// kept as stored so that its account still logs in, refreshes and is administered. Mail
    /// to it fails as it always did. Storage calls this for such rows only.
    pub fn stored_before_canonical(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The canonical address: what is stored, mailed to and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup key. The same string as [`Email::as_str`]: the canonical form already is
    /// the one key of a mailbox.
    pub fn normalized(&self) -> String {
        self.0.clone()
    }

    /// The part before the `@`, used by the password policy.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(self.0.as_str(), |(l, _)| l)
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Email::parse("email", &s).map_err(|e| e.message)
    }
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

/// A public handle (the nickname): 3–32 characters after NFKC, made of letters of ONE script,
/// ASCII digits, `_`, `.` and `-`, starting with a letter or digit. It never contains `@`, which
/// is how a login tells it from an email. Held in its NFKC form, so fullwidth `ａｌｉｃｅ` is
/// `alice`.
///
/// Two usernames that look alike are one: [`normalized`](Self::normalized) is the UTS #39
/// confusable skeleton of the lower-cased name, so `аlice` (Cyrillic а) or `ALICE` or `al1ce`
/// cannot sit beside `alice`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub const MIN: usize = 3;
    pub const MAX: usize = 32;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        use unicode_security::MixedScript;
        let s = nfkc(raw.trim());
        let n = s.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&n) {
            return Err(FieldError::new(
                field,
                "invalid_length",
                format!("a username has {} to {} characters", Self::MIN, Self::MAX),
            ));
        }
        let ok_chars = s
            .chars()
            .all(|c| c.is_alphabetic() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
        let ok_start = s
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c.is_ascii_digit());
        if !ok_chars || !ok_start {
            return Err(FieldError::new(
                field,
                "invalid_username",
                "use letters, digits, '_', '.' or '-', starting with a letter or digit",
            ));
        }
        if !s.as_str().is_single_script() {
            return Err(FieldError::new(
                field,
                "mixed_script",
                "use the letters of one script (all Latin or all Cyrillic, for example)",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: the UTS #39 skeleton of the lower-cased name, lower-cased again (a
    /// skeleton maps `0` to `O`), so names that read alike share one key.
    pub fn normalized(&self) -> String {
        let lower = self.0.to_lowercase();
        unicode_security::skeleton(&lower)
            .collect::<String>()
            .to_lowercase()
    }
}

impl TryFrom<String> for Username {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Username::parse("username", &s).map_err(|e| e.message)
    }
}
impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}
impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

/// Why an administrator blocked an account: one line of at most 500 characters, kept in the
/// audit log and the `user.blocked` event. The same rule for the admin API and the CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockReason(String);

impl BlockReason {
    pub const MAX_CHARS: usize = 500;

    /// A trimmed reason, or None when it is empty.
    pub fn parse(field: &str, raw: &str) -> Result<Option<Self>, FieldError> {
        let r = raw.trim();
        if r.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("a reason has at most {} characters", Self::MAX_CHARS),
            ));
        }
        if r.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "invalid",
                "a reason is one line of text without control characters",
            ));
        }
        Ok((!r.is_empty()).then(|| Self(r.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<BlockReason> for String {
    fn from(r: BlockReason) -> String {
        r.0
    }
}

/// What a user types to log in: an email when it contains `@`, otherwise a username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginId {
    Email(Email),
    Username(Username),
}

impl LoginId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if raw.trim().is_empty() {
            return Err(FieldError::new(
                field,
                "required",
                "enter your email address or username",
            ));
        }
        if raw.contains('@') {
            Email::parse(field, raw).map(LoginId::Email)
        } else {
            Username::parse(field, raw).map(LoginId::Username)
        }
    }
}

/// A password as typed. Never printed, never serialised: its `Debug` is redacted and it has no
/// `Serialize`. Only its size is checked here; the policy (length, common, derived) needs the
/// configuration and the account, so the accounts context applies it.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn parse(field: &str, raw: String) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new(field, "required", "enter a password"));
        }
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("a password has at most {PASSWORD_MAX_BYTES} bytes"),
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUID v7), so ids sort by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
                Uuid::parse_str(raw.trim()).map(Self).map_err(|_| {
                    FieldError::new(field, "invalid_id", "expected a UUID like 0190b0a4-7c2e-7d1a-9f3e-2a4b6c8d0e1f")
                })
            }
        }
        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

uuid_id!(
    /// A user's stable identifier; the `sub` of every access token.
    UserId
);
uuid_id!(
    /// A login session (one refresh-token family); the `sid` of access tokens.
    SessionId
);

/// Who is asking, carried on every command so events, sessions and logs can name the client.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: String,
    /// The id that ties this request to others of one piece of work: the caller's
    /// `X-Correlation-Id`, or else the request id. Carried into events and their AMQP headers.
    pub correlation_id: String,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The administrator acting on someone else's account, named in the audit log.
    pub actor: Option<UserId>,
    /// The service client acting on an account, named in the audit log.
    pub actor_client: Option<String>,
}

impl RequestMeta {
    /// The same request, done by `actor` (an administrator) on another account.
    pub fn acting(&self, actor: UserId) -> Self {
        Self {
            actor: Some(actor),
            ..self.clone()
        }
    }

    /// The same request, done by `caller`: a user (an administrator) or a service client.
    pub fn acting_as(&self, caller: &crate::access::Caller) -> Self {
        Self {
            actor: caller.user_id(),
            actor_client: caller.client_id().map(str::to_owned),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests;
