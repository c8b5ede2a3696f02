//! The profiles context's vocabulary: who may see a profile, who is asking, and (as the context
//! grows) its commands, queries and replies.

use actix::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::commands::{Locale, Principal};
use crate::error::{CommandError, FieldError};
use crate::{Password, RequestMeta, UserId, Username};

/// Who may see a profile beyond its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
// NOTE: the example keeps the generated Postman collection stable (its converter otherwise
// picks an enum value at random).
#[schema(example = "users")]
pub enum Visibility {
    /// Anyone, signed in or not.
    Public,
    /// Signed-in users.
    Users,
    /// Only the owner (and admins).
    Private,
}

impl Visibility {
    pub const ALL: [Visibility; 3] = [Visibility::Public, Visibility::Users, Visibility::Private];

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Users => "users",
            Visibility::Private => "private",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(field, "invalid_visibility", "use public, users or private")
            })
    }
}

/// Who is asking to see profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    User(UserId),
}

impl Viewer {
    /// Whether this viewer may see a profile of `owner` with `visibility` (admins aside).
    pub fn may_see(self, owner: UserId, visibility: Visibility) -> bool {
        match (self, visibility) {
            (_, Visibility::Public) => true,
            (Viewer::User(me), _) if me == owner => true,
            (Viewer::User(_), Visibility::Users) => true,
            _ => false,
        }
    }
}

// ---- commands, queries and replies (gateway → profiles) ----

/// One member of a JSON merge patch (RFC 7396): absent (keep), `null` (clear), or a value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Patch<T> {
    /// Applies the patch to a current value.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current,
            Patch::Clear => None,
            Patch::Set(v) => Some(v),
        }
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Keep => Patch::Keep,
            Patch::Clear => Patch::Clear,
            Patch::Set(v) => Patch::Set(f(v)),
        }
    }
    pub fn is_keep(&self) -> bool {
        matches!(self, Patch::Keep)
    }
}

/// The editable fields of a profile, parsed. `attributes` is itself a merge patch of the
/// declared product attributes, checked against their declaration by the profiles context.
#[derive(Clone, Debug, Default)]
pub struct ProfilePatch {
    pub username: Patch<Username>,
    pub display_name: Patch<DisplayName>,
    pub bio: Patch<Bio>,
    pub locale: Option<Locale>,
    pub timezone: Patch<Timezone>,
    pub country: Patch<Country>,
    pub phone: Patch<Phone>,
    pub visibility: Option<Visibility>,
    pub attributes: Option<Map<String, Value>>,
}

/// Gateway → profiles. Sends a 6-digit code by SMS to `phone`; the caller proves the number
/// with [`ConfirmPhone`].
#[derive(Debug, Message)]
#[rtype(result = "Result<PhoneCodeSent, CommandError>")]
pub struct StartPhoneVerification {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub phone: Phone,
}

/// A code is on its way.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PhoneCodeSent {
    /// The number, in E.164.
    pub phone: String,
    /// Seconds the code is valid for.
    pub expires_in: u64,
}

/// Gateway → profiles. The code the SMS brought: the number becomes the profile's verified
/// phone.
#[derive(Debug, Message)]
#[rtype(result = "Result<PhoneVerified, CommandError>")]
pub struct ConfirmPhone {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub code: String,
}

/// The caller's phone, now verified.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PhoneVerified {
    pub phone: String,
    pub phone_verified: bool,
}

/// An avatar in its three sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AvatarUrls {
    #[serde(rename = "64")]
    pub small: String,
    #[serde(rename = "256")]
    pub medium: String,
    #[serde(rename = "512")]
    pub large: String,
}

/// A user as they see themselves: the account (wave 1) and the whole profile.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub email: String,
    pub email_verified: bool,
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub avatar: Option<AvatarUrls>,
    #[schema(value_type = String, example = "en")]
    pub locale: Locale,
    pub timezone: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub phone_verified: bool,
    pub visibility: Visibility,
    /// The declared product attributes, every one the owner may see.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub updated_at: DateTime<Utc>,
    /// When the account will be erased, if its owner asked for deletion (logging in cancels it).
    pub deletion_scheduled_for: Option<DateTime<Utc>>,
}

