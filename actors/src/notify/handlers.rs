//! The notify context's message table: one handler per message.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_messages::access::Caller;
use keyward_messages::commands::Locale;
use keyward_messages::notify::*;
use keyward_messages::{codes, CommandError, FieldError};
use keyward_storage::{
    DeliveryFilter, InboxRecord, ScheduledRecord, SendRecord, StorageError, TemplateRecord,
};
use uuid::Uuid;

use super::dispatch::{dispatch, Batch, Outcome, Plan, Planned, Recipients};
use super::templates;
use super::{policy, Notifications, NotifyDeps as Deps};
use crate::error::HandlerError;

const SEND: &str = "notifications:send";
const TEMPLATES: &str = "templates:write";

fn invalid(errors: Vec<FieldError>) -> HandlerError {
    HandlerError::from(CommandError::invalid(errors))
}

fn field(name: &str, code: &str, message: impl Into<String>) -> HandlerError {
    HandlerError::from(CommandError::field(name, code, message))
}

fn not_found(code: &'static str, detail: impl Into<String>) -> HandlerError {
    HandlerError::from(CommandError::NotFound {
        code,
        detail: detail.into(),
    })
}

fn cursor(raw: Option<&str>) -> Result<Option<Uuid>, HandlerError> {
    raw.map(|c| {
        Uuid::parse_str(c).map_err(|_| {
            field(
                "cursor",
                "invalid_cursor",
                "pass the next_cursor of the previous page unchanged",
            )
        })
    })
    .transpose()
}

/// Who sent it, for idempotency keys (each caller has its own), once it may send.
async fn sender(deps: &Deps, caller: &Caller) -> Result<String, HandlerError> {
    match caller {
        Caller::Client(c) if c.scopes.iter().any(|s| s == SEND) => {
            Ok(format!("client:{}", c.client_id))
        }
        Caller::Client(_) => Err(HandlerError::from(CommandError::Forbidden {
            code: codes::FORBIDDEN,
            detail: format!("this needs the scope {SEND}"),
        })),
        Caller::User(p) => {
            deps.access.require(p.user_id, SEND).await?;
            Ok(format!("user:{}", p.user_id))
        }
    }
}

/// A digest of everything a send asks for, so one idempotency key cannot mean two requests.
fn fingerprint(r: &SendRequest) -> String {
    let canonical = serde_json::json!({
        "to": r.to,
        "template": r.template.as_str(),
        "variables": r.variables,
        "category": r.category.as_str(),
        "channels": r.channels,
        "send_at": r.send_at,
    });
    crate::tokens::sha256_hex(&canonical.to_string())
}

fn replay(prev: SendRecord, fingerprint: &str) -> Result<SendAccepted, HandlerError> {
    if prev.fingerprint == fingerprint {
        Ok(SendAccepted { ids: prev.ids })
    } else {
        Err(HandlerError::from(CommandError::Conflict {
            code: "idempotency_key_reused",
            detail: "this idempotency_key was used for a different request; use a new key for a new request".into(),
            field: Some("idempotency_key".into()),
        }))
    }
}

/// The templates a send uses, one per channel, checked against its variables.
async fn send_templates(
    deps: &Deps,
    r: &SendRequest,
    channels: &[Channel],
) -> Result<(), HandlerError> {
    let mut errors = Vec::new();
    for ch in channels {
        let t = deps
            .templates
            .get(&deps.store, r.template.as_str(), *ch, Locale::En)
            .await?;
        let Some(t) = t else {
            errors.push(FieldError::new(
                "template",
                "unknown_template",
                format!(
                    "there is no {} template named {}; create it with PUT /v1/admin/templates/{}/{}/en",
                    ch.as_str(),
                    r.template.as_str(),
                    r.template.as_str(),
                    ch.as_str()
                ),
            ));
            continue;
        };
        let unknown = templates::unknown_variables(&r.variables, &t.variables);
        if unknown.is_empty() {
            if let Err(e) = templates::render(&t.parts, &r.variables) {
                errors.push(e);
            }
        }
        for v in unknown {
            errors.push(FieldError::new(
                &format!("variables.{v}"),
                "unknown_variable",
                format!(
                    "the {} template {} takes {}",
                    ch.as_str(),
                    r.template.as_str(),
                    t.variables.join(", ")
                ),
            ));
        }
    }
    errors.dedup_by(|a, b| a.field == b.field && a.code == b.code);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(errors))
    }
}

