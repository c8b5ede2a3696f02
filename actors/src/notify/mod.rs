//! The notify context: the products' notifications (the send API, the in-app inbox,
//! preferences, the delivery log), the stored templates every message is rendered with, and
//! the mail transport that turns email jobs from the outbox into sent mail. In embedded mode
//! mail is written as `.eml` files to `{data_dir}/mail` (or sent by SMTP when
//! KEYWARD_SMTP_URL is set); in distributed mode `keyward worker` sends it.
//!
//! Owns: templates (per key, channel and locale), the delivery log, inboxes, preferences,
//! idempotency of sends, de-duplication of email jobs by message id. Refuses: a send without
//! `notifications:send`, a template that does not parse or uses undeclared variables, muting
//! `security`, deciding which auth mails a user gets (accounts does), and holding a one-time
//! link longer than one delivery.

pub mod dispatch;
mod error;
mod handlers;
pub mod intake;
pub mod live;
pub mod policy;
pub mod push;
pub mod sms;
pub mod smtp;
pub mod templates;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use std::collections::BTreeMap;

use keyward_messages::events::{DomainEvent, EmailJob, Envelope, Outgoing};
use keyward_messages::notify::Channel;
use keyward_messages::RequestMeta;
use keyward_storage::Store;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport, Message as Mail, Tokio1Executor};

use crate::bus::{BusError, Deliver};
use crate::error::chain;
use crate::metrics::Metrics;
use crate::outbox::enqueue_at;
use crate::{Clock, StartError};

pub use error::MailError;
pub use smtp::SmtpPool;
pub use templates::TemplateCache;

/// Inbox consumer name: one id is sent once, whichever node or worker takes it.
const CONSUMER: &str = "notify.email";

/// Where mail goes. Clones share one transport (and, for SMTP, one connection pool).
#[derive(Clone)]
pub enum Mailer {
    /// One `.eml` file per message in this directory.
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
    /// SMTP, reusing connections ([`smtp`]).
    Smtp(Arc<SmtpPool>),
}

impl Mailer {
    /// SMTP when `smtp_url` is given (smtp:// plain, `?tls=required` for STARTTLS, smtps://
    /// implicit TLS), otherwise the mail drop under `mail_dir`. Runs inside the async runtime
    /// that will send.
    pub fn new(smtp_url: Option<&str>, mail_dir: PathBuf) -> Result<Self, StartError> {
        match smtp_url {
            Some(url) => Ok(Mailer::Smtp(Arc::new(SmtpPool::new(url)?))),
            None => {
                std::fs::create_dir_all(&mail_dir).map_err(|source| StartError::Io {
                    path: mail_dir.display().to_string(),
                    source,
                })?;
                Ok(Mailer::Files(AsyncFileTransport::new(&mail_dir), mail_dir))
            }
        }
    }

    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        match self {
            Mailer::Files(t, _) => t.send(mail).await.map(|_| ()).map_err(MailError::File),
            Mailer::Smtp(pool) => pool.send(mail).await,
        }
    }

    /// Closes pooled SMTP connections at an orderly stop (nothing to do for the mail drop).
    /// Sends after this fail, to be retried later or by another worker.
    pub async fn shutdown(&self) {
        if let Mailer::Smtp(pool) = self {
            pool.shutdown().await;
        }
    }
}

/// What the notify API works with.
pub struct NotifyDeps {
    pub store: Store,
    pub clock: Clock,
    pub outbox: crate::outbox::OutboxWriter,
    /// Who may send, edit templates and read the log.
    pub access: crate::access::AccessHandle,
    pub templates: Arc<TemplateCache>,
    pub categories: policy::Categories,
    /// This node's live inbox streams.
    pub live: Arc<live::LiveInbox>,
    /// The VAPID public key browsers subscribe with.
    pub vapid_public: String,
    /// Accept http push endpoints on the loopback (tests).
    pub allow_loopback_push: bool,
    pub metrics: Metrics,
}

/// The notify API's actor: sends, inboxes, preferences, templates and the log.
pub struct Notifications {
    pub(crate) deps: Arc<NotifyDeps>,
}

