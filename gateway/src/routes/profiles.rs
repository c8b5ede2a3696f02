//! Routes of the profiles context: the caller's own profile, others' public profiles, search,
//! settings, activity, export, deletion and avatars.
//!
//! Refuses: deciding anything. A merge patch is read member by member into value types (every
//! bad member named at once); whether a name is taken, who may see what and which attributes
//! exist is the profiles actor's business.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use keyward_messages::commands::GetMe;
use keyward_messages::profiles::*;
use keyward_messages::{FieldError, Password, UserId, Username};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::openapi::*;
use super::private_json;
use crate::extract::{Authenticated, BearerToken, MaybeAuthenticated, Meta};
use crate::input::{Fields, Input, JsonObject, RequestBody, Valid};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the profile routes send to the profiles context.
    pub struct ProfilesApi {
        get_me: GetMe,
        get_profile: GetProfile,
        search: SearchProfiles,
        update_profile: UpdateProfile,
        get_settings: GetSettings,
        patch_settings: PatchSettings,
        get_activity: GetActivity,
        export_me: ExportMe,
        delete_me: DeleteMe,
        set_avatar: SetAvatar,
        delete_avatar: DeleteAvatar,
        get_avatar: GetAvatar,
        start_phone: StartPhoneVerification,
        confirm_phone: ConfirmPhone,
        erase_user: keyward_messages::access::EraseUser,
    }
}

/// The editable fields of a profile. In a `PATCH` (JSON merge patch, RFC 7396) an absent
/// member is kept and `null` clears it; a `PUT` replaces them all (absent = cleared).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ProfileEdit {
    /// 3–32 letters of one script, digits, `_`, `.` or `-`; unique, also against lookalikes.
    /// The old name stays reserved for its owner for 30 days.
    #[schema(value_type = Option<String>, example = "ada", min_length = 3, max_length = 32)]
    username: Input,
    #[schema(value_type = Option<String>, example = "Ada Lovelace", min_length = 1, max_length = 64)]
    display_name: Input,
    #[schema(value_type = Option<String>, max_length = 500)]
    bio: Input,
    /// `en` or `ru`: the language of emails and of the product's UI.
    #[schema(value_type = Option<String>, example = "en")]
    locale: Input,
    /// An IANA time zone.
    #[schema(value_type = Option<String>, example = "Europe/Moscow")]
    timezone: Input,
    /// ISO 3166-1 alpha-2.
    #[schema(value_type = Option<String>, example = "RU", min_length = 2, max_length = 2)]
    country: Input,
    /// E.164; private; unverified until confirmed by an SMS code.
    #[schema(value_type = Option<String>, example = "+79161234567")]
    phone: Input,
    #[schema(value_type = Option<Visibility>)]
    visibility: Input,
    /// The product attributes declared in config, as a merge patch (`null` removes one).
    #[schema(value_type = Option<Object>)]
    attributes: Input,
}

const EDITABLE: &[&str] = &[
    "username",
    "display_name",
    "bio",
    "locale",
    "timezone",
    "country",
    "phone",
    "visibility",
    "attributes",
];

/// Reads a profile edit. `replace`: a PUT, where an absent member clears the field.
fn profile_patch(mut body: Map<String, Value>, replace: bool) -> Result<ProfilePatch, ApiError> {
    let mut f = Fields::default();
    for name in body.keys().filter(|k| !EDITABLE.contains(&k.as_str())) {
        f.error(FieldError::new(
            name,
            "unknown_field",
            format!("editable fields are: {}", EDITABLE.join(", ")),
        ));
    }
    let (locale, visibility, attributes) = (
        body.remove("locale"),
        body.remove("visibility"),
        body.remove("attributes"),
    );
    let mut take = |name: &str| match body.remove(name) {
        None if replace => Some(Value::Null),
        v => v,
    };
    let (username, display_name, bio, timezone, country, phone) = (
        take("username"),
        take("display_name"),
        take("bio"),
        take("timezone"),
        take("country"),
        take("phone"),
    );
    let username = f.patch("username", username, Username::parse);
    let display_name = f.patch("display_name", display_name, DisplayName::parse);
    let bio = f.patch("bio", bio, Bio::parse);
    let locale = required_if_sent(&mut f, "locale", locale, parse_locale);
    let timezone = f.patch("timezone", timezone, Timezone::parse);
    let country = f.patch("country", country, Country::parse);
    let phone = f.patch("phone", phone, Phone::parse);
    let visibility = required_if_sent(&mut f, "visibility", visibility, Visibility::parse);
    let attributes = match attributes {
        None => Some(None),
        Some(Value::Object(m)) => Some(Some(m)),
        Some(_) => {
            f.error(FieldError::new(
                "attributes",
                "invalid_type",
                "attributes must be an object; set one to null to remove it",
            ));
            None
        }
    };
    f.done(|| {
        Some(ProfilePatch {
            username: username?,
            display_name: display_name?,
            bio: bio?,
            locale: locale?,
            timezone: timezone?,
            country: country?,
            phone: phone?,
            visibility: visibility?,
            attributes: attributes?,
        })
    })
}