async fn send(deps: Arc<Deps>, m: SendNotification) -> Result<SendAccepted, HandlerError> {
    let caller = sender(&deps, &m.caller).await?;
    let r = &m.request;
    let print = fingerprint(r);
    // A repeat is found on the read-only connections: the writer is for the send itself.
    let seen = deps.store.reads().notices();
    if let Some(prev) = seen.send_request(&caller, &r.idempotency_key).await? {
        return replay(prev, &print);
    }
    let now = (deps.clock)();
    let later = r.send_at.filter(|at| *at > now);
    if later.is_some_and(|at| at > now + chrono::Duration::days(366)) {
        return Err(field(
            "send_at",
            "out_of_range",
            "send_at is at most a year ahead",
        ));
    }
    let Some(defaults) = deps.categories.defaults(r.category.as_str()) else {
        return Err(field(
            "category",
            "unknown_category",
            format!(
                "the categories are {}; declare others in [[notify.categories]]",
                deps.categories
                    .0
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let mut channels = r.channels.clone().unwrap_or_else(|| defaults.to_vec());
    channels.sort();
    channels.dedup();
    send_templates(&deps, r, &channels).await?;

    let plan = Plan {
        template: r.template.as_str(),
        category: r.category.as_str(),
        variables: &r.variables,
    };
    let mut batch = Batch::default();
    let mut schedule = Vec::new();
    let mut ids = Vec::with_capacity(r.to.len());
    let planned: Vec<Planned> =
        r.to.iter()
            .map(|uid| {
                let notification_id = Uuid::now_v7();
                ids.push(notification_id);
                Planned {
                    notification_id,
                    user_id: *uid,
                    channels: channels.iter().map(|c| (Uuid::now_v7(), *c)).collect(),
                }
            })
            .collect();
    match later {
        None => {
            let reads = deps.store.reads();
            let users = reads.users().by_ids(&r.to).await?;
            let prefs = reads.notices().preferences_of(&r.to).await?;
            let push = if channels.contains(&Channel::Push) {
                reads.notices().push_subscriptions_of(&r.to).await?
            } else {
                Default::default()
            };
            let phones = if channels.contains(&Channel::Sms) {
                reads.profiles().verified_phones_of(&r.to).await?
            } else {
                Default::default()
            };
            let to = Recipients {
                users: &users,
                prefs: &prefs,
                push: &push,
                phones: &phones,
            };
            let outcomes = dispatch(&deps, &plan, &planned, &to, now, &mut batch).await?;
            batch.deliveries = outcomes.into_iter().map(|o| o.record(&plan, now)).collect();
        }
        Some(at) => {
            for p in &planned {
                schedule.push(ScheduledRecord {
                    notification_id: p.notification_id,
                    user_id: p.user_id,
                    due_at: at,
                    template: plan.template.to_owned(),
                    category: plan.category.to_owned(),
                    variables: r.variables.clone(),
                    created_at: now,
                });
                for (id, ch) in &p.channels {
                    batch.deliveries.push(
                        Outcome {
                            id: *id,
                            notification_id: p.notification_id,
                            user_id: p.user_id,
                            channel: *ch,
                            status: "scheduled",
                            answer: None,
                        }
                        .record(&plan, now),
                    );
                }
            }
        }
    }

    let tx = deps.store.begin().await?;
    let record = SendRecord {
        caller: caller.clone(),
        idempotency_key: r.idempotency_key.clone(),
        fingerprint: print.clone(),
        ids: ids.clone(),
        created_at: now,
    };
    match tx.notices().insert_send_request(&record).await {
        Ok(()) => {}
        Err(StorageError::Conflict { .. }) => {
            // A twin of this request committed first: answer as it was answered.
            tx.rollback().await?;
            let prev = deps
                .store
                .notices()
                .send_request(&caller, &r.idempotency_key)
                .await?
                .ok_or(StorageError::Conflict {
                    what: "idempotency_key".into(),
                })?;
            return replay(prev, &print);
        }
        Err(e) => return Err(e.into()),
    }
    tx.notices().insert_deliveries(&batch.deliveries).await?;
    tx.notices().insert_schedule(&schedule).await?;
    batch.write(&deps, &tx, &m.meta).await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(SendAccepted { ids })
}

async fn cancel_scheduled(deps: Arc<Deps>, m: CancelScheduled) -> Result<(), HandlerError> {
    sender(&deps, &m.caller).await?;
    let now = (deps.clock)();
    let tx = deps.store.begin().await?;
    let rows = tx.notices().deliveries_of(m.id).await?;
    if rows.is_empty() {
        return Err(not_found(
            "notification_not_found",
            "no notification has this id",
        ));
    }
    if !tx.notices().unschedule(m.id).await? {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "not_scheduled",
            detail: "this notification is not waiting: it was sent or cancelled already".into(),
            field: None,
        }));
    }
    for d in rows.iter().filter(|d| d.status == "scheduled") {
        tx.notices()
            .set_delivery(d.id, "cancelled", 0, Some("cancelled by the sender"), now)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn item(i: InboxRecord) -> InboxItem {
    InboxItem {
        id: i.id,
        category: i.category,
        title: i.title,
        body: i.body,
        action_url: i.action_url,
        created_at: i.created_at,
        read_at: i.read_at,
    }
}

async fn list_inbox(deps: Arc<Deps>, m: ListInbox) -> Result<InboxPage, HandlerError> {
    let before = cursor(m.cursor.as_deref())?;
    let me = m.principal.user_id;
    let reads = deps.store.reads();
    let limit = u64::from(m.limit);
    let mut rows = reads
        .notices()
        .inbox(me, m.unread_only, before, limit + 1)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(m.limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|i| i.id.to_string()))
        .flatten();
    let unread = reads.notices().unread_count(me).await?;
    Ok(InboxPage {
        items: rows.into_iter().map(item).collect(),
        unread,
        next_cursor,
    })
}

async fn open_stream(deps: Arc<Deps>, m: OpenInboxStream) -> Result<InboxStream, HandlerError> {
    let me = m.principal.user_id;
    // Subscribed before the count is read: an item that lands between is pushed, not lost.
    let events = deps.live.subscribe(me);
    let unread = deps.store.reads().notices().unread_count(me).await?;
    Ok(InboxStream {
        unread,
        events: Box::pin(events),
    })
}

async fn mark_read(deps: Arc<Deps>, m: MarkRead) -> Result<(), HandlerError> {
    let tx = deps.store.begin().await?;
    let found = tx
        .notices()
        .mark_read(m.principal.user_id, m.id, (deps.clock)())
        .await?;
    tx.commit().await?;
    if found {
        Ok(())
    } else {
        Err(not_found(
            "notification_not_found",
            "you have no notification with this id",
        ))
    }
}

async fn mark_all_read(deps: Arc<Deps>, m: MarkAllRead) -> Result<(), HandlerError> {
    let tx = deps.store.begin().await?;
    tx.notices()
        .mark_all_read(m.principal.user_id, (deps.clock)())
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn get_preferences(deps: Arc<Deps>, m: GetPreferences) -> Result<Preferences, HandlerError> {
    let stored = deps
        .store
        .notices()
        .preferences(m.principal.user_id)
        .await?;
    Ok(deps.categories.effective(&stored))
}

async fn put_preferences(deps: Arc<Deps>, m: PutPreferences) -> Result<Preferences, HandlerError> {
    deps.categories
        .check_update(&m.preferences)
        .map_err(invalid)?;
    let me = m.principal.user_id;
    let tx = deps.store.begin().await?;
    let stored = tx.notices().preferences(me).await?;
    let next = policy::merged(stored, &m.preferences);
    tx.notices()
        .put_preferences(me, &next, (deps.clock)())
        .await?;
    tx.commit().await?;
    Ok(deps.categories.effective(&next))
}

fn view(t: TemplateRecord, channel: Channel) -> TemplateView {
    TemplateView {
        key: t.key,
        channel,
        locale: t.locale,
        parts: t.parts,
        variables: t.variables,
        source: t.source,
        updated_at: t.updated_at,
    }
}

fn template_not_found(id: &TemplateId) -> HandlerError {
    not_found(
        "template_not_found",
        format!(
            "there is no {} template {} in {}",
            id.channel.as_str(),
            id.key.as_str(),
            id.locale.as_str()
        ),
    )
}

async fn stored_template(
    deps: &Deps,
    id: &TemplateId,
) -> Result<Option<TemplateRecord>, HandlerError> {
    Ok(deps
        .store
        .notices()
        .template(id.key.as_str(), id.channel.as_str(), id.locale.as_str())
        .await?)
}

async fn get_template(deps: Arc<Deps>, m: GetTemplate) -> Result<TemplateView, HandlerError> {
    deps.access.require(m.principal.user_id, TEMPLATES).await?;
    let t = stored_template(&deps, &m.id)
        .await?
        .ok_or_else(|| template_not_found(&m.id))?;
    Ok(view(t, m.id.channel))
}

async fn put_template(
    deps: Arc<Deps>,
    m: PutTemplate,
) -> Result<(TemplateView, bool), HandlerError> {
    let me = m.principal.user_id;
    deps.access.require(me, TEMPLATES).await?;
    let old = stored_template(&deps, &m.id).await?;
    let mut variables = match (&m.variables, &old) {
        (Some(v), _) => v.clone(),
        (None, Some(o)) => o.variables.clone(),
        (None, None) => Vec::new(),
    };
    variables.sort();
    variables.dedup();
    templates::check(m.id.channel, &m.parts, &variables).map_err(invalid)?;
    let now = (deps.clock)();
    let record = TemplateRecord {
        key: m.id.key.as_str().to_owned(),
        channel: m.id.channel.as_str().to_owned(),
        locale: m.id.locale.as_str().to_owned(),
        parts: m.parts,
        variables,
        source: "api".to_owned(),
        updated_at: now,
        updated_by: Some(me),
    };
    let meta = m.meta.acting(me);
    let tx = deps.store.begin().await?;
    tx.notices().put_template(&record).await?;
    let details = serde_json::json!({
        "key": record.key, "channel": record.channel, "locale": record.locale,
        "was": old.as_ref().map(|o| o.source.as_str()),
    });
    deps.outbox
        .audit(&tx, &meta, "template.updated", None, details)
        .await?;
    tx.commit().await?;
    deps.templates.forget_all();
    Ok((view(record, m.id.channel), old.is_none()))
}

async fn preview_template(
    deps: Arc<Deps>,
    m: PreviewTemplate,
) -> Result<BTreeMap<String, String>, HandlerError> {
    deps.access.require(m.principal.user_id, TEMPLATES).await?;
    let parts = match m.parts {
        Some(p) => {
            let declared: Vec<String> = m.variables.keys().cloned().collect();
            let unknown_vars_ok: Vec<_> = templates::check(m.id.channel, &p, &declared)
                .err()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.code != "undeclared_variable")
                .collect();
            if !unknown_vars_ok.is_empty() {
                return Err(invalid(unknown_vars_ok));
            }
            p
        }
        None => {
            stored_template(&deps, &m.id)
                .await?
                .ok_or_else(|| template_not_found(&m.id))?
                .parts
        }
    };
    templates::render(&parts, &m.variables).map_err(|e| invalid(vec![e]))
}

/// The longest push endpoint accepted.
const MAX_ENDPOINT: usize = 2048;

/// A push service URL: https on a domain name (push services have one; an IP address could
/// point Keyward at an internal service), or, when allowed, http on the loopback.
fn endpoint_ok(raw: &str, allow_loopback: bool) -> bool {
    let Ok(u) = url::Url::parse(raw) else {
        return false;
    };
    let domain = matches!(u.host(), Some(url::Host::Domain(d)) if d != "localhost");
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    raw.len() <= MAX_ENDPOINT
        && ((u.scheme() == "https" && domain)
            || (allow_loopback && loopback && matches!(u.scheme(), "http" | "https")))
}

async fn subscribe_push(
    deps: Arc<Deps>,
    m: SubscribePush,
) -> Result<PushSubscriptionView, HandlerError> {
    let mut errors = Vec::new();
    if !endpoint_ok(&m.endpoint, deps.allow_loopback_push) {
        errors.push(FieldError::new(
            "endpoint",
            "invalid_endpoint",
            "the endpoint is the push service's https URL (on a domain name) from PushSubscription.toJSON()",
        ));
    }
    if let Err((field, why)) = super::push::check_keys(&m.p256dh, &m.auth) {
        errors.push(FieldError::new(field, "invalid_key", why));
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let record = keyward_storage::PushSubscriptionRecord {
        id: Uuid::now_v7(),
        user_id: m.principal.user_id,
        endpoint: m.endpoint,
        p256dh: m.p256dh,
        auth: m.auth,
        created_at: (deps.clock)(),
    };
    let tx = deps.store.begin().await?;
    tx.notices().put_push_subscription(&record).await?;
    tx.commit().await?;
    Ok(PushSubscriptionView {
        id: record.id,
        endpoint: record.endpoint,
        created_at: record.created_at,
    })
}

async fn unsubscribe_push(deps: Arc<Deps>, m: UnsubscribePush) -> Result<(), HandlerError> {
    if deps
        .store
        .notices()
        .delete_push_subscription(m.principal.user_id, m.id)
        .await?
    {
        Ok(())
    } else {
        Err(not_found(
            "subscription_not_found",
            "you have no push subscription with this id",
        ))
    }
}

async fn vapid_key(deps: Arc<Deps>, _: GetVapidKey) -> Result<VapidKey, HandlerError> {
    Ok(VapidKey {
        public_key: deps.vapid_public.clone(),
    })
}

fn status_of(raw: &str) -> DeliveryStatus {
    DeliveryStatus::parse("", raw).unwrap_or(DeliveryStatus::Failed)
}

async fn list_deliveries(deps: Arc<Deps>, m: ListDeliveries) -> Result<DeliveryPage, HandlerError> {
    deps.access
        .require(m.principal.user_id, "users:read")
        .await?;
    let before = cursor(m.cursor.as_deref())?;
    let limit = u64::from(m.limit);
    let f = DeliveryFilter {
        user_id: m.user_id,
        status: m.status.map(|s| s.as_str().to_owned()),
        before,
        limit: limit + 1,
    };
    let mut rows = deps.store.reads().notices().deliveries(&f).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(m.limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|d| d.id.to_string()))
        .flatten();
    let items = rows
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            notification_id: d.notification_id,
            user_id: d.user_id,
            channel: Channel::parse("", &d.channel).unwrap_or(Channel::InApp),
            category: d.category,
            template: d.template,
            status: status_of(&d.status),
            attempts: u32::try_from(d.attempts).unwrap_or(0),
            answer: d.answer,
            created_at: d.created_at,
            updated_at: d.updated_at,
        })
        .collect();
    Ok(DeliveryPage { items, next_cursor })
}