impl Notifications {
    pub fn new(deps: Arc<NotifyDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Notifications {
    type Context = Context<Self>;
}

impl Supervised for Notifications {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("notifications actor restarting");
    }
}

impl Handler<crate::edge::Restart> for Notifications {
    type Result = ();
    fn handle(&mut self, _: crate::edge::Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Sends the email jobs the relay hands it (embedded mode).
pub struct Notify {
    room: Mailroom,
}

impl Notify {
    pub fn new(room: Mailroom) -> Self {
        Self { room }
    }
}

/// The sender address of KEYWARD_MAIL_FROM.
pub fn parse_from(from: &str) -> Result<Mailbox, StartError> {
    from.parse::<Mailbox>().map_err(|e| {
        StartError::Config(format!(
            "KEYWARD_MAIL_FROM: {e} (expected e.g. Keyward <no-reply@example.com>)"
        ))
    })
}

/// Builds the MIME message: text and HTML alternatives.
pub fn build_mail(
    from: &Mailbox,
    to: &str,
    rendered: &BTreeMap<String, String>,
) -> Result<Mail, MailError> {
    let to: Mailbox = to.parse().map_err(MailError::Recipient)?;
    let part = |name: &str| rendered.get(name).cloned().unwrap_or_default();
    Mail::builder()
        .from(from.clone())
        .to(to)
        .subject(part("subject"))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(part("text")),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(part("html")),
                ),
        )
        .map_err(MailError::Build)
}

/// What sending an email job needs; clones share everything.
#[derive(Clone)]
pub struct Mailroom {
    pub mailer: Mailer,
    pub from: Mailbox,
    pub store: Store,
    pub clock: Clock,
    pub metrics: Metrics,
    pub templates: Arc<TemplateCache>,
    /// Signs Web Push messages; none where push is not set up (they are then logged dead).
    pub vapid: Option<Arc<push::Vapid>>,
    /// Calls push services.
    pub http: reqwest::Client,
    /// Where SMS texts go.
    pub sms: Arc<sms::SmsSender>,
}

/// Renders a job with its stored template, or says why it never will be.
async fn compose(room: &Mailroom, job: &EmailJob) -> Result<Result<Mail, String>, MailError> {
    let template = room
        .templates
        .get(&room.store, &job.template, Channel::Email, job.locale)
        .await
        .map_err(MailError::Inbox)?;
    let Some(template) = template else {
        return Ok(Err(format!("no email template is named {}", job.template)));
    };
    let variables: serde_json::Map<_, _> = job.variables.clone().into_iter().collect();
    let rendered = match templates::render(&template.parts, &variables) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.message)),
    };
    Ok(build_mail(&room.from, &job.to, &rendered).map_err(|e| chain(&e)))
}

/// After a job is done (sent, or never sendable): records its id, and for a product's
/// notification its delivery row and event, in one transaction.
async fn finish(
    room: &Mailroom,
    env: &Envelope,
    delivery: Option<uuid::Uuid>,
    failure: Option<&str>,
) -> Result<(), MailError> {
    let tx = room.store.begin().await.map_err(MailError::Inbox)?;
    tx.outbox()
        .inbox_record(CONSUMER, env.id, (room.clock)())
        .await
        .map_err(MailError::Inbox)?;
    close_delivery(room, &tx, env, delivery, failure, true).await?;
    tx.commit().await.map_err(MailError::Inbox)
}

/// A job that failed its last allowed attempt and goes to `keyward.dead`: its delivery row
/// ends `dead` with the last answer and `notification.failed` goes out. Its id is not
/// recorded, so an operator who moves it back from `keyward.dead` gets it sent.
pub async fn give_up(room: &Mailroom, env: &Envelope, answer: &str) -> Result<(), MailError> {
    let delivery = match env.decode() {
        Ok(Outgoing::Email(j)) => j.delivery,
        Ok(Outgoing::Push(j)) => Some(j.delivery),
        Ok(Outgoing::Sms(j)) => j.delivery,
        _ => None,
    };
    if delivery.is_none() {
        return Ok(());
    }
    let tx = room.store.begin().await.map_err(MailError::Inbox)?;
    // The attempt itself was counted when it failed.
    close_delivery(room, &tx, env, delivery, Some(answer), false).await?;
    tx.commit().await.map_err(MailError::Inbox)
}

