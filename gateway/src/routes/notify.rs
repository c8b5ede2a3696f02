//! Routes of the notify context: the products' send API, the caller's inbox and preferences,
//! and the admin API's templates and delivery log.
//!
//! Refuses: deciding anything. Bodies are read member by member into value types (every bad
//! member named at once); who may send, what a template holds and who gets what is the notify
//! actor's business.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use keyward_messages::commands::Locale;
use keyward_messages::notify::*;
use keyward_messages::{FieldError, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::openapi::*;
use super::private_json;
use super::profiles::limit;
use crate::extract::{Authenticated, AuthenticatedCaller, Meta};
use crate::input::{Fields, JsonObject};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

/// Bodies of the send API and of templates may be this large (a send to 1,000 users, an HTML
/// mail), whatever `KEYWARD_HTTP__MAX_BODY_BYTES` says for the rest.
pub(super) const BULK_BODY_BYTES: usize = 256 * 1024;

crate::recipients! {
    /// What the notification routes send to the notify context.
    pub struct NotifyApi {
        send: SendNotification,
        cancel: CancelScheduled,
        list_inbox: ListInbox,
        open_stream: OpenInboxStream,
        mark_read: MarkRead,
        mark_all_read: MarkAllRead,
        get_preferences: GetPreferences,
        put_preferences: PutPreferences,
        get_template: GetTemplate,
        put_template: PutTemplate,
        preview_template: PreviewTemplate,
        list_deliveries: ListDeliveries,
        subscribe_push: SubscribePush,
        unsubscribe_push: UnsubscribePush,
        vapid_key: GetVapidKey,
    }
}

/// A send: the same JSON the `keyward.notify` exchange takes.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct SendBody {
    /// 1–1,000 distinct user ids.
    #[schema(value_type = Vec<String>, example = json!(["0190f1d4-6c1e-7b7a-9e1e-3c2f5a6b7c8d"]))]
    to: Value,
    /// A stored template's key.
    #[schema(value_type = String, example = "generic")]
    template: Value,
    /// The template's variables.
    #[schema(value_type = Object, example = json!({"title": "Booking confirmed", "body": "Dr. Ivanova, Monday 10:00"}))]
    variables: Option<Value>,
    /// A declared category: `security`, `general`, or one of `[[notify.categories]]`.
    #[schema(value_type = String, example = "general")]
    category: Value,
    /// The channels to use; absent: the category's defaults.
    #[schema(value_type = Option<Vec<Channel>>)]
    channels: Option<Value>,
    /// Deliver at this time (RFC 3339, at most a year ahead) instead of now; the reply's ids
    /// cancel it until then. A time past means now.
    #[schema(value_type = Option<String>, format = DateTime)]
    send_at: Option<Value>,
    /// The same key again answers the first reply (per caller); 1–200 characters.
    #[schema(value_type = String, example = "booking-4711-confirmed")]
    idempotency_key: Value,
}

/// Reads a send request: the same JSON as the AMQP intake's.
fn send_request(body: &Map<String, Value>) -> Result<SendRequest, ApiError> {
    SendRequest::from_json(body).map_err(ApiError::invalid_fields)
}