crate::edge::handlers!(Notifications {
    SendNotification => SendAccepted: send;
    CancelScheduled => (): cancel_scheduled;
    ListInbox => InboxPage: list_inbox;
    OpenInboxStream => InboxStream: open_stream;
    MarkRead => (): mark_read;
    MarkAllRead => (): mark_all_read;
    GetPreferences => Preferences: get_preferences;
    PutPreferences => Preferences: put_preferences;
    GetTemplate => TemplateView: get_template;
    PutTemplate => (TemplateView, bool): put_template;
    PreviewTemplate => BTreeMap<String, String>: preview_template;
    ListDeliveries => DeliveryPage: list_deliveries;
    SubscribePush => PushSubscriptionView: subscribe_push;
    UnsubscribePush => (): unsubscribe_push;
    GetVapidKey => VapidKey: vapid_key;
});

#[cfg(test)]
mod tests {
    use super::endpoint_ok;

    #[test]
    fn push_endpoints_are_https_on_a_domain_unless_loopback_is_allowed() {
        assert!(endpoint_ok(
            "https://fcm.googleapis.com/fcm/send/abc",
            false
        ));
        for bad in [
            "http://fcm.googleapis.com/x",
            "https://10.0.0.5/x",
            "https://[::1]/x",
            "https://localhost/x",
            "http://localhost:9090/metrics",
            "ftp://push.example/x",
            "not a url",
        ] {
            assert!(!endpoint_ok(bad, false), "{bad}");
        }
        assert!(endpoint_ok("http://localhost:8090/notify/abc", true));
        assert!(!endpoint_ok("http://10.0.0.5/x", true));
    }
}
