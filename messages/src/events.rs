//! Domain events (past tense), email jobs, and the envelope both travel in.
//!
//! Events go to `keyward.events` (routing key = type) and never carry secrets: no password,
//! hash, one-time token or refresh token. One-time links travel only inside [`EmailJob`]s, which
//! go to the `keyward.notify.email` work queue (with the [`PushJob`]s).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::commands::Locale;
use crate::values::{SessionId, UserId};

/// Version of every `data` shape below; bumped on an incompatible change.
pub const EVENT_VERSION: u32 = 1;

/// Why a session ended; carried as `reason` on `session.revoked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    RevokedByUser,
    PasswordChanged,
    PasswordReset,
    ReuseDetected,
    AccountBlocked,
    /// The owner asked for the account to be deleted.
    AccountDeleted,
    /// An administrator ended every session of the user.
    RevokedByAdmin,
}

/// Something that happened. The serde tag is the routing key.
/// Events written before `method` existed came from password registrations.
fn password_method() -> String {
    "password".to_owned()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    #[serde(rename = "user.registered")]
    UserRegistered {
        user_id: UserId,
        email: String,
        username: Option<String>,
        locale: Locale,
        /// `password`, or `oauth:<provider>` for an account made by a social login.
        #[serde(default = "password_method")]
        method: String,
    },
    #[serde(rename = "user.email_verified")]
    UserEmailVerified { user_id: UserId, email: String },
    #[serde(rename = "user.logged_in")]
    UserLoggedIn {
        user_id: UserId,
        session_id: SessionId,
        ip: Option<String>,
        user_agent: Option<String>,
        /// How the user proved who they are (`pwd`, `otp`, …).
        #[serde(default)]
        amr: Vec<String>,
    },
    #[serde(rename = "user.login_failed")]
    UserLoginFailed {
        user_id: UserId,
        ip: Option<String>,
        user_agent: Option<String>,
    },
    #[serde(rename = "user.throttled")]
    UserThrottled {
        user_id: UserId,
        ip: Option<String>,
        retry_after_secs: u64,
    },
    #[serde(rename = "user.password_changed")]
    UserPasswordChanged {
        user_id: UserId,
        /// "change" (by the user) or "reset" (through a reset link).
        via: String,
    },
    /// An administrator blocked the account; its sessions end (each with `session.revoked`).
    #[serde(rename = "user.blocked")]
    UserBlocked {
        user_id: UserId,
        reason: Option<String>,
        /// The administrator, or none when blocked from the CLI or by a service client.
        by: Option<UserId>,
        /// The service client that blocked it, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_client: Option<String>,
    },
    #[serde(rename = "user.unblocked")]
    UserUnblocked {
        user_id: UserId,
        by: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_client: Option<String>,
    },
    /// The user changed their profile. `changed` names every changed field; `values` carries
    /// the new values of those that anyone may see (none of a profile that is not public).
    #[serde(rename = "profile.updated")]
    ProfileUpdated {
        user_id: UserId,
        changed: Vec<String>,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        values: serde_json::Map<String, serde_json::Value>,
    },
    /// The account was erased (after a self-deletion's grace period, or by an administrator).
    #[serde(rename = "user.deleted")]
    UserDeleted { user_id: UserId },
    #[serde(rename = "session.revoked")]
    SessionRevoked {
        user_id: UserId,
        session_id: SessionId,
        reason: RevokeReason,
        ip: Option<String>,
        user_agent: Option<String>,
    },
    #[serde(rename = "session.reuse_detected")]
    SessionReuseDetected {
        user_id: UserId,
        session_id: SessionId,
        ip: Option<String>,
        user_agent: Option<String>,
    },
    /// The user was granted a role; `by` is the administrator (none from the CLI, at
    /// registration or by a service client, which `by_client` names).
    #[serde(rename = "role.granted")]
    RoleGranted {
        user_id: UserId,
        role: String,
        by: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_client: Option<String>,
    },
    #[serde(rename = "role.revoked")]
    RoleRevoked {
        user_id: UserId,
        role: String,
        by: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_client: Option<String>,
    },
    /// A service client was deleted or its secret replaced (`deleted: false`). `user_id` is
    /// the administrator (none from the CLI).
    #[serde(rename = "client.updated")]
    ClientUpdated {
        user_id: Option<UserId>,
        client_id: String,
        #[serde(default)]
        deleted: bool,
    },
    /// A notification went out on one channel (for email: the SMTP server took it).
    #[serde(rename = "notification.sent")]
    NotificationSent {
        user_id: UserId,
        notification_id: Uuid,
        channel: String,
        category: String,
        template: String,
    },
    /// A notification could not be delivered on one channel and will not be retried.
    #[serde(rename = "notification.failed")]
    NotificationFailed {
        user_id: UserId,
        notification_id: Uuid,
        channel: String,
        category: String,
        template: String,
        reason: String,
    },
    /// An identity at a social login provider was linked to the account.
    #[serde(rename = "identity.linked")]
    IdentityLinked {
        user_id: UserId,
        identity_id: Uuid,
        provider: String,
    },
    /// An identity at a social login provider was unlinked.
    #[serde(rename = "identity.unlinked")]
    IdentityUnlinked {
        user_id: UserId,
        identity_id: Uuid,
        provider: String,
    },
    /// A second factor was confirmed (`factor_type`: `totp`, `sms`, `email`, `passkey`).
    #[serde(rename = "mfa.enrolled")]
    MfaEnrolled {
        user_id: UserId,
        factor_id: Uuid,
        factor_type: String,
    },
    /// A second factor was removed, by its user or (`factor_type` `all`) an administrator.
    #[serde(rename = "mfa.removed")]
    MfaRemoved {
        user_id: UserId,
        factor_id: Option<Uuid>,
        factor_type: String,
    },
    /// A signing key was rotated in: published in JWKS from now, signing from `signs_from`.
    /// Verifiers that cache JWKS may refresh on it; every node reloads its keys.
    #[serde(rename = "keys.rotated")]
    KeysRotated {
        kid: String,
        signs_from: chrono::DateTime<chrono::Utc>,
    },
    /// A role's permissions changed, or it was deleted (`deleted: true`). `user_id` is the
    /// administrator who changed it (none when it changed in the configuration).
    #[serde(rename = "role.updated")]
    RoleUpdated {
        user_id: Option<UserId>,
        role: String,
        permissions: Vec<String>,
        #[serde(default)]
        deleted: bool,
    },
}