/// Ends a product notification's delivery row (`sent`, or `dead` with `failure`), counting
/// this attempt when `count`, and queues its event, in `tx`.
async fn close_delivery(
    room: &Mailroom,
    tx: &keyward_storage::Tx,
    env: &Envelope,
    delivery: Option<uuid::Uuid>,
    failure: Option<&str>,
    count: bool,
) -> Result<(), MailError> {
    let now = (room.clock)();
    if let Some(id) = delivery {
        if let Some(d) = tx.notices().delivery(id).await.map_err(MailError::Inbox)? {
            let status = if failure.is_some() { "dead" } else { "sent" };
            let attempts = d.attempts + i32::from(count);
            tx.notices()
                .set_delivery(id, status, attempts, failure, now)
                .await
                .map_err(MailError::Inbox)?;
            let meta = RequestMeta {
                correlation_id: env.correlation_id.clone().unwrap_or_default(),
                ..RequestMeta::default()
            };
            let ev = match failure {
                None => DomainEvent::NotificationSent {
                    user_id: d.user_id,
                    notification_id: d.notification_id,
                    channel: d.channel,
                    category: d.category,
                    template: d.template,
                },
                Some(reason) => DomainEvent::NotificationFailed {
                    user_id: d.user_id,
                    notification_id: d.notification_id,
                    channel: d.channel,
                    category: d.category,
                    template: d.template,
                    reason: reason.to_owned(),
                },
            };
            enqueue_at(tx, now, &meta, Outgoing::Event(ev))
                .await
                .map_err(MailError::Inbox)?;
        }
    }
    Ok(())
}

/// Records a failed attempt that will be retried.
async fn attempt_failed(room: &Mailroom, delivery: Option<uuid::Uuid>, answer: &str) {
    if let Some(id) = delivery {
        let now = (room.clock)();
        if let Err(e) = room
            .store
            .notices()
            .record_attempt(id, "failed", Some(answer), now)
            .await
        {
            tracing::warn!(%id, error = %chain(&e), "the delivery log could not record a failed attempt");
        }
    }
}

/// Sends one push job (already known not to be a duplicate).
async fn deliver_push(
    room: &Mailroom,
    env: &Envelope,
    job: keyward_messages::events::PushJob,
) -> Result<(), MailError> {
    let Some(vapid) = &room.vapid else {
        return finish(
            room,
            env,
            Some(job.delivery),
            Some("Web Push is not set up on this process"),
        )
        .await;
    };
    match push::send(&room.http, vapid, &job).await {
        push::Pushed::Sent => {
            tracing::info!(id = %env.id, template = job.template.as_str(), "push message sent");
            finish(room, env, Some(job.delivery), None).await
        }
        push::Pushed::Gone(answer) => {
            // The browser unsubscribed: it is forgotten, and this delivery is over.
            room.store
                .notices()
                .delete_push_endpoint(&job.endpoint)
                .await
                .map_err(MailError::Inbox)?;
            let reason = format!("the subscription is gone: {answer}");
            finish(room, env, Some(job.delivery), Some(&reason)).await
        }
        push::Pushed::Refused(reason) => {
            tracing::warn!(id = %env.id, %reason, "a push message was refused; dropped");
            finish(room, env, Some(job.delivery), Some(&reason)).await
        }
        push::Pushed::Retry(reason) => {
            attempt_failed(room, Some(job.delivery), &reason).await;
            Err(MailError::Push(reason))
        }
    }
}

/// Renders an SMS job's stored template, or says why it never will be.
async fn compose_sms(
    room: &Mailroom,
    job: &keyward_messages::events::SmsJob,
) -> Result<Result<String, String>, MailError> {
    let template = room
        .templates
        .get(&room.store, &job.template, Channel::Sms, job.locale)
        .await
        .map_err(MailError::Inbox)?;
    let Some(template) = template else {
        return Ok(Err(format!("no SMS template is named {}", job.template)));
    };
    let variables: serde_json::Map<_, _> = job.variables.clone().into_iter().collect();
    Ok(templates::render(&template.parts, &variables)
        .map(|r| r.get("text").cloned().unwrap_or_default())
        .map_err(|e| e.message))
}

