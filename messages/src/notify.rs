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