impl DomainEvent {
    /// The event type, which is also its routing key on `keyward.events`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UserRegistered { .. } => "user.registered",
            Self::UserEmailVerified { .. } => "user.email_verified",
            Self::UserLoggedIn { .. } => "user.logged_in",
            Self::UserLoginFailed { .. } => "user.login_failed",
            Self::UserThrottled { .. } => "user.throttled",
            Self::UserPasswordChanged { .. } => "user.password_changed",
            Self::UserBlocked { .. } => "user.blocked",
            Self::UserUnblocked { .. } => "user.unblocked",
            Self::ProfileUpdated { .. } => "profile.updated",
            Self::UserDeleted { .. } => "user.deleted",
            Self::SessionRevoked { .. } => "session.revoked",
            Self::SessionReuseDetected { .. } => "session.reuse_detected",
            Self::RoleGranted { .. } => "role.granted",
            Self::RoleRevoked { .. } => "role.revoked",
            Self::RoleUpdated { .. } => "role.updated",
            Self::ClientUpdated { .. } => "client.updated",
            Self::NotificationSent { .. } => "notification.sent",
            Self::NotificationFailed { .. } => "notification.failed",
            Self::IdentityLinked { .. } => "identity.linked",
            Self::IdentityUnlinked { .. } => "identity.unlinked",
            Self::MfaEnrolled { .. } => "mfa.enrolled",
            Self::MfaRemoved { .. } => "mfa.removed",
            Self::KeysRotated { .. } => "keys.rotated",
        }
    }

    /// The user the event is about (the administrator, for a role's definition).
    pub fn user_id(&self) -> Option<UserId> {
        Some(match self {
            Self::UserRegistered { user_id, .. }
            | Self::UserEmailVerified { user_id, .. }
            | Self::UserLoggedIn { user_id, .. }
            | Self::UserLoginFailed { user_id, .. }
            | Self::UserThrottled { user_id, .. }
            | Self::UserPasswordChanged { user_id, .. }
            | Self::UserBlocked { user_id, .. }
            | Self::UserUnblocked { user_id, .. }
            | Self::ProfileUpdated { user_id, .. }
            | Self::UserDeleted { user_id }
            | Self::SessionRevoked { user_id, .. }
            | Self::SessionReuseDetected { user_id, .. }
            | Self::RoleGranted { user_id, .. }
            | Self::RoleRevoked { user_id, .. }
            | Self::NotificationSent { user_id, .. }
            | Self::NotificationFailed { user_id, .. }
            | Self::IdentityLinked { user_id, .. }
            | Self::IdentityUnlinked { user_id, .. }
            | Self::MfaEnrolled { user_id, .. }
            | Self::MfaRemoved { user_id, .. } => *user_id,
            Self::RoleUpdated { user_id, .. } | Self::ClientUpdated { user_id, .. } => {
                return *user_id
            }
            Self::KeysRotated { .. } => return None,
        })
    }

    /// The `data` member of the envelope.
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }
}

/// Which email to send. Templates live in the notify context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTemplate {
    /// A link to verify the address (`variables.link`).
    VerifyEmail,
    /// Someone tried to register an address that already has an account.
    AccountExists,
    /// A link to reset the password (`variables.link`).
    PasswordReset,
    /// The password was changed or reset.
    PasswordChanged,
    /// An administrator created the account: a link that sets the password (`variables.link`).
    Invitation,
}

impl EmailTemplate {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::AccountExists => "account_exists",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::Invitation => "invitation",
        }
    }
}

