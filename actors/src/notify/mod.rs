//! The notify context: turns email jobs from the outbox into sent mail. In embedded mode it
//! writes `.eml` files to `{data_dir}/mail` (or talks SMTP when KEYWARD_SMTP_URL is set).
//!
//! Owns: templates (English and Russian, text and HTML), the mail transport, de-duplication
//! by message id. Refuses: deciding who gets mail (accounts does) and holding secrets longer
//! than one delivery.

mod templates;
pub mod worker;

use std::path::PathBuf;

use actix::prelude::*;
use keyward_messages::events::{EmailJob, Envelope, Outgoing};
use keyward_storage::Store;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor,
};

use crate::bus::Deliver;
use crate::metrics::Metrics;
use crate::{Clock, StartError};

pub use templates::render;

/// Inbox consumer name: one id is sent once, whichever node or worker takes it.
const CONSUMER: &str = "notify.email";

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// One `.eml` file per message in this directory.
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Mailer {
    /// SMTP when `smtp_url` is given (smtp:// plain, `?tls=required` for STARTTLS, smtps://
    /// implicit TLS), otherwise the mail drop under `mail_dir`.
    pub fn new(smtp_url: Option<&str>, mail_dir: PathBuf) -> Result<Self, StartError> {
        match smtp_url {
            Some(url) => AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map(|b| Mailer::Smtp(b.build()))
                .map_err(|e| StartError::Mail(format!("KEYWARD_SMTP_URL: {e} (expected smtp://host:port or smtps://user:pass@host)"))),
            None => {
                std::fs::create_dir_all(&mail_dir).map_err(|source| StartError::Io {
                    path: mail_dir.display().to_string(),
                    source,
                })?;
                Ok(Mailer::Files(AsyncFileTransport::new(&mail_dir), mail_dir))
            }
        }
    }

    async fn send(&self, mail: Mail) -> Result<(), String> {
        match self {
            Mailer::Files(t, _) => t.send(mail).await.map(|_| ()).map_err(|e| e.to_string()),
            Mailer::Smtp(t) => t.send(mail).await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }
}

pub struct Notify {
    metrics: Metrics,
    mailer: Mailer,
    from: Mailbox,
    store: Store,
    clock: Clock,
}

impl Notify {
    pub fn new(
        mailer: Mailer,
        from: &str,
        store: Store,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        Ok(Self {
            metrics,
            mailer,
            from: parse_from(from)?,
            store,
            clock,
        })
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

/// Builds the MIME message for a job: text and HTML alternatives.
pub fn build_mail(from: &Mailbox, job: &EmailJob) -> Result<Mail, String> {
    let to: Mailbox = job.to.parse().map_err(|e| format!("recipient: {e}"))?;
    let (subject, text, html) = render(job);
    Mail::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| e.to_string())
}

/// Sends one email job unless this consumer already processed its id. Ok also for poison
/// (logged, recorded and dropped); Err means "try again later".
async fn deliver(
    mailer: Mailer,
    from: Mailbox,
    store: Store,
    clock: Clock,
    metrics: Metrics,
    env: Envelope,
) -> Result<(), String> {
    if store
        .outbox()
        .inbox_contains(CONSUMER, env.id)
        .await
        .map_err(|e| format!("{e:?}"))?
    {
        tracing::debug!(id = %env.id, "duplicate email job dropped");
        return Ok(());
    }
    let job = match env.decode() {
        Ok(Outgoing::Email(job)) => job,
        Ok(Outgoing::Event(_)) => return Ok(()),
        Err(e) => {
            // Poison: it will never decode. Record it so it is not retried forever.
            tracing::error!(id = %env.id, error = %e, "undecodable email job dropped");
            return store
                .outbox()
                .inbox_record(CONSUMER, env.id, clock())
                .await
                .map_err(|e| format!("{e:?}"));
        }
    };
    let mail = match build_mail(&from, &job) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(id = %env.id, error = %e, "email job cannot be built; dropped");
            return store
                .outbox()
                .inbox_record(CONSUMER, env.id, clock())
                .await
                .map_err(|e| format!("{e:?}"));
        }
    };
    if let Err(e) = mailer.send(mail).await {
        metrics.emails_failed.inc();
        return Err(e);
    }
    metrics.emails_sent.inc();
    store
        .outbox()
        .inbox_record(CONSUMER, env.id, clock())
        .await
        .map_err(|e| format!("{e:?}"))?;
    tracing::info!(id = %env.id, template = job.template.as_str(), locale = job.locale.as_str(), "email sent");
    Ok(())
}

impl Actor for Notify {
    type Context = Context<Self>;
}

impl Supervised for Notify {}

impl Handler<Deliver> for Notify {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, Deliver(env): Deliver, _: &mut Context<Self>) -> Self::Result {
        Box::pin(deliver(
            self.mailer.clone(),
            self.from.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            env,
        ))
    }
}