/// A profile as another caller may see it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PublicProfile {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub avatar: Option<AvatarUrls>,
    pub country: Option<String>,
    /// The declared attributes this caller may see.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
}

/// What `GET /v1/users/{id}` answers: the whole profile to its owner (and admins), the
/// visible part to anyone else.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum ProfileView {
    Own(Box<UserView>),
    Public(Box<PublicProfile>),
}

/// Gateway → profiles. The caller's own account and profile, for the bearer token the
/// profiles context authenticates as `Authenticate` does: one message per request instead of
/// two, on a route a product's UI calls on every page.
#[derive(Debug, Message)]
#[rtype(result = "Result<UserView, CommandError>")]
pub struct GetMe {
    pub meta: RequestMeta,
    pub token: secrecy::SecretString,
}

/// Gateway → profiles. Applies a merge patch to the caller's profile (`PATCH /v1/users/me`),
/// or replaces a profile's editable fields (`PUT /v1/users/{id}`: the owner or an admin).
#[derive(Debug, Message)]
#[rtype(result = "Result<UserView, CommandError>")]
pub struct UpdateProfile {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub user_id: UserId,
    pub patch: ProfilePatch,
}

/// Gateway → profiles. A profile as `viewer` may see it; not visible → `user_not_found`.
#[derive(Debug, Message)]
#[rtype(result = "Result<ProfileView, CommandError>")]
pub struct GetProfile {
    pub meta: RequestMeta,
    /// A user, or a service client (with `users:read` it sees what an administrator sees).
    pub viewer: Option<crate::access::Caller>,
    pub user_id: UserId,
}

/// The longest search query, in characters after trimming.
pub const SEARCH_QUERY_MAX_CHARS: usize = 64;

/// One search hit.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SearchItem {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// The 64 px avatar.
    pub avatar_url: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub items: Vec<SearchItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Gateway → profiles. Profiles by nickname or name, ranked, only those `viewer` may see.
#[derive(Debug, Message)]
#[rtype(result = "Result<SearchResults, CommandError>")]
pub struct SearchProfiles {
    pub meta: RequestMeta,
    pub viewer: Viewer,
    pub q: String,
    pub limit: u32,
    pub cursor: Option<String>,
}

/// The settings object a product keeps per user.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct UserSettings(pub Map<String, Value>);

