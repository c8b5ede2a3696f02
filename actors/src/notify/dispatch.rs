//! Deciding what each recipient gets on each channel, now: a send without `send_at` does it at
//! once, the scheduler when a scheduled send falls due. Either way the outcome is written in
//! one transaction with the inbox items, email jobs and events it causes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyward_messages::commands::Locale;
use keyward_messages::events::{DomainEvent, EmailJob, Outgoing, PushJob, SmsJob};
use keyward_messages::notify::Channel;
use keyward_messages::{RequestMeta, UserId};
use keyward_storage::{
    DeliveryRecord, InboxRecord, Preferences, PushSubscriptionRecord, Tx, UserRecord,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{policy, templates, NotifyDeps as Deps};
use crate::error::{chain, HandlerError};

/// Scheduled sends taken per transaction.
const DUE_BATCH: u64 = 200;

/// What is sent, the same to every recipient.
pub(super) struct Plan<'a> {
    pub template: &'a str,
    pub category: &'a str,
    pub variables: &'a Map<String, Value>,
}

/// One recipient's notification and its deliveries (id, channel).
pub(super) struct Planned {
    pub notification_id: Uuid,
    pub user_id: UserId,
    pub channels: Vec<(Uuid, Channel)>,
}

/// What became of one delivery.
pub(super) struct Outcome {
    pub id: Uuid,
    pub notification_id: Uuid,
    pub user_id: UserId,
    pub channel: Channel,
    pub status: &'static str,
    pub answer: Option<String>,
}

impl Outcome {
    pub fn record(self, plan: &Plan<'_>, now: DateTime<Utc>) -> DeliveryRecord {
        DeliveryRecord {
            id: self.id,
            notification_id: self.notification_id,
            user_id: self.user_id,
            channel: self.channel.as_str().to_owned(),
            category: plan.category.to_owned(),
            template: plan.template.to_owned(),
            attempts: self.attempts(),
            status: self.status.to_owned(),
            answer: self.answer,
            created_at: now,
            updated_at: now,
        }
    }

    fn attempts(&self) -> i32 {
        i32::from(matches!(self.status, "sent" | "dead"))
    }
}

/// What a dispatch writes besides the log.
#[derive(Default)]
pub(super) struct Batch {
    pub deliveries: Vec<DeliveryRecord>,
    pub inbox: Vec<InboxRecord>,
    pub outgoing: Vec<Outgoing>,
}

impl Batch {
    /// Writes the inbox items and the outbox messages inside `tx`.
    pub async fn write(self, deps: &Deps, tx: &Tx, meta: &RequestMeta) -> Result<(), HandlerError> {
        tx.notices().insert_inbox(&self.inbox).await?;
        for o in self.outgoing {
            deps.outbox.enqueue(tx, meta, o).await?;
        }
        Ok(())
    }
}

/// A delivery that can never be made: `notification.failed`, and its log status.
fn failed(
    batch: &mut Batch,
    plan: &Plan<'_>,
    p: &Planned,
    ch: Channel,
    reason: String,
) -> (&'static str, Option<String>) {
    batch
        .outgoing
        .push(Outgoing::Event(DomainEvent::NotificationFailed {
            user_id: p.user_id,
            notification_id: p.notification_id,
            channel: ch.as_str().to_owned(),
            category: plan.category.to_owned(),
            template: plan.template.to_owned(),
            reason: reason.clone(),
        }));
    ("dead", Some(reason))
}

fn locale_of(u: &UserRecord) -> Locale {
    if u.locale == "ru" {
        Locale::Ru
    } else {
        Locale::En
    }
}

/// Decides every delivery of `planned` now, adding what they cause to `batch`.
/// What a dispatch reads about its recipients.
pub(super) struct Recipients<'a> {
    pub users: &'a [UserRecord],
    pub prefs: &'a HashMap<UserId, Preferences>,
    pub push: &'a HashMap<UserId, Vec<PushSubscriptionRecord>>,
    /// Verified phone numbers.
    pub phones: &'a HashMap<UserId, String>,
}

