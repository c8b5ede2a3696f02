//! The notify context's vocabulary: channels, template keys and categories, the send request,
//! the inbox, preferences, templates as the admin API edits them, and the delivery log.

use std::collections::BTreeMap;

use actix::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::access::Caller;
use crate::commands::{Locale, Principal};
use crate::error::{CommandError, FieldError};
use crate::{RequestMeta, UserId};

/// Where a notification goes.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(example = "email")]
pub enum Channel {
    Email,
    InApp,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::InApp, Channel::Sms, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::InApp => "in_app",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(field, "invalid_channel", "use email, in_app, sms or push")
            })
    }

    /// The parts a template of this channel has.
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Channel::Email => &["subject", "text", "html"],
            Channel::InApp | Channel::Push => &["title", "body"],
            Channel::Sms => &["text"],
        }
    }
}

fn name_like(field: &str, raw: &str, what: &str, example: &str) -> Result<String, FieldError> {
    let ok = (1..=64).contains(&raw.len())
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(FieldError::new(
            field,
            &format!("invalid_{what}"),
            format!("a {what} is 1–64 lower-case letters, digits or _, starting with a letter, e.g. {example}"),
        ))
    }
}

/// A template's name, e.g. `generic`, `verify_email`, `booking_reminder`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TemplateKey(String);

impl TemplateKey {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        name_like(field, raw, "template", "booking_reminder").map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A notification category, declared in config (`security` always exists).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Category(String);

/// The category nobody can mute.
pub const SECURITY: &str = "security";

impl Category {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        name_like(field, raw, "category", "booking").map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One stored template's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateId {
    pub key: TemplateKey,
    pub channel: Channel,
    pub locale: Locale,
}

/// A template as the admin API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    #[schema(example = "generic")]
    pub key: String,
    pub channel: Channel,
    #[schema(example = "en")]
    pub locale: String,
    /// The channel's parts as MiniJinja sources: email `{subject, text, html}`, in-app and
    /// push `{title, body}`, SMS `{text}`.
    #[schema(value_type = Object)]
    pub parts: BTreeMap<String, String>,
    /// The variables the template may use.
    pub variables: Vec<String>,
    /// `shipped` (Keyward's own) or `api` (edited).
    pub source: String,
    pub updated_at: DateTime<Utc>,
}

/// Gateway → notify. One stored template (`templates:write`).
#[derive(Debug, Message)]
#[rtype(result = "Result<TemplateView, CommandError>")]
pub struct GetTemplate {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub id: TemplateId,
}

/// Gateway → notify. Creates or replaces a template (`templates:write`): every part the
/// channel has, and the declared variables (kept when absent). Refused with the line of a
/// syntax error, or naming a variable the template uses but does not declare. Every node
/// renders with it within a second. Replies whether it created one.
#[derive(Debug, Message)]
#[rtype(result = "Result<(TemplateView, bool), CommandError>")]
pub struct PutTemplate {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub id: TemplateId,
    pub parts: BTreeMap<String, String>,
    pub variables: Option<Vec<String>>,
}

/// Gateway → notify. Renders a stored template (or the `parts` given, unsaved) with
/// `variables` (`templates:write`).
#[derive(Debug, Message)]
#[rtype(result = "Result<BTreeMap<String, String>, CommandError>")]
pub struct PreviewTemplate {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub id: TemplateId,
    pub parts: Option<BTreeMap<String, String>>,
    pub variables: Map<String, Value>,
}

/// What a product asks to send.
#[derive(Clone, Debug, PartialEq)]
pub struct SendRequest {
    pub to: Vec<UserId>,
    pub template: TemplateKey,
    pub variables: Map<String, Value>,
    pub category: Category,
    /// None: the category's default channels.
    pub channels: Option<Vec<Channel>>,
    pub send_at: Option<DateTime<Utc>>,
    pub idempotency_key: String,
}

/// Recipients of one send at most.
pub const MAX_RECIPIENTS: usize = 1000;

impl SendRequest {
    /// Reads a send from its JSON (the HTTP body, or an AMQP message on `keyward.notify`):
    /// every bad member named at once.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        parse_send(body)
    }
}

const SEND_FIELDS: &[&str] = &[
    "to",
    "template",
    "variables",
    "category",
    "channels",
    "send_at",
    "idempotency_key",
];

fn string<'a>(f: &mut Vec<FieldError>, body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match body.get(key) {
        None | Some(Value::Null) => {
            f.push(FieldError::new(key, "required", format!("give {key}")));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            f.push(FieldError::new(
                key,
                "not_a_string",
                format!("{key} must be a string"),
            ));
            None
        }
    }
}