/// Gateway → profiles. The caller's settings.
#[derive(Debug, Message)]
#[rtype(result = "Result<UserSettings, CommandError>")]
pub struct GetSettings {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → profiles. A merge patch of the caller's settings (the result ≤ 16 KiB).
#[derive(Debug, Message)]
#[rtype(result = "Result<UserSettings, CommandError>")]
pub struct PatchSettings {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub patch: Map<String, Value>,
}

/// The largest settings object, serialised.
pub const SETTINGS_MAX_BYTES: usize = 16 * 1024;

/// One line of a user's own history.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityItem {
    pub at: DateTime<Utc>,
    /// The event, e.g. `user.logged_in`, `user.password_changed`, `session.revoked`.
    #[serde(rename = "type")]
    pub kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityPage {
    pub items: Vec<ActivityItem>,
    pub next_cursor: Option<String>,
}

/// Gateway → profiles. The caller's security and account history, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<ActivityPage, CommandError>")]
pub struct GetActivity {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// Everything Keyward holds about a user (GDPR Art. 15 and 20).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct UserExport(pub Value);

/// Gateway → profiles. The caller's export.
#[derive(Debug, Message)]
#[rtype(result = "Result<UserExport, CommandError>")]
pub struct ExportMe {
    pub meta: RequestMeta,
    pub principal: Principal,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeletionScheduled {
    /// When personal data will be erased; logging in before then cancels the deletion.
    pub erase_at: DateTime<Utc>,
}

/// Gateway → profiles. Self-service deletion: every session ends now; the account is erased
/// after the grace period unless its owner logs in.
#[derive(Debug, Message)]
#[rtype(result = "Result<DeletionScheduled, CommandError>")]
pub struct DeleteMe {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub current_password: Password,
}

/// Gateway → profiles. A new avatar for the caller, as uploaded (type and bytes unchecked).
#[derive(Debug, Message)]
#[rtype(result = "Result<AvatarUrls, CommandError>")]
pub struct SetAvatar {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Gateway → profiles. Removes the caller's avatar.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct DeleteAvatar {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// A stored avatar image.
#[derive(Clone, Debug)]
pub struct AvatarImage {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// Gateway → profiles. One avatar rendition by its key; None when there is none.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<AvatarImage>, CommandError>")]
pub struct GetAvatar {
    pub meta: RequestMeta,
    pub key: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn visibility_decides_who_sees_a_profile() {
        let (owner, other) = (UserId::new(), UserId::new());
        assert!(Viewer::Anonymous.may_see(owner, Visibility::Public));
        assert!(!Viewer::Anonymous.may_see(owner, Visibility::Users));
        assert!(Viewer::User(other).may_see(owner, Visibility::Users));
        assert!(!Viewer::User(other).may_see(owner, Visibility::Private));
        assert!(Viewer::User(owner).may_see(owner, Visibility::Private));
        assert_eq!(
            Visibility::parse("visibility", "friends").unwrap_err().code,
            "invalid_visibility"
        );
    }
}

// ---- value types ----

fn one_line(
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
    what: &str,
) -> Result<String, FieldError> {
    use unicode_normalization::UnicodeNormalization;
    let s: String = raw.trim().nfc().collect();
    let n = s.chars().count();
    if n < min || n > max {
        return Err(FieldError::new(
            field,
            "invalid_length",
            format!("{what} has {min} to {max} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            format!("{what} is one line of visible text (no control or invisible characters)"),
        ));
    }
    Ok(s)
}

/// Bidi overrides and zero-width characters, which let a name display as something else.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

macro_rules! text_value {
    ($(#[$m:meta])* $name:ident, $min:expr, $max:expr, $what:expr, multiline = $ml:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const MAX: usize = $max;

            pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
                if $ml {
                    multiline(field, raw, $max, $what).map(Self)
                } else {
                    one_line(field, raw, $min, $max, $what).map(Self)
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

fn multiline(field: &str, raw: &str, max: usize, what: &str) -> Result<String, FieldError> {
    use unicode_normalization::UnicodeNormalization;
    let s: String = raw.trim().nfc().collect();
    if s.chars().count() > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{what} has at most {max} characters"),
        ));
    }
    if s.chars()
        .any(|c| (c.is_control() && c != '\n') || is_invisible_format(c))
    {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            format!("{what} is text without control or invisible characters"),
        ));
    }
    Ok(s)
}

text_value!(
    /// The name shown: 1–64 characters of any script, one line.
    DisplayName, 1, 64, "a display name", multiline = false
);
text_value!(
    /// A short text about the user: at most 500 characters; line breaks allowed.
    Bio, 0, 500, "a bio", multiline = true
);

/// An IANA time zone name, e.g. `Europe/Moscow`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timezone(String);

impl Timezone {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(|tz| Self(tz.name().to_owned()))
            .map_err(|_| {
                FieldError::new(
                    field,
                    "invalid_timezone",
                    "use an IANA time zone name such as Europe/Moscow or UTC",
                )
            })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Country(String);

impl Country {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let code = raw.trim().to_ascii_uppercase();
        isocountry::CountryCode::for_alpha2(&code)
            .map(|_| Self(code))
            .map_err(|_| {
                FieldError::new(
                    field,
                    "invalid_country",
                    "use an ISO 3166-1 alpha-2 code such as RU, DE or US",
                )
            })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form: `+`, a country code, 8 to 15 digits in all. Whether the
/// number exists is proven by an SMS code (MFA), not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let digits = s.strip_prefix('+').unwrap_or("");
        let ok = (8..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return Err(FieldError::new(
                field,
                "invalid_phone",
                "use the international E.164 form, e.g. +79161234567",
            ));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A supported language of the user interface and emails.
pub fn parse_locale(field: &str, raw: &str) -> Result<crate::commands::Locale, FieldError> {
    match raw.trim() {
        "en" => Ok(crate::commands::Locale::En),
        "ru" => Ok(crate::commands::Locale::Ru),
        _ => Err(FieldError::new(field, "unsupported_locale", "use en or ru")),
    }
}