/// `POST /v1/notifications`.
#[utoipa::path(post, path = "/v1/notifications", operation_id = "send_notification", tag = "notifications",
    security(("bearer" = [])),
    request_body = SendBody,
    responses(
        (status = 202, description = "Taken: one notification id per recipient, in order. Each recipient and channel gets a delivery-log row (`sent`, `queued`, or `skipped` when muted or without an address)", body = SendAccepted),
        (status = 403, description = "Needs `notifications:send` (a service client's scope, or a user's permission)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`idempotency_key_reused`: the key was used for another request", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn send(
    st: State,
    Meta(meta): Meta,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let request = send_request(&body)?;
    let cmd = SendNotification {
        meta,
        caller,
        request,
    };
    let reply = st.ask(&st.to.notify.send, cmd).await?;
    Ok(HttpResponse::Accepted().json(reply))
}

/// `DELETE /v1/notifications/scheduled/{id}`.
#[utoipa::path(delete, path = "/v1/notifications/scheduled/{id}", operation_id = "cancel_notification", tag = "notifications",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "A notification id from the send's reply")),
    responses(
        (status = 204, description = "Cancelled: it will not go out; its deliveries are logged as `cancelled`"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `notifications:send`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No notification has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_scheduled`: it was sent or cancelled already", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn cancel(
    st: State,
    Meta(meta): Meta,
    AuthenticatedCaller(caller): AuthenticatedCaller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = notification_id(&id)?;
    let cmd = CancelScheduled { meta, caller, id };
    st.ask(&st.to.notify.cancel, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct InboxQuery {
    /// `true`: only unread items.
    unread: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1–100, default 20.
    limit: Option<String>,
}

fn flag(field: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::invalid_fields(vec![FieldError::new(
            field,
            "invalid_boolean",
            format!("{field} is true or false"),
        )])),
    }
}

/// `GET /v1/users/me/notifications`.
#[utoipa::path(get, path = "/v1/users/me/notifications", operation_id = "list_notifications", tag = "notifications",
    security(("bearer" = [])),
    params(InboxQuery),
    responses(
        (status = 200, description = "The caller's in-app notifications, newest first, and how many are unread", body = InboxPage),
        (status = 400, description = "A bad `unread`, `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn inbox(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    q: web::Query<InboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let cmd = ListInbox {
        meta,
        principal,
        unread_only: flag("unread", q.unread.as_deref())?,
        cursor: q.cursor,
        limit: limit(q.limit.as_deref(), 20, 100)?,
    };
    Ok(private_json(&st.ask(&st.to.notify.list_inbox, cmd).await?))
}

/// Seconds between the comments that keep an idle stream open through proxies.
const KEEPALIVE_SECS: u64 = 15;

/// One Server-Sent Event.
fn sse(name: &str, data: &impl Serialize) -> web::Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    web::Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// `GET /v1/users/me/notifications/stream`.
#[utoipa::path(get, path = "/v1/users/me/notifications/stream", operation_id = "stream_notifications", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-Sent Events (`text/event-stream`): first `unread` with `{unread}`, then `notification` with `{item, unread}` for each new in-app item, whichever node it was sent from, within a second. A comment every 15 s keeps it open; it ends after `KEYWARD_HTTP__CONNECTION_MAX_SECS`, and EventSource reconnects (`retry: 1000`)", body = LiveEvent, content_type = "text/event-stream"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn stream(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    use futures::StreamExt as _;
    let live = st
        .ask(
            &st.to.notify.open_stream,
            OpenInboxStream { meta, principal },
        )
        .await?;
    let first = format!(
        "retry: 1000\n\n{}",
        String::from_utf8_lossy(&sse("unread", &json!({"unread": live.unread})))
    );
    // Items, then a None when the node ends the stream; keep-alives interleaved until then.
    let items = live
        .events
        .map(|e| Some(sse(e.name(), &e)))
        .chain(futures::stream::once(async { None }));
    let keepalive = futures::stream::unfold((), |()| async {
        actix_rt::time::sleep(std::time::Duration::from_secs(KEEPALIVE_SECS)).await;
        Some((Some(web::Bytes::from_static(b": keep-alive\n\n")), ()))
    });
    let body = futures::stream::once(async move { Some(web::Bytes::from(first)) })
        .chain(futures::stream::select(items, keepalive))
        .take_while(|b| std::future::ready(b.is_some()))
        .filter_map(|b| std::future::ready(b.map(Ok::<_, std::convert::Infallible>)));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        // Proxies such as NGINX must pass events through as they come.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

fn notification_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| {
        ApiError::invalid_fields(vec![FieldError::new(
            "id",
            "invalid_uuid",
            "an id is a UUID",
        )])
    })
}

/// `POST /v1/users/me/notifications/{id}/read`.
#[utoipa::path(post, path = "/v1/users/me/notifications/{id}/read", operation_id = "read_notification", tag = "notifications",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The notification")),
    responses(
        (status = 204, description = "Read (reading it again keeps the first time)"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no such notification", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn read(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = notification_id(&id)?;
    let cmd = MarkRead {
        meta,
        principal,
        id,
    };
    st.ask(&st.to.notify.mark_read, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/users/me/notifications/read-all`.
#[utoipa::path(post, path = "/v1/users/me/notifications/read-all", operation_id = "read_all_notifications", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every notification of the caller is read"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn read_all(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    st.ask(&st.to.notify.mark_all_read, MarkAllRead { meta, principal })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Category → channel → wanted.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object, example = json!({"security": {"email": true, "in_app": true, "sms": true, "push": true}, "marketing": {"email": false, "in_app": true, "sms": true, "push": true}}))]
pub(crate) struct PreferencesView(Preferences);

/// `GET /v1/users/me/notification-preferences`.
#[utoipa::path(get, path = "/v1/users/me/notification-preferences", operation_id = "get_notification_preferences", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every declared category and channel: the caller's choice, else on. `security` is always on", body = PreferencesView),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn preferences(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let p = st
        .ask(
            &st.to.notify.get_preferences,
            GetPreferences { meta, principal },
        )
        .await?;
    Ok(private_json(&p))
}

fn preferences_body(body: &Map<String, Value>) -> Result<Preferences, ApiError> {
    let mut f = Fields::default();
    let mut out = Preferences::new();
    for (cat, per) in body {
        let Value::Object(per) = per else {
            f.error(FieldError::new(
                cat,
                "invalid_type",
                "each category maps channels to true or false, e.g. {\"email\": false}",
            ));
            continue;
        };
        let mut chans = BTreeMap::new();
        for (ch, on) in per {
            let field = format!("{cat}.{ch}");
            match (Channel::parse(&field, ch), on) {
                (Err(e), _) => f.error(e),
                (Ok(c), Value::Bool(b)) => {
                    chans.insert(c, *b);
                }
                (Ok(_), _) => f.error(FieldError::new(
                    &field,
                    "not_a_boolean",
                    "a channel is true or false",
                )),
            }
        }
        out.insert(cat.clone(), chans);
    }
    f.done(|| Some(out))
}

/// `PUT /v1/users/me/notification-preferences`.
#[utoipa::path(put, path = "/v1/users/me/notification-preferences", operation_id = "put_notification_preferences", tag = "notifications",
    security(("bearer" = [])),
    request_body(content = PreferencesView, description = "The choices to change; others stay"),
    responses(
        (status = 200, description = "The preferences now", body = PreferencesView),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn put_preferences(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let preferences = preferences_body(&body)?;
    let cmd = PutPreferences {
        meta,
        principal,
        preferences,
    };
    Ok(private_json(
        &st.ask(&st.to.notify.put_preferences, cmd).await?,
    ))
}

fn template_id(path: &(String, String, String)) -> Result<TemplateId, ApiError> {
    let (key, channel, locale) = path;
    let mut errors = Vec::new();
    let key = TemplateKey::parse("key", key)
        .map_err(|e| errors.push(e))
        .ok();
    let channel = Channel::parse("channel", channel)
        .map_err(|e| errors.push(e))
        .ok();
    let locale = match locale.as_str() {
        "en" => Some(Locale::En),
        "ru" => Some(Locale::Ru),
        _ => {
            errors.push(FieldError::new("locale", "invalid_locale", "use en or ru"));
            None
        }
    };
    match (key, channel, locale) {
        (Some(key), Some(channel), Some(locale)) => Ok(TemplateId {
            key,
            channel,
            locale,
        }),
        _ => Err(ApiError::invalid_fields(errors)),
    }
}

/// A template: its parts and declared variables.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TemplateBody {
    /// email `{subject, text, html}`, in_app and push `{title, body}`, sms `{text}`: MiniJinja
    /// sources (`{{ name }}`, `{% if x %}…{% endif %}`); only `html` is auto-escaped.
    #[schema(value_type = Object, example = json!({"title": "{{ title }}", "body": "{{ body }}"}))]
    parts: Value,
    /// The variables the template may use; absent keeps those stored.
    #[schema(value_type = Option<Vec<String>>, example = json!(["title", "body"]))]
    variables: Option<Value>,
}

fn parts_of(f: &mut Fields, v: Option<&Value>, required: bool) -> Option<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) if !required => None,
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => f.error(FieldError::new(
                        &format!("parts.{k}"),
                        "not_a_string",
                        "a part is a template source string",
                    )),
                }
            }
            Some(out)
        }
        _ => {
            f.error(FieldError::new(
                "parts",
                "required",
                "parts is an object of the channel's parts, e.g. {\"title\": \"{{ title }}\", \"body\": \"{{ body }}\"}",
            ));
            None
        }
    }
}

/// Names each member of a template or preview body other than `parts` and `variables`.
fn unknown_fields(f: &mut Fields, body: &Map<String, Value>, hint: &str) {
    for key in body
        .keys()
        .filter(|k| !["parts", "variables"].contains(&k.as_str()))
    {
        f.error(FieldError::new(key, "unknown_field", hint));
    }
}

/// A template's parts, and its declared variables when given.
type TemplateEdit = (BTreeMap<String, String>, Option<Vec<String>>);

fn template_body(body: &Map<String, Value>) -> Result<TemplateEdit, ApiError> {
    let mut f = Fields::default();
    unknown_fields(&mut f, body, "a template has parts and variables");
    let parts = parts_of(&mut f, body.get("parts"), true);
    let variables = match body.get("variables") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                let field = format!("variables[{i}]");
                match v.as_str() {
                    Some(s)
                        if !s.is_empty()
                            && s.len() <= 64
                            && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                    {
                        out.push(s.to_owned())
                    }
                    _ => f.error(FieldError::new(
                        &field,
                        "invalid_variable",
                        "a variable is a name of letters, digits and _, e.g. booking_time",
                    )),
                }
            }
            Some(Some(out))
        }
        Some(_) => {
            f.error(FieldError::new(
                "variables",
                "invalid_type",
                "variables is an array of names",
            ));
            None
        }
    };
    f.done(|| Some((parts?, variables?)))
}

/// `GET /v1/admin/templates/{key}/{channel}/{locale}`.
#[utoipa::path(get, path = "/v1/admin/templates/{key}/{channel}/{locale}", operation_id = "admin_get_template", tag = "notifications",
    security(("bearer" = [])),
    params(
        ("key" = String, Path, description = "The template, e.g. generic or verify_email"),
        ("channel" = Channel, Path, description = "email, in_app, sms or push"),
        ("locale" = String, Path, description = "en or ru"),
    ),
    responses(
        (status = 200, description = "The stored template", body = TemplateView),
        (status = 400, description = "A bad key, channel or locale", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `templates:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn get_template(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id = template_id(&path)?;
    let cmd = GetTemplate {
        meta,
        principal,
        id,
    };
    Ok(private_json(
        &st.ask(&st.to.notify.get_template, cmd).await?,
    ))
}

/// `PUT /v1/admin/templates/{key}/{channel}/{locale}`.
#[utoipa::path(put, path = "/v1/admin/templates/{key}/{channel}/{locale}", operation_id = "admin_put_template", tag = "notifications",
    security(("bearer" = [])),
    params(
        ("key" = String, Path, description = "The template, e.g. generic or booking_reminder"),
        ("channel" = Channel, Path, description = "email, in_app, sms or push"),
        ("locale" = String, Path, description = "en or ru"),
    ),
    request_body = TemplateBody,
    responses(
        (status = 200, description = "Replaced; every node renders with it within a second", body = TemplateView),
        (status = 201, description = "Created", body = TemplateView),
        (status = 400, description = "A part that does not parse (with its line), uses an undeclared variable, or is missing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `templates:write`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn put_template(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String, String)>,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let id = template_id(&path)?;
    let (parts, variables) = template_body(&body)?;
    let cmd = PutTemplate {
        meta,
        principal,
        id,
        parts,
        variables,
    };
    let (view, created) = st.ask(&st.to.notify.put_template, cmd).await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        private_json(&view)
    })
}

/// A preview: variables, and optionally unsaved parts.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct PreviewBody {
    #[schema(value_type = Object, example = json!({"title": "Booking confirmed", "body": "Monday 10:00"}))]
    variables: Option<Value>,
    /// Parts to try instead of the stored ones.
    #[schema(value_type = Option<Object>)]
    parts: Option<Value>,
}

/// The rendered parts.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object, example = json!({"title": "Booking confirmed", "body": "Monday 10:00"}))]
pub(crate) struct Rendered(BTreeMap<String, String>);

/// `POST /v1/admin/templates/{key}/{channel}/{locale}/preview`.
#[utoipa::path(post, path = "/v1/admin/templates/{key}/{channel}/{locale}/preview", operation_id = "admin_preview_template", tag = "notifications",
    security(("bearer" = [])),
    params(
        ("key" = String, Path, description = "The template"),
        ("channel" = Channel, Path, description = "email, in_app, sms or push"),
        ("locale" = String, Path, description = "en or ru"),
    ),
    request_body = PreviewBody,
    responses(
        (status = 200, description = "Each part rendered", body = Rendered),
        (status = 400, description = "A part that does not parse, or a variable it needs and was not given", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `templates:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template (and no parts given)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn preview_template(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String, String)>,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let id = template_id(&path)?;
    let mut f = Fields::default();
    unknown_fields(
        &mut f,
        &body,
        "a preview has variables and, optionally, parts",
    );
    let parts = parts_of(&mut f, body.get("parts"), false);
    let variables = match body.get("variables") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            f.error(FieldError::new(
                "variables",
                "invalid_type",
                "variables is an object",
            ));
            None
        }
    };
    let variables = f.done(|| variables)?;
    let cmd = PreviewTemplate {
        meta,
        principal,
        id,
        parts,
        variables,
    };
    Ok(private_json(
        &st.ask(&st.to.notify.preview_template, cmd).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DeliveryQuery {
    /// Only this user's deliveries.
    user_id: Option<String>,
    /// queued, scheduled, sent, failed, dead, skipped or cancelled.
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1–100, default 50.
    limit: Option<String>,
}

/// `GET /v1/admin/notifications`.
#[utoipa::path(get, path = "/v1/admin/notifications", operation_id = "admin_list_deliveries", tag = "notifications",
    security(("bearer" = [])),
    params(DeliveryQuery),
    responses(
        (status = 200, description = "The delivery log, newest first: one row per recipient and channel, with status, attempts and the provider's answer", body = DeliveryPage),
        (status = 400, description = "A bad filter, `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `users:read`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn deliveries(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    q: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let mut errors = Vec::new();
    let user_id = match q.user_id.as_deref().map(uuid::Uuid::parse_str) {
        None => None,
        Some(Ok(u)) => Some(UserId(u)),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "user_id",
                "invalid_uuid",
                "a user id is a UUID",
            ));
            None
        }
    };
    let status = match q
        .status
        .as_deref()
        .map(|s| DeliveryStatus::parse("status", s))
    {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            errors.push(e);
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    let cmd = ListDeliveries {
        meta,
        principal,
        user_id,
        status,
        cursor: q.cursor,
        limit: limit(q.limit.as_deref(), 50, 100)?,
    };
    Ok(private_json(
        &st.ask(&st.to.notify.list_deliveries, cmd).await?,
    ))
}

/// A browser's push subscription, as `PushSubscription.toJSON()` gives it.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct PushSubscriptionBody {
    /// The push service's URL (https).
    #[schema(value_type = String, example = "https://fcm.googleapis.com/fcm/send/dXJ…")]
    endpoint: Value,
    /// `{p256dh, auth}`, base64url.
    #[schema(value_type = Object, example = json!({"p256dh": "BCUf7rfE0qEVDl57wDstuWs5dIGiqMU5_zVxNrhq5Pi5JDtx9uiWqw-XpdVjItwBB4amSj_wTKXD7re0sUUCM9I", "auth": "INQq_XWkOcsXgkNXloqFUw"}))]
    keys: Value,
    /// Sent by browsers; ignored.
    #[schema(value_type = Option<i64>)]
    #[serde(rename = "expirationTime")]
    expiration_time: Option<Value>,
}

fn push_body(body: &Map<String, Value>) -> Result<(String, String, String), ApiError> {
    let mut f = Fields::default();
    for key in body
        .keys()
        .filter(|k| !["endpoint", "keys", "expirationTime"].contains(&k.as_str()))
    {
        f.error(FieldError::new(
            key,
            "unknown_field",
            "a subscription has endpoint and keys {p256dh, auth}",
        ));
    }
    let text = |f: &mut Fields, v: Option<&Value>, field: &str| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            f.error(FieldError::new(
                field,
                "required",
                format!("give {field} as a string, from PushSubscription.toJSON()"),
            ));
            None
        }
    };
    let endpoint = text(&mut f, body.get("endpoint"), "endpoint");
    let keys = body.get("keys").and_then(Value::as_object);
    let p256dh = text(&mut f, keys.and_then(|k| k.get("p256dh")), "keys.p256dh");
    let auth = text(&mut f, keys.and_then(|k| k.get("auth")), "keys.auth");
    f.done(|| Some((endpoint?, p256dh?, auth?)))
}