/// Sends one SMS job (already known not to be a duplicate).
async fn deliver_sms(
    room: &Mailroom,
    env: &Envelope,
    job: keyward_messages::events::SmsJob,
) -> Result<(), MailError> {
    let text = match &job.text {
        Some(t) => t.clone(),
        None => match compose_sms(room, &job).await? {
            Ok(t) => t,
            Err(reason) => {
                tracing::error!(id = %env.id, template = job.template.as_str(), %reason, "SMS job cannot be built; dropped");
                return finish(room, env, job.delivery, Some(&reason)).await;
            }
        },
    };
    match room.sms.send(env.id, &job.to, &text).await {
        sms::Texted::Sent(answer) => {
            tracing::info!(id = %env.id, template = job.template.as_str(), %answer, "SMS sent");
            finish(room, env, job.delivery, None).await
        }
        sms::Texted::Refused(reason) => {
            tracing::warn!(id = %env.id, %reason, "an SMS was refused; dropped");
            finish(room, env, job.delivery, Some(&reason)).await
        }
        sms::Texted::Retry(reason) => {
            attempt_failed(room, job.delivery, &reason).await;
            Err(MailError::Sms(reason))
        }
    }
}

/// Sends one email job unless this consumer already processed its id. Ok also for poison
/// (logged, recorded and dropped); Err means "try again later".
async fn deliver(room: Mailroom, env: Envelope) -> Result<(), MailError> {
    if room
        .store
        .outbox()
        .inbox_contains(CONSUMER, env.id)
        .await
        .map_err(MailError::Inbox)?
    {
        tracing::debug!(id = %env.id, "duplicate email job dropped");
        return Ok(());
    }
    let job = match env.decode() {
        Ok(Outgoing::Email(job)) => job,
        Ok(Outgoing::Push(job)) => return deliver_push(&room, &env, job).await,
        Ok(Outgoing::Sms(job)) => return deliver_sms(&room, &env, job).await,
        Ok(Outgoing::Event(_)) => return Ok(()),
        Err(e) => {
            // Poison: it will never decode. Record it so it is not retried forever.
            tracing::error!(id = %env.id, error = %chain(&e), "undecodable email job dropped");
            return room
                .store
                .outbox()
                .inbox_record(CONSUMER, env.id, (room.clock)())
                .await
                .map_err(MailError::Inbox);
        }
    };
    let mail = match compose(&room, &job).await? {
        Ok(m) => m,
        Err(reason) => {
            tracing::error!(id = %env.id, template = job.template.as_str(), %reason, "email job cannot be built; dropped");
            return finish(&room, &env, job.delivery, Some(&reason)).await;
        }
    };
    if let Err(e) = room.mailer.send(mail).await {
        room.metrics.emails_failed.inc();
        if let Some(id) = job.delivery {
            let answer = chain(&e);
            let now = (room.clock)();
            if let Err(le) = room
                .store
                .notices()
                .record_attempt(id, "failed", Some(&answer), now)
                .await
            {
                tracing::warn!(%id, error = %chain(&le), "the delivery log could not record a failed attempt");
            }
        }
        return Err(e);
    }
    room.metrics.emails_sent.inc();
    finish(&room, &env, job.delivery, None).await?;
    tracing::info!(id = %env.id, template = job.template.as_str(), locale = job.locale.as_str(), "email sent");
    Ok(())
}

impl Actor for Notify {
    type Context = Context<Self>;
}

impl Supervised for Notify {}