/// A member that may be absent but never null (it always has a value).
fn required_if_sent<T>(
    f: &mut Fields,
    field: &str,
    value: Option<Value>,
    parse: impl FnOnce(&str, &str) -> Result<T, FieldError>,
) -> Option<Option<T>> {
    match f.patch(field, value, parse)? {
        Patch::Keep => Some(None),
        Patch::Set(v) => Some(Some(v)),
        Patch::Clear => {
            f.error(FieldError::new(
                field,
                "required",
                format!("{field} cannot be cleared; send one of its values"),
            ));
            None
        }
    }
}

/// A user id in a path; one that does not parse is as unknown as one that does not exist.
fn user_id(raw: &str) -> Result<UserId, ApiError> {
    uuid::Uuid::parse_str(raw).map(UserId).map_err(|_| {
        ApiError::from(keyward_messages::CommandError::NotFound {
            code: keyward_messages::codes::USER_NOT_FOUND,
            detail: "no visible user has this id".into(),
        })
    })
}

#[utoipa::path(get, path = "/v1/users/me", tag = "profiles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account and whole profile", body = UserView),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn me(
    st: State,
    Meta(meta): Meta,
    BearerToken(token): BearerToken,
) -> Result<HttpResponse, ApiError> {
    let user = st
        .ask(&st.to.profiles.get_me, GetMe { meta, token })
        .await
        .map_err(ApiError::with_invalid_token_challenge)?;
    Ok(private_json(&user))
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "profiles",
    security(("bearer" = [])),
    request_body(content = ProfileEdit, content_type = "application/merge-patch+json",
        description = "A JSON merge patch (application/json is accepted too)"),
    responses(
        (status = 200, description = "The profile after the change", body = UserView),
        (status = 409, description = "The username is taken, reads like a taken one, or is held after a rename", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn update_me(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let patch = profile_patch(body, false)?;
    let user_id = principal.user_id;
    let cmd = UpdateProfile {
        meta,
        principal,
        user_id,
        patch,
    };
    Ok(private_json(
        &st.ask(&st.to.profiles.update_profile, cmd).await?,
    ))
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "profiles",
    params(("id" = String, Path, description = "The user's id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The profile as the caller may see it: the whole profile to its owner and to administrators, the public part to others", body = PublicProfile),
        (status = 404, description = "No such user, or one the caller may not see (the same answer)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn get(
    st: State,
    Meta(meta): Meta,
    MaybeAuthenticated(viewer): MaybeAuthenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = GetProfile {
        meta,
        viewer: viewer.map(keyward_messages::access::Caller::User),
        user_id: user_id(&id)?,
    };
    Ok(private_json(
        &st.ask(&st.to.profiles.get_profile, cmd).await?,
    ))
}

#[utoipa::path(put, path = "/v1/users/{id}", tag = "profiles",
    params(("id" = String, Path, description = "The user's id")),
    security(("bearer" = [])),
    request_body(content = ProfileEdit, description = "Every editable field; an absent one is cleared (locale and visibility are kept)"),
    responses(
        (status = 200, description = "The profile after the change", body = UserView),
        (status = 403, description = "Neither the user themself nor an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn put(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(&id)?;
    let patch = profile_patch(body, true)?;
    let cmd = UpdateProfile {
        meta,
        principal,
        user_id,
        patch,
    };
    Ok(private_json(
        &st.ask(&st.to.profiles.update_profile, cmd).await?,
    ))
}

#[utoipa::path(get, path = "/v1/users/me/settings", tag = "profiles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings object the product keeps for the caller", body = UserSettings),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn settings(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let cmd = GetSettings { meta, principal };
    Ok(private_json(
        &st.ask(&st.to.profiles.get_settings, cmd).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/users/me/settings", tag = "profiles",
    security(("bearer" = [])),
    request_body(content = UserSettings, content_type = "application/merge-patch+json",
        description = "A JSON merge patch of the settings; the result holds at most 16 KiB"),
    responses(
        (status = 200, description = "The settings after the change", body = UserSettings),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn patch_settings(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(patch): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let cmd = PatchSettings {
        meta,
        principal,
        patch,
    };
    Ok(private_json(
        &st.ask(&st.to.profiles.patch_settings, cmd).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct PageQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1–100, default 50.
    limit: Option<String>,
}

pub(super) fn limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_fields(vec![FieldError::new(
            "limit",
            "out_of_range",
            format!("limit is a whole number from 1 to {max}"),
        )])),
    }
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct SearchParams {
    /// What to look for: a nickname or a name, whole or its beginning, Latin or Cyrillic.
    q: Option<String>,
    /// The same as `q` (for clients that call it so).
    nickname: Option<String>,
    /// 1–50, default 20.
    limit: Option<String>,
    /// The `next_cursor` of the previous page of the same search.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/users/search", tag = "profiles",
    params(SearchParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Profiles the caller may see, ranked exact > prefix > typo > transliteration", body = SearchResults),
        (status = 400, description = "`q` missing, empty or longer than 64 characters; a bad `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn search(
    st: State,
    Meta(meta): Meta,
    MaybeAuthenticated(viewer): MaybeAuthenticated,
    p: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let p = p.into_inner();
    let q = p.q.or(p.nickname).unwrap_or_default();
    validate_query(&q)?;
    let cmd = SearchProfiles {
        meta,
        viewer: viewer.map_or(Viewer::Anonymous, |p| Viewer::User(p.user_id)),
        q,
        limit: limit(p.limit.as_deref(), 20, 50)?,
        cursor: p.cursor,
    };
    Ok(private_json(&st.ask(&st.to.profiles.search, cmd).await?))
}

/// `q` is 1–64 characters after trimming, with a letter or digit.
fn validate_query(q: &str) -> Result<(), ApiError> {
    let n = q.trim().chars().count();
    if !(1..=SEARCH_QUERY_MAX_CHARS).contains(&n) || !q.chars().any(char::is_alphanumeric) {
        return Err(ApiError::invalid_fields(vec![FieldError::new(
            "q",
            "invalid_query",
            format!("q is 1 to {SEARCH_QUERY_MAX_CHARS} characters with a letter or digit"),
        )]));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/users/me/activity", tag = "profiles",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's security and account history, newest first", body = ActivityPage),
        (status = 400, description = "A bad `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn activity(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let cmd = GetActivity {
        meta,
        principal,
        limit: limit(q.limit.as_deref(), 50, 100)?,
        cursor: q.cursor,
    };
    Ok(private_json(
        &st.ask(&st.to.profiles.get_activity, cmd).await?,
    ))
}

#[utoipa::path(get, path = "/v1/users/me/export", tag = "profiles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Everything Keyward holds about the caller (GDPR Art. 15 and 20)", body = UserExport),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn export(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let data = st
        .ask(&st.to.profiles.export_me, ExportMe { meta, principal })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"keyward-export.json\"",
        ))
        .json(data))
}

/// An image file, as bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(crate) struct ImageBytes(Vec<u8>);

/// `PUT /v1/users/me/avatar` reads at most this many bytes (the pipeline's own limit, 5 MiB
/// by default, may be lower and answers 413 too).
pub(crate) const AVATAR_MAX_BYTES: usize = 64 * 1024 * 1024;

#[utoipa::path(put, path = "/v1/users/me/avatar", tag = "profiles",
    security(("bearer" = [])),
    request_body(description = "The image itself, at most 5 MiB and 40 megapixels",
        content((ImageBytes = "image/jpeg"), (ImageBytes = "image/png"), (ImageBytes = "image/webp"))),
    responses(
        (status = 200, description = "The new avatar, re-encoded without metadata in three sizes", body = AvatarUrls),
        (status = 422, description = "Undecodable, too many pixels, or smaller than 32 px", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn put_avatar(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    req: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = crate::input::read_bytes(body, AVATAR_MAX_BYTES).await?;
    let cmd = SetAvatar {
        meta,
        principal,
        content_type,
        body,
    };
    Ok(private_json(
        &st.ask(&st.to.profiles.set_avatar, cmd).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/users/me/avatar", tag = "profiles",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The avatar is gone"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn delete_avatar(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    st.ask(
        &st.to.profiles.delete_avatar,
        DeleteAvatar { meta, principal },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/avatars/{key}", tag = "profiles",
    params(("key" = String, Path, description = "A rendition's key, from an avatar URL")),
    responses(
        (status = 200, description = "The image; it never changes (a new upload gets new keys)",
            content((ImageBytes = "image/jpeg"), (ImageBytes = "image/webp")),
            headers(("Cache-Control" = String, description = "public, max-age=31536000, immutable"))),
        (status = 404, description = "No such avatar", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub(super) async fn avatar(
    st: State,
    Meta(meta): Meta,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = GetAvatar {
        meta,
        key: key.into_inner(),
    };
    match st.ask(&st.to.profiles.get_avatar, cmd).await? {
        Some(img) => Ok(HttpResponse::Ok()
            .content_type(img.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(img.bytes)),
        None => Err(ApiError::not_found()),
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct DeleteMeRequest {
    #[schema(value_type = String)]
    current_password: Input,
}

impl RequestBody for DeleteMeRequest {
    type Valid = Password;
    fn validate(self, f: &mut Fields) -> Option<Password> {
        f.required("current_password", self.current_password, Password::parse)
    }
}

#[utoipa::path(delete, path = "/v1/users/me", tag = "profiles",
    security(("bearer" = [])),
    request_body = DeleteMeRequest,
    responses(
        (status = 202, description = "Every session ended; the account is erased at erase_at unless its owner logs in before", body = DeletionScheduled),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn delete_me(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    Valid(current_password): Valid<DeleteMeRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = DeleteMe {
        meta,
        principal,
        current_password,
    };
    let scheduled = st.ask(&st.to.profiles.delete_me, cmd).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(scheduled))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct PhoneRequest {
    /// E.164, e.g. `+79161234567` (spaces, dashes and brackets are ignored).
    #[schema(value_type = String, example = "+79161234567")]
    phone: Input,
}

impl RequestBody for PhoneRequest {
    type Valid = Phone;
    fn validate(self, f: &mut Fields) -> Option<Phone> {
        f.required("phone", self.phone, |k, v| Phone::parse(k, &v))
    }
}

#[utoipa::path(post, path = "/v1/users/me/phone", tag = "profiles",
    security(("bearer" = [])),
    request_body = PhoneRequest,
    responses(
        (status = 202, description = "A 6-digit code is on its way by SMS; it is good for five minutes and five tries, and a new one replaces it", body = PhoneCodeSent),
        (status = 429, description = "At most one code per 30 s; every SMS code also takes a place in the hourly budget per account (5), client IP (KEYWARD_SMS__MAX_PER_IP_PER_HOUR, 2) and number (KEYWARD_SMS__MAX_PER_NUMBER_PER_HOUR, 3)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds")),
            example = json!({"type": "urn:keyward:problem:too_many_requests", "title": "Too many requests", "status": 429, "detail": "too many attempts; retry after the time in Retry-After", "code": "too_many_requests"})),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn start_phone(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    Valid(phone): Valid<PhoneRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = StartPhoneVerification {
        meta,
        principal,
        phone,
    };
    let sent = st.ask(&st.to.profiles.start_phone, cmd).await?;
    Ok(HttpResponse::Accepted().json(sent))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct PhoneCodeRequest {
    /// The 6 digits of the latest SMS.
    #[schema(value_type = String, example = "042917")]
    code: Input,
}

fn six_digits(field: &str, raw: &str) -> Result<String, FieldError> {
    let code = raw.trim();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "invalid_code",
            "enter the 6 digits of the latest SMS",
        ))
    }
}

impl RequestBody for PhoneCodeRequest {
    type Valid = String;
    fn validate(self, f: &mut Fields) -> Option<String> {
        f.required("code", self.code, |k, v| six_digits(k, &v))
    }
}

#[utoipa::path(post, path = "/v1/users/me/phone/confirm", tag = "profiles",
    security(("bearer" = [])),
    request_body = PhoneCodeRequest,
    responses(
        (status = 200, description = "The number is the profile's verified phone (SMS notifications go to it); `profile.updated` names `phone`", body = PhoneVerified),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn confirm_phone(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    Valid(code): Valid<PhoneCodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ConfirmPhone {
        meta,
        principal,
        code,
    };
    let verified = st.ask(&st.to.profiles.confirm_phone, cmd).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(verified))
}