fn recipients(f: &mut Vec<FieldError>, v: Option<&Value>) -> Option<Vec<UserId>> {
    let Some(Value::Array(items)) = v else {
        f.push(FieldError::new(
            "to",
            "required",
            "to is an array of 1 to 1000 user ids",
        ));
        return None;
    };
    if items.is_empty() || items.len() > MAX_RECIPIENTS {
        f.push(FieldError::new(
            "to",
            "out_of_range",
            format!("to holds 1 to {MAX_RECIPIENTS} user ids; split larger sends"),
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let parsed = item.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok());
        match parsed {
            None => f.push(FieldError::new(
                &format!("to[{i}]"),
                "invalid_uuid",
                "a user id is a UUID",
            )),
            Some(u) if !seen.insert(u) => f.push(FieldError::new(
                &format!("to[{i}]"),
                "duplicate",
                "name each user once",
            )),
            Some(u) => out.push(UserId(u)),
        }
    }
    Some(out)
}

fn channels(f: &mut Vec<FieldError>, v: Option<&Value>) -> Option<Option<Vec<Channel>>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, c) in items.iter().enumerate() {
                let field = format!("channels[{i}]");
                match c.as_str().map(|s| Channel::parse(&field, s)) {
                    Some(Ok(c)) => out.push(c),
                    Some(Err(e)) => f.push(e),
                    None => f.push(FieldError::new(
                        &field,
                        "not_a_string",
                        "use email, in_app, sms or push",
                    )),
                }
            }
            Some(Some(out))
        }
        Some(_) => {
            f.push(FieldError::new(
                "channels",
                "invalid_type",
                "channels is a non-empty array such as [\"email\", \"in_app\"]; leave it out for the category's defaults",
            ));
            None
        }
    }
}

fn parse_send(body: &Map<String, Value>) -> Result<SendRequest, Vec<FieldError>> {
    let mut f = Vec::new();
    for key in body.keys().filter(|k| !SEND_FIELDS.contains(&k.as_str())) {
        f.push(FieldError::new(
            key,
            "unknown_field",
            format!("a send has {}", SEND_FIELDS.join(", ")),
        ));
    }
    let to = recipients(&mut f, body.get("to"));
    let template = string(&mut f, body, "template").and_then(|t| {
        TemplateKey::parse("template", t)
            .map_err(|e| f.push(e))
            .ok()
    });
    let category = string(&mut f, body, "category")
        .and_then(|c| Category::parse("category", c).map_err(|e| f.push(e)).ok());
    let variables = match body.get("variables") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            f.push(FieldError::new(
                "variables",
                "invalid_type",
                "variables is an object of the template's variables",
            ));
            None
        }
    };
    let channels = channels(&mut f, body.get("channels"));
    let send_at = match body.get("send_at") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(Some(t.with_timezone(&Utc))),
            Err(_) => {
                f.push(FieldError::new(
                    "send_at",
                    "invalid_time",
                    "send_at is an RFC 3339 time, e.g. 2026-12-24T09:00:00Z",
                ));
                None
            }
        },
        Some(_) => {
            f.push(FieldError::new(
                "send_at",
                "not_a_string",
                "send_at is an RFC 3339 time",
            ));
            None
        }
    };
    let key = string(&mut f, body, "idempotency_key").and_then(|k| {
        if (1..=200).contains(&k.chars().count()) {
            Some(k.to_owned())
        } else {
            f.push(FieldError::new(
                "idempotency_key",
                "out_of_range",
                "an idempotency_key has 1 to 200 characters",
            ));
            None
        }
    });
    let built = (|| {
        Some(SendRequest {
            to: to?,
            template: template?,
            variables: variables?,
            category: category?,
            channels: channels?,
            send_at: send_at?,
            idempotency_key: key?,
        })
    })();
    match built {
        Some(r) if f.is_empty() => Ok(r),
        _ => Err(f),
    }
}

/// The send API's reply: one notification id per recipient, in the request's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SendAccepted {
    pub ids: Vec<Uuid>,
}

/// Gateway → notify. A product's send (`notifications:send`, a client's scope or a user's
/// permission). The same idempotency key again answers the first reply; with another request
/// it is refused.
#[derive(Debug, Message)]
#[rtype(result = "Result<SendAccepted, CommandError>")]
pub struct SendNotification {
    pub meta: RequestMeta,
    pub caller: Caller,
    pub request: SendRequest,
}

/// Gateway → notify. Cancels a scheduled notification that has not gone out
/// (`notifications:send`): 404 for an unknown id, 409 `not_scheduled` once sent or cancelled.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct CancelScheduled {
    pub meta: RequestMeta,
    pub caller: Caller,
    pub id: Uuid,
}

/// One item of the caller's inbox.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InboxItem {
    pub id: Uuid,
    pub category: String,
    pub title: String,
    pub body: String,
    pub action_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// How many of the caller's items are unread (all pages).
    pub unread: u64,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Gateway → notify. The caller's inbox, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<InboxPage, CommandError>")]