/// A unit of work for the mailer: who, which template, which language, which values. May
/// carry a one-time link, so it is only ever sent to the email work queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmailJob {
    pub to: String,
    /// The stored template's key: an [`EmailTemplate`]'s, `generic`, or a product's own.
    pub template: String,
    pub locale: Locale,
    #[serde(default)]
    pub variables: BTreeMap<String, serde_json::Value>,
    /// The delivery-log row this mail is, when a product's notification sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Uuid>,
}

/// A Web Push message for one browser subscription of a delivery. Carries the rendered
/// title and body, so it goes only to the work queue, never to `keyward.events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushJob {
    /// The delivery-log row it is part of.
    pub delivery: Uuid,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    /// The JSON the browser's service worker receives:
    /// `{id, category, title, body, action_url}`.
    pub payload: serde_json::Value,
    /// The template, for the message type (`push.<template>`).
    pub template: String,
}

/// An SMS text for one phone. Carries the rendered text, so like a [`PushJob`] it goes only
/// to the work queue, never to `keyward.events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmsJob {
    /// The delivery-log row it is, when a product's notification sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Uuid>,
    /// E.164, e.g. `+79991234567`.
    pub to: String,
    /// The rendered text; when absent, the stored SMS template is rendered with `variables`
    /// in `locale` at delivery (as email jobs are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The template: the message type is `sms.<template>`.
    pub template: String,
    #[serde(default)]
    pub locale: Locale,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, serde_json::Value>,
}

/// What the outbox holds and the bus carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    Event(DomainEvent),
    Email(EmailJob),
    Push(PushJob),
    Sms(SmsJob),
}

impl Outgoing {
    /// The routing key / message type: the event type, or `email.<template>`.
    pub fn message_type(&self) -> String {
        match self {
            Self::Event(e) => e.event_type().to_owned(),
            Self::Email(j) => format!("email.{}", j.template),
            Self::Push(j) => format!("push.{}", j.template),
            Self::Sms(j) => format!("sms.{}", j.template),
        }
    }
}

/// The message types of delivery jobs: `email.<template>`, `push.<template>`, `sms.<template>`.
pub const JOB_PREFIXES: [&str; 3] = ["email.", "push.", "sms."];

/// The JSON envelope of every message Keyward publishes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUID v7; also the AMQP message_id, and the key consumers dedupe on.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub correlation_id: Option<String>,
    /// The HTTP request that caused it (its `X-Request-Id`), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub data: serde_json::Value,
}

impl Envelope {
    pub fn new(
        id: Uuid,
        occurred_at: DateTime<Utc>,
        correlation_id: Option<String>,
        msg: &Outgoing,
    ) -> Self {
        let data = match msg {
            Outgoing::Event(e) => e.data(),
            Outgoing::Email(j) => serde_json::to_value(j).unwrap_or_default(),
            Outgoing::Push(j) => serde_json::to_value(j).unwrap_or_default(),
            Outgoing::Sms(j) => serde_json::to_value(j).unwrap_or_default(),
        };
        Self {
            id,
            kind: msg.message_type(),
            version: EVENT_VERSION,
            occurred_at,
            source: "keyward".into(),
            correlation_id,
            request_id: None,
            data,
        }
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// Whether it is a delivery job (email, push or SMS) for the workers' queue rather than
    /// an event.
    pub fn is_job(&self) -> bool {
        JOB_PREFIXES.iter().any(|p| self.kind.starts_with(p))
    }

    /// Decodes the envelope's payload back into what it carries.
    pub fn decode(&self) -> Result<Outgoing, serde_json::Error> {
        if self.kind.starts_with("email.") {
            serde_json::from_value(self.data.clone()).map(Outgoing::Email)
        } else if self.kind.starts_with("push.") {
            serde_json::from_value(self.data.clone()).map(Outgoing::Push)
        } else if self.kind.starts_with("sms.") {
            serde_json::from_value(self.data.clone()).map(Outgoing::Sms)
        } else {
            serde_json::from_value(serde_json::json!({"type": self.kind, "data": self.data}))
                .map(Outgoing::Event)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_envelope() {
        let ev = DomainEvent::SessionRevoked {
            user_id: UserId::new(),
            session_id: SessionId::new(),
            reason: RevokeReason::Logout,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
        };
        let env = Envelope::new(
            Uuid::now_v7(),
            Utc::now(),
            Some("req-1".into()),
            &Outgoing::Event(ev.clone()),
        );
        assert_eq!(env.kind, "session.revoked");
        assert_eq!(env.data["reason"], "logout");
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back.decode().unwrap(), Outgoing::Event(ev));
    }

    #[test]
    fn an_email_job_round_trips_through_its_envelope() {
        let job = EmailJob {
            to: "a@example.com".into(),
            template: EmailTemplate::VerifyEmail.as_str().into(),
            locale: Locale::Ru,
            variables: [("link".to_string(), "http://x/?token=abc".into())].into(),
            delivery: None,
        };
        let env = Envelope::new(
            Uuid::now_v7(),
            Utc::now(),
            None,
            &Outgoing::Email(job.clone()),
        );
        assert_eq!(env.kind, "email.verify_email");
        assert_eq!(env.decode().unwrap(), Outgoing::Email(job));
    }
}