/// `POST /v1/users/me/push-subscriptions`.
#[utoipa::path(post, path = "/v1/users/me/push-subscriptions", operation_id = "subscribe_push", tag = "notifications",
    security(("bearer" = [])),
    request_body = PushSubscriptionBody,
    responses(
        (status = 201, description = "Kept: the caller's `push` notifications go to this browser. The same endpoint again replaces it", body = PushSubscriptionView),
        (status = 400, description = "An endpoint that is not an https URL, or keys that are not a P-256 key and a 16-byte secret", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn subscribe_push(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (endpoint, p256dh, auth) = push_body(&body)?;
    let cmd = SubscribePush {
        meta,
        principal,
        endpoint,
        p256dh,
        auth,
    };
    let view = st.ask(&st.to.notify.subscribe_push, cmd).await?;
    Ok(HttpResponse::Created().json(view))
}

/// `DELETE /v1/users/me/push-subscriptions/{id}`.
#[utoipa::path(delete, path = "/v1/users/me/push-subscriptions/{id}", operation_id = "unsubscribe_push", tag = "notifications",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The subscription")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no such subscription", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn unsubscribe_push(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = notification_id(&id)?;
    let cmd = UnsubscribePush {
        meta,
        principal,
        id,
    };
    st.ask(&st.to.notify.unsubscribe_push, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/notifications/vapid-public-key`.
#[utoipa::path(get, path = "/v1/notifications/vapid-public-key", operation_id = "vapid_public_key", tag = "notifications",
    responses(
        (status = 200, description = "The `applicationServerKey` for `pushManager.subscribe`", body = VapidKey),
        ServerProblems,
    ))]
pub(super) async fn vapid_key(st: State, Meta(meta): Meta) -> Result<HttpResponse, ApiError> {
    let key = st
        .ask(&st.to.notify.vapid_key, GetVapidKey { meta })
        .await?;
    Ok(HttpResponse::Ok().json(key))
}