pub struct ListInbox {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub unread_only: bool,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// What the live stream shows: a new item (with the unread count after it), or the unread
/// count alone.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LiveEvent {
    Notification { item: InboxItem, unread: u64 },
    Unread { unread: u64 },
}

impl LiveEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Notification { .. } => "notification",
            LiveEvent::Unread { .. } => "unread",
        }
    }
}

/// The caller's live inbox: the unread count now, then every new item as it arrives on any
/// node. Ends when the node stops or drops a consumer that does not keep up.
pub struct InboxStream {
    pub unread: u64,
    pub events: std::pin::Pin<Box<dyn futures_core::Stream<Item = LiveEvent> + Send>>,
}

impl std::fmt::Debug for InboxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxStream")
            .field("unread", &self.unread)
            .finish_non_exhaustive()
    }
}

/// Gateway → notify. Opens the caller's live inbox.
#[derive(Debug, Message)]
#[rtype(result = "Result<InboxStream, CommandError>")]
pub struct OpenInboxStream {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → notify. Marks one of the caller's items read; 404 when it is not theirs.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct MarkRead {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub id: Uuid,
}

/// Gateway → notify. Marks every item of the caller read.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct MarkAllRead {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Category → channel → wanted.
pub type Preferences = BTreeMap<String, BTreeMap<Channel, bool>>;

/// Gateway → notify. The caller's preferences for every declared category and channel: what
/// they chose, else the category's default.
#[derive(Debug, Message)]
#[rtype(result = "Result<Preferences, CommandError>")]
pub struct GetPreferences {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → notify. Sets the choices given (others stay); `security` cannot be turned off.
/// Replies as [`GetPreferences`].
#[derive(Debug, Message)]
#[rtype(result = "Result<Preferences, CommandError>")]
pub struct PutPreferences {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub preferences: Preferences,
}

/// A browser's push subscription as the API shows it (never its keys).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PushSubscriptionView {
    pub id: Uuid,
    pub endpoint: String,
    pub created_at: DateTime<Utc>,
}

/// Gateway → notify. Keeps a browser's subscription (`PushSubscription.toJSON()`: `endpoint`
/// and `keys.p256dh`, `keys.auth`) for the caller; the same endpoint again replaces it.
#[derive(Debug, Message)]
#[rtype(result = "Result<PushSubscriptionView, CommandError>")]
pub struct SubscribePush {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// Gateway → notify. Forgets one of the caller's subscriptions; 404 when it is not theirs.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct UnsubscribePush {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub id: Uuid,
}

/// The application server key browsers subscribe with (`applicationServerKey`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VapidKey {
    /// The uncompressed P-256 public key, base64url without padding.
    pub public_key: String,
}

/// Gateway → notify. The VAPID public key (the same on every node: derived from the master
/// key).
#[derive(Debug, Message)]
#[rtype(result = "Result<VapidKey, CommandError>")]
pub struct GetVapidKey {
    pub meta: RequestMeta,
}

/// The status of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "sent")]
pub enum DeliveryStatus {
    Queued,
    Scheduled,
    Sent,
    Failed,
    Dead,
    /// Not sent: muted by a preference, or no address on that channel.
    Skipped,
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 7] = [
        Self::Queued,
        Self::Scheduled,
        Self::Sent,
        Self::Failed,
        Self::Dead,
        Self::Skipped,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "invalid_status",
                    "use queued, scheduled, sent, failed, dead, skipped or cancelled",
                )
            })
    }
}

/// One row of the delivery log.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    pub notification_id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub channel: Channel,
    pub category: String,
    pub template: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The provider's last answer, or why it was skipped.
    pub answer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// Gateway → notify. The delivery log, newest first (`users:read`).
#[derive(Debug, Message)]
#[rtype(result = "Result<DeliveryPage, CommandError>")]
pub struct ListDeliveries {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub user_id: Option<UserId>,
    pub status: Option<DeliveryStatus>,
    pub cursor: Option<String>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn channels_and_statuses_read_back_as_written() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse("c", c.as_str()).unwrap(), c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse("s", s.as_str()).unwrap(), s);
        }
        assert_eq!(
            Channel::parse("channels[0]", "fax").unwrap_err().field,
            "channels[0]"
        );
    }

    #[test]
    fn template_keys_and_categories_are_snake_case_names() {
        assert!(TemplateKey::parse("t", "booking_reminder").is_ok());
        for bad in ["", "Booking", "1st", "a-b", "ä", &"x".repeat(65)] {
            assert!(TemplateKey::parse("t", bad).is_err(), "{bad}");
            assert!(Category::parse("c", bad).is_err(), "{bad}");
        }
    }
}