/// A template's parts rendered, or why they could not be.
type Rendered = Result<BTreeMap<String, String>, String>;

/// Renders `plan`'s template for one channel and locale once per dispatch.
async fn rendered_for(
    deps: &Deps,
    plan: &Plan<'_>,
    cache: &mut HashMap<(Channel, Locale), Rendered>,
    ch: Channel,
    locale: Locale,
) -> Result<Rendered, HandlerError> {
    if let Some(p) = cache.get(&(ch, locale)) {
        return Ok(p.clone());
    }
    let p = match deps
        .templates
        .get(&deps.store, plan.template, ch, locale)
        .await?
    {
        None => Err(format!(
            "no {} template is named {}",
            ch.as_str(),
            plan.template
        )),
        Some(t) => templates::render(&t.parts, plan.variables).map_err(|e| e.message),
    };
    cache.insert((ch, locale), p.clone());
    Ok(p)
}

pub(super) async fn dispatch(
    deps: &Deps,
    plan: &Plan<'_>,
    planned: &[Planned],
    to: &Recipients<'_>,
    now: DateTime<Utc>,
    batch: &mut Batch,
) -> Result<Vec<Outcome>, HandlerError> {
    let (users, prefs) = (to.users, to.prefs);
    let users: HashMap<UserId, &UserRecord> = users.iter().map(|u| (u.id, u)).collect();
    let action_url = plan
        .variables
        .get("action_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut rendered = HashMap::new();
    let none = Preferences::new();
    let mut out = Vec::new();
    for p in planned {
        let user = users.get(&p.user_id).copied();
        let stored = prefs.get(&p.user_id).unwrap_or(&none);
        for (id, ch) in &p.channels {
            let (status, answer) = match user {
                None => ("skipped", Some("no such user".to_owned())),
                Some(_) if !policy::wants(stored, plan.category, *ch) => (
                    "skipped",
                    Some("muted by the user's preferences".to_owned()),
                ),
                Some(u) => match ch {
                    Channel::Email if !u.email_verified => (
                        "skipped",
                        Some("the email address is not verified".to_owned()),
                    ),
                    Channel::Email => {
                        batch.outgoing.push(Outgoing::Email(EmailJob {
                            to: u.email.as_str().to_owned(),
                            template: plan.template.to_owned(),
                            locale: locale_of(u),
                            variables: plan.variables.clone().into_iter().collect(),
                            delivery: Some(*id),
                        }));
                        ("queued", None)
                    }
                    Channel::InApp => {
                        let locale = locale_of(u);
                        let parts = rendered_for(deps, plan, &mut rendered, *ch, locale).await?;
                        match parts {
                            Ok(parts) => {
                                let part = |n: &str| parts.get(n).cloned().unwrap_or_default();
                                batch.inbox.push(InboxRecord {
                                    id: p.notification_id,
                                    user_id: p.user_id,
                                    category: plan.category.to_owned(),
                                    title: part("title"),
                                    body: part("body"),
                                    action_url: action_url.clone(),
                                    created_at: now,
                                    read_at: None,
                                });
                                batch.outgoing.push(Outgoing::Event(
                                    DomainEvent::NotificationSent {
                                        user_id: p.user_id,
                                        notification_id: p.notification_id,
                                        channel: ch.as_str().to_owned(),
                                        category: plan.category.to_owned(),
                                        template: plan.template.to_owned(),
                                    },
                                ));
                                ("sent", None)
                            }
                            Err(reason) => failed(batch, plan, p, *ch, reason),
                        }
                    }
                    Channel::Sms => match to.phones.get(&p.user_id) {
                        None => (
                            "skipped",
                            Some("the user has no verified phone number".to_owned()),
                        ),
                        Some(phone) => {
                            match rendered_for(deps, plan, &mut rendered, *ch, locale_of(u)).await?
                            {
                                Ok(parts) => {
                                    batch.outgoing.push(Outgoing::Sms(SmsJob {
                                        delivery: Some(*id),
                                        to: phone.clone(),
                                        text: Some(parts.get("text").cloned().unwrap_or_default()),
                                        template: plan.template.to_owned(),
                                        locale: locale_of(u),
                                        variables: Default::default(),
                                    }));
                                    ("queued", None)
                                }
                                Err(reason) => failed(batch, plan, p, *ch, reason),
                            }
                        }
                    },
                    Channel::Push => {
                        let subs = to.push.get(&p.user_id).map_or(&[][..], Vec::as_slice);
                        if subs.is_empty() {
                            (
                                "skipped",
                                Some("the user has no push subscription".to_owned()),
                            )
                        } else {
                            match rendered_for(deps, plan, &mut rendered, *ch, locale_of(u)).await?
                            {
                                Ok(parts) => {
                                    let part = |n: &str| parts.get(n).cloned().unwrap_or_default();
                                    let payload = serde_json::json!({
                                        "id": p.notification_id,
                                        "category": plan.category,
                                        "title": part("title"),
                                        "body": part("body"),
                                        "action_url": action_url,
                                    });
                                    for s in subs {
                                        batch.outgoing.push(Outgoing::Push(PushJob {
                                            delivery: *id,
                                            endpoint: s.endpoint.clone(),
                                            p256dh: s.p256dh.clone(),
                                            auth: s.auth.clone(),
                                            payload: payload.clone(),
                                            template: plan.template.to_owned(),
                                        }));
                                    }
                                    ("queued", None)
                                }
                                Err(reason) => failed(batch, plan, p, *ch, reason),
                            }
                        }
                    }
                },
            };
            out.push(Outcome {
                id: *id,
                notification_id: p.notification_id,
                user_id: p.user_id,
                channel: *ch,
                status,
                answer,
            });
        }
    }
    Ok(out)
}

/// Dispatches the scheduled sends that fell due, a batch per transaction; how many.
pub async fn fire_due(deps: &Deps) -> Result<usize, HandlerError> {
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    let due = tx.notices().due(now, DUE_BATCH).await?;
    if due.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let ids: Vec<UserId> = due.iter().map(|d| d.user_id).collect();
    let users = tx.users().by_ids(&ids).await?;
    let prefs = tx.notices().preferences_of(&ids).await?;
    let push = tx.notices().push_subscriptions_of(&ids).await?;
    let phones = tx.profiles().verified_phones_of(&ids).await?;
    let to = Recipients {
        users: &users,
        prefs: &prefs,
        push: &push,
        phones: &phones,
    };
    let mut batch = Batch::default();
    for d in &due {
        let waiting: Vec<(Uuid, Channel)> = tx
            .notices()
            .deliveries_of(d.notification_id)
            .await?
            .into_iter()
            .filter(|r| r.status == "scheduled")
            .filter_map(|r| Channel::parse("", &r.channel).ok().map(|c| (r.id, c)))
            .collect();
        let plan = Plan {
            template: &d.template,
            category: &d.category,
            variables: &d.variables,
        };
        let planned = [Planned {
            notification_id: d.notification_id,
            user_id: d.user_id,
            channels: waiting,
        }];
        for o in dispatch(deps, &plan, &planned, &to, now, &mut batch).await? {
            let attempts = o.attempts();
            tx.notices()
                .set_delivery(o.id, o.status, attempts, o.answer.as_deref(), now)
                .await?;
        }
        tx.notices().unschedule(d.notification_id).await?;
    }
    batch.write(deps, &tx, &RequestMeta::default()).await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(due.len())
}

/// Fires due sends every `every` until the node stops. A failure is logged and tried again
/// next time: the rows stay on the schedule until a transaction that sent them commits.
pub async fn run_schedule(deps: std::sync::Arc<Deps>, every: Duration) {
    loop {
        match fire_due(&deps).await {
            // A full batch: more may be due.
            Ok(n) if n as u64 == DUE_BATCH => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %chain(&e), "scheduled notifications: a pass failed; retrying")
            }
        }
        tokio::time::sleep(every).await;
    }
}
