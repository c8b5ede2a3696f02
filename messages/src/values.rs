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
        assert_eq!(a.as_str(), "alice@example.com");
        assert_eq!(a.normalized(), "alice@example.com");
    }

    fn canonical(raw: &str) -> String {
        Email::parse("email", raw).unwrap().as_str().to_owned()
    }

    fn refusal(raw: &str) -> String {
        let e = Email::parse("email", raw).unwrap_err();
        assert_eq!(e.field, "email", "{raw:?}");
        // Every refusal but a length one says what a good address looks like.
        assert!(
            e.code == "too_long" || e.message.contains("name@example.com"),
            "{e:?}"
        );
        e.code
    }

    #[test]
    fn a_kelvin_sign_in_the_local_part_is_the_letter_k() {
        assert_eq!(canonical("\u{212A}ate@example.com"), "kate@example.com");
        assert_eq!(
            Email::parse("email", "\u{212A}ate@example.com").unwrap(),
            Email::parse("email", "kate@example.com").unwrap()
        );
    }

    #[test]
    fn fullwidth_letters_are_their_ascii_letters_on_both_sides_of_the_at() {
        assert_eq!(canonical("\u{FF41}lice@example.com"), "alice@example.com");
        assert_eq!(
            canonical("ＡＬＩＣＥ@ＥＸＡＭＰＬＥ.ｃｏｍ"),
            "alice@example.com"
        );
    }

    #[test]
    fn an_idn_domain_and_its_punycode_are_one_address() {
        assert_eq!(canonical("x@bücher.example"), "x@xn--bcher-kva.example");
        assert_eq!(canonical("x@BÜCHER.example"), "x@xn--bcher-kva.example");
        assert_eq!(
            canonical("x@XN--BCHER-KVA.example"),
            "x@xn--bcher-kva.example"
        );
        assert_eq!(
            Email::parse("email", "x@bücher.example").unwrap(),
            Email::parse("email", "x@xn--bcher-kva.example").unwrap()
        );
    }

    #[test]
    fn display_serde_and_the_lookup_key_all_give_the_canonical_form() {
        let e = Email::parse("email", "Bob@Bücher.Example").unwrap();
        assert_eq!(e.to_string(), "bob@xn--bcher-kva.example");
        assert_eq!(e.normalized(), e.as_str());
        assert_eq!(e.local_part(), "bob");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            "\"bob@xn--bcher-kva.example\""
        );
        let back: Email = serde_json::from_str("\"BOB@xn--bcher-kva.example\"").unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn a_quoted_local_part_is_refused_as_undeliverable() {
        assert_eq!(
            refusal("\"a@b\"@example.com"),
            "quoted_local_part_unsupported"
        );
        assert_eq!(
            refusal("\"alice\"@example.com"),
            "quoted_local_part_unsupported"
        );
        // A fullwidth quotation mark becomes a quote under NFKC.
        assert_eq!(
            refusal("\u{FF02}alice\u{FF02}@example.com"),
            "quoted_local_part_unsupported"
        );
    }

    #[test]
    fn an_ip_literal_domain_is_refused_as_undeliverable() {
        assert_eq!(refusal("alice@[127.0.0.1]"), "ip_literal_unsupported");
        assert_eq!(refusal("alice@[IPv6:::1]"), "ip_literal_unsupported");
        assert_eq!(refusal("alice@1.2.3.4"), "ip_literal_unsupported");
        assert_eq!(refusal("alice@１.２.３.４"), "ip_literal_unsupported");
    }

    #[test]
    fn a_local_part_that_stays_non_ascii_is_refused() {
        for raw in [
            "jörg@example.com",
            "İnci@example.com",
            "straße@example.com",
            "a\u{200B}b@example.com",
        ] {
            assert_eq!(refusal(raw), "non_ascii_local_part_unsupported", "{raw:?}");
        }
    }

    #[test]
    fn a_local_part_must_be_a_dot_atom_of_at_most_64_bytes() {
        for raw in [
            ".a@example.com",
            "a.@example.com",
            "a..b@example.com",
            "a(b)@example.com",
            "a,b@example.com",
            "a@b@example.com",
        ] {
            assert_eq!(refusal(raw), "invalid_email", "{raw:?}");
        }
        assert_eq!(
            canonical("o'Neil+tag.x_y@example.com"),
            "o'neil+tag.x_y@example.com"
        );
        assert!(Email::parse("email", &format!("{}@example.com", "a".repeat(64))).is_ok());
        assert_eq!(
            refusal(&format!("{}@example.com", "a".repeat(65))),
            "too_long"
        );
    }

    #[test]
    fn a_domain_must_be_at_least_two_ldh_labels_of_at_most_63_bytes() {
        for raw in [
            "a@localhost",
            "a@example.com.",
            "a@-example.com",
            "a@example-.com",
            "a@exa_mple.com",
            "a@example..com",
            "a@xn--zz.example",
            &format!("a@{}.com", "b".repeat(64)),
        ] {
            assert_eq!(refusal(raw), "invalid_email", "{raw:?}");
        }
        assert!(Email::parse("email", &format!("a@{}.com", "b".repeat(63))).is_ok());
    }

    #[test]
    fn the_whole_canonical_address_has_at_most_254_bytes() {
        let label = "d".repeat(60);
        let domain = format!("{label}.{label}.{label}.{}.com", "d".repeat(40));
        let ok = format!("{}@{domain}", "a".repeat(254 - 1 - domain.len()));
        assert_eq!(canonical(&ok).len(), 254);
        let over = format!("a{ok}");
        assert_eq!(refusal(&over), "too_long");
        // An IDN label grows under punycode; the limit is on what is stored and mailed to.
        let idn = format!("{}@{}com", "a".repeat(64), "bücher.".repeat(14));
        assert!(idn.chars().count() <= 254);
        assert_eq!(refusal(&idn), "too_long");
    }

    #[test]
    fn every_accepted_address_is_ascii_and_parses_to_itself() {
        let letters = [
            "a", "K", "\u{212A}", "\u{FF41}", "ü", "ſ", "ﬁ", ".", "-", "+", "1", "İ", "ß", "@",
            "\"", "[",
        ];
        let mut accepted = 0;
        for a in letters {
            for b in letters {
                for domain in [
                    "example.com",
                    "bücher.example",
                    "ＥＸＡＭＰＬＥ.com",
                    "1.2.3.4",
                    "a-b.c",
                ] {
                    let raw = format!("x{a}{b}@{domain}");
                    let Ok(e) = Email::parse("email", &raw) else {
                        continue;
                    };
                    accepted += 1;
                    let s = e.as_str();
                    assert!(s.is_ascii() && s.len() <= EMAIL_MAX_LEN, "{raw:?} -> {s:?}");
                    assert_eq!(s, s.to_ascii_lowercase(), "{raw:?}");
                    assert_eq!(
                        Email::parse("email", s).as_ref(),
                        Ok(&e),
                        "{raw:?} -> {s:?}"
                    );
                    assert_eq!(
                        Email::parse("email", &s.to_ascii_uppercase()).as_ref(),
                        Ok(&e)
                    );
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
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
        assert_eq!(
            LoginId::parse("login", "\u{212A}ate@Example.com").unwrap(),
            LoginId::Email(Email::parse("email", "kate@example.com").unwrap())
        );
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
