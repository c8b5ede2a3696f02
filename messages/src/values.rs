//! Value types with one fallible constructor each. JSON decoding goes through the same
//! constructor (`serde(try_from = "String")`), so an invalid value cannot be built anywhere.

use std::fmt;
use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::FieldError;

/// Longest email accepted (RFC 5321 path limit).
pub const EMAIL_MAX_LEN: usize = 254;
/// Passwords longer than this many bytes are refused before any hashing, so a huge body
/// cannot buy a long argon2 run. The configurable character limit is checked by the policy.
pub const PASSWORD_MAX_BYTES: usize = 4096;

/// An email address as the user typed it (trimmed). Lookups use [`Email::normalized`], so
/// `Alice@Example.com` and `alice@example.com` are one account; `==` compares as typed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::new(field, "required", "enter an email address"));
        }
        if s.len() > EMAIL_MAX_LEN {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("an email address has at most {EMAIL_MAX_LEN} characters"),
            ));
        }
        let domain_has_dot = s
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.contains('.') && !d.starts_with('.') && !d.ends_with('.'));
        if s.chars().any(|c| c.is_whitespace() || c.is_control())
            || !email_address::EmailAddress::is_valid(s)
            || !domain_has_dot
        {
            return Err(FieldError::new(
                field,
                "invalid_email",
                "enter an email address like name@example.com",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup key: lower-cased, so uniqueness is case-insensitive on every backend.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
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

/// A public handle: 3–32 characters of letters, digits, `_`, `.` or `-`, starting with a letter
/// or digit. It never contains `@`, which is how a login tells it from an email.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub const MIN: usize = 3;
    pub const MAX: usize = 32;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
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
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok_chars || !ok_start {
            return Err(FieldError::new(
                field,
                "invalid_username",
                "use letters, digits, '_', '.' or '-', starting with a letter or digit",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup key: usernames are unique case-insensitively.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_email_is_trimmed_and_compared_case_insensitively() {
        let a = Email::parse("email", "  Alice@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "Alice@Example.COM");
        assert_eq!(a.normalized(), "alice@example.com");
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
            "bob.smith-1"
        );
    }

    #[test]
    fn a_login_with_an_at_sign_is_an_email() {
        assert!(matches!(
            LoginId::parse("login", "a@example.com").unwrap(),
            LoginId::Email(_)
        ));
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
}