impl Handler<Deliver> for Notify {
    type Result = ResponseFuture<Result<(), BusError>>;
    fn handle(&mut self, Deliver(env): Deliver, _: &mut Context<Self>) -> Self::Result {
        let sent = deliver(self.room.clone(), env);
        Box::pin(async move { sent.await.map_err(BusError::from) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyward_messages::commands::Locale;
    use keyward_messages::events::EmailTemplate;

    async fn store() -> Store {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        templates::sync_shipped(&store, chrono::Utc::now())
            .await
            .unwrap();
        store
    }

    fn metrics() -> Metrics {
        Metrics::register(&prometheus::Registry::new()).unwrap()
    }

    fn job(to: &str) -> Envelope {
        let job = EmailJob {
            to: to.into(),
            template: EmailTemplate::VerifyEmail.as_str().into(),
            locale: Locale::En,
            variables: [("link".to_string(), "http://x/v?token=t".into())].into(),
            delivery: None,
        };
        Envelope::new(
            uuid::Uuid::now_v7(),
            chrono::Utc::now(),
            None,
            &Outgoing::Email(job),
        )
    }

    /// A mail drop whose directory is gone: every send fails.
    fn broken_mailer(dir: &tempfile::TempDir) -> Mailer {
        let gone = dir.path().join("gone");
        Mailer::Files(AsyncFileTransport::new(&gone), gone)
    }

    async fn send(
        mailer: Mailer,
        store: &Store,
        metrics: &Metrics,
        env: Envelope,
    ) -> Result<(), MailError> {
        let room = Mailroom {
            mailer,
            from: parse_from("Keyward <no-reply@example.com>").unwrap(),
            store: store.clone(),
            clock: crate::system_clock(),
            metrics: metrics.clone(),
            templates: Default::default(),
            vapid: None,
            http: Default::default(),
            sms: Arc::new(sms::SmsSender::Log(std::env::temp_dir())),
        };
        deliver(room, env).await
    }

    /// Poison is answered Ok (acked, never retried), recorded in the inbox, and not counted as a
    /// failed send.
    async fn assert_dropped_as_poison(
        sent: Result<(), MailError>,
        store: &Store,
        metrics: &Metrics,
        env: &Envelope,
    ) {
        assert!(sent.is_ok(), "poison is not retried: {sent:?}");
        assert!(store
            .outbox()
            .inbox_contains(CONSUMER, env.id)
            .await
            .unwrap());
        assert_eq!(metrics.emails_failed.get(), 0);
    }

    #[actix_rt::test]
    async fn a_job_that_never_decodes_is_recorded_and_dropped_not_retried() {
        let (dir, store, metrics) = (tempfile::tempdir().unwrap(), store().await, metrics());
        let mut env = job("a@example.com");
        env.data = serde_json::json!({"template": "no_such_template"});

        let sent = send(broken_mailer(&dir), &store, &metrics, env.clone()).await;

        assert_dropped_as_poison(sent, &store, &metrics, &env).await;
    }

    #[actix_rt::test]
    async fn a_job_whose_recipient_does_not_parse_is_recorded_and_dropped_not_retried() {
        let (dir, store, metrics) = (tempfile::tempdir().unwrap(), store().await, metrics());
        let env = job("not an address");

        let sent = send(broken_mailer(&dir), &store, &metrics, env.clone()).await;

        assert_dropped_as_poison(sent, &store, &metrics, &env).await;
    }

    #[actix_rt::test]
    async fn a_send_failure_is_returned_for_a_retry_and_the_job_is_not_recorded() {
        let (dir, store, metrics) = (tempfile::tempdir().unwrap(), store().await, metrics());
        let env = job("a@example.com");

        let sent = send(broken_mailer(&dir), &store, &metrics, env.clone()).await;

        assert!(matches!(sent, Err(MailError::File(_))), "{sent:?}");
        assert!(!store
            .outbox()
            .inbox_contains(CONSUMER, env.id)
            .await
            .unwrap());
        assert_eq!(metrics.emails_failed.get(), 1);
        assert_eq!(metrics.emails_sent.get(), 0);
    }

    #[actix_rt::test]
    async fn a_sent_job_is_recorded_so_a_redelivery_is_not_sent_again() {
        let (dir, store, metrics) = (tempfile::tempdir().unwrap(), store().await, metrics());
        let mailer = Mailer::new(None, dir.path().to_owned()).unwrap();
        let env = job("a@example.com");

        send(mailer.clone(), &store, &metrics, env.clone())
            .await
            .unwrap();
        send(mailer, &store, &metrics, env).await.unwrap();

        assert_eq!(metrics.emails_sent.get(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
