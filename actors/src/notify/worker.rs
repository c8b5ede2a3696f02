//! `keyward worker`: consumes `keyward.notify.email` and sends each job: mail through the
//! mailer, Web Push messages to their push services, SMS texts through the SMS provider.
//!
//! Works on up to [`PREFETCH`] jobs at once (the broker hands it no more unacknowledged), each
//! sent on its own pooled SMTP connection, so one slow mail does not hold up the others. Acks
//! each job only after its mail went out and its id is recorded (a crash before that redelivers
//! it; the inbox drops the duplicate). A message that cannot be decoded is rejected without
//! requeue, so it goes to `keyward.dead`; a send failure is requeued after a backoff, and the
//! quorum queue's delivery limit dead-letters a job that keeps failing. Reconnects with backoff.
//!
//! A database that does not answer is not the job's fault, and must not spend its deliveries:
//! a job that failed on the database while the database does not answer a ping is neither
//! requeued (each redelivery counts towards the limit) nor acked. The worker holds it, takes no
//! new job while it holds one, pings the database with backoff, and runs the job again once the
//! database answers. Meanwhile its /readyz answers 503 for the database ([`DatabaseProbe`]).
//!
//! `keyward_amqp_connected` and `keyward_amqp_consuming` drop to 0 as soon as the consumer
//! ends or fails (a lost connection fails it), and return to 1 after the reconnect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use keyward_messages::commands::CheckReady;
use keyward_messages::events::Envelope;
use keyward_messages::CommandError;
use keyward_storage::{StorageError, Store};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lettre::message::Mailbox;
use tracing::Instrument;

use super::{deliver, give_up, MailError, Mailer, Mailroom, TemplateCache};
use crate::bus::amqp::{connect, EMAIL_DELIVERY_LIMIT, EMAIL_QUEUE};
use crate::bus::BusError;
use crate::error::chain;
use crate::metrics::Metrics;
use crate::Clock;

/// Jobs a worker holds unacknowledged, and works on, at once.
pub const PREFETCH: u16 = 8;

/// Answers /readyz for a worker: ready while it is consuming.
pub struct WorkerProbe {
    pub consuming: Arc<AtomicBool>,
}

impl Actor for WorkerProbe {
    type Context = Context<Self>;
}

impl Handler<CheckReady> for WorkerProbe {
    type Result = Result<(), CommandError>;
    fn handle(&mut self, _: CheckReady, _: &mut Context<Self>) -> Self::Result {
        if self.consuming.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(CommandError::unavailable("not consuming from RabbitMQ"))
        }
    }
}

/// How long the database may take to answer a ping before the worker calls it down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answers a ping within [`PING_TIMEOUT`].
pub(crate) async fn database_answers(store: &Store) -> bool {
    matches!(
        tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    )
}

/// Returns once the database answers a ping; meanwhile `waiting` tells the consumer to take no
/// new message.
pub(crate) async fn wait_for_database(store: &Store, waiting: &AtomicBool) {
    const FIRST: Duration = Duration::from_millis(250);
    // NOTE: capped at 2 s, so held work goes on within about 2 s of the database's return.
    const CAP: Duration = Duration::from_secs(2);
    waiting.store(true, Ordering::SeqCst);
    let mut backoff = FIRST;
    loop {
        tokio::time::sleep(backoff).await;
        if database_answers(store).await {
            waiting.store(false, Ordering::SeqCst);
            return;
        }
        backoff = (backoff * 2).min(CAP);
    }
}

/// Answers /readyz's `database` check for a worker: it cannot send without its database (it
/// holds its jobs until the database answers again).
pub struct DatabaseProbe {
    pub store: Store,
}

impl Actor for DatabaseProbe {
    type Context = Context<Self>;
}

impl Handler<CheckReady> for DatabaseProbe {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, _: CheckReady, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            if database_answers(&store).await {
                Ok(())
            } else {
                Err(CommandError::unavailable(
                    "the database does not answer; email jobs wait in the queue until it does",
                ))
            }
        })
    }
}

pub struct Worker {
    pub metrics: Metrics,
    pub amqp_url: String,
    pub mailer: Mailer,
    pub from: Mailbox,
    pub store: Store,
    pub clock: Clock,
    pub consuming: Arc<AtomicBool>,
    pub templates: Arc<TemplateCache>,
    /// Signs push messages; none: push jobs are logged dead.
    pub vapid: Option<Arc<super::push::Vapid>>,
    pub http: reqwest::Client,
    pub sms: Arc<super::sms::SmsSender>,
}

fn delivery_count(d: &Delivery) -> i64 {
    let headers: Option<&FieldTable> = d.properties.headers().as_ref();
    match headers.and_then(|h| h.inner().get("x-delivery-count")) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 0,
    }
}

impl Worker {
    /// Consumes until the process is stopped; never returns on broker trouble, it reconnects.
    pub async fn run(self) {
        // NOTE: capped at a second, so the backlog of an outage starts draining within about
        // a second of the broker's return; a retry while it is down is one refused connection.
        // Only the first failure of an outage is a warning: the retries say nothing new.
        const FIRST: Duration = Duration::from_millis(250);
        const CAP: Duration = Duration::from_secs(1);
        let mut backoff = FIRST;
        let mut failures = 0u32;
        // Set while a job of this worker waits for the database: it takes no new job then.
        let waiting = AtomicBool::new(false);
        loop {
            // Jobs held by a consumer that ended were dropped with it (the broker has them).
            waiting.store(false, Ordering::SeqCst);
            let outcome = self.consume_once(&waiting).await;
            if self.consuming.swap(false, Ordering::SeqCst) {
                // It was consuming: this is a new outage.
                (backoff, failures) = (FIRST, 0);
            }
            let retry_in_ms = backoff.as_millis() as u64;
            match (outcome, failures) {
                (Ok(()), 0) => tracing::warn!("the consumer stopped; reconnecting"),
                (Err(e), 0) => {
                    tracing::warn!(error = %chain(&e), retry_in_ms, "worker cannot consume; retrying")
                }
                (Ok(()), _) => tracing::debug!("the consumer stopped again; reconnecting"),
                (Err(e), n) => {
                    tracing::debug!(error = %chain(&e), retry_in_ms, failures = n + 1, "worker still cannot consume; retrying")
                }
            }
            failures = failures.saturating_add(1);
            self.metrics.amqp_consuming.set(0);
            self.metrics.amqp_connected.set(0);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(CAP);
        }
    }

    async fn consume_once(&self, waiting: &AtomicBool) -> Result<(), BusError> {
        let (conn, ch) = connect(&self.amqp_url, "keyward-worker").await?;
        self.metrics.amqp_connected.set(1);
        ch.basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(BusError::Qos)?;
        let tag = format!("keyward-worker-{}", uuid::Uuid::new_v4());
        let mut consumer = ch
            .basic_consume(
                EMAIL_QUEUE.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::Consume)?;
        self.consuming.store(true, Ordering::SeqCst);
        self.metrics.amqp_consuming.set(1);
        tracing::info!(queue = EMAIL_QUEUE, prefetch = PREFETCH, "worker consuming");
        // NOTE: jobs run concurrently inside this future, not as spawned tasks: when the
        // connection fails (or the process stops) the unfinished ones are dropped with it, and
        // the broker redelivers what they had not acked.
        // NOTE: while a job waits for the database no new one is taken: the broker keeps them
        // (those it already handed over wait unacked in the consumer's buffer). With no job
        // held the flag cannot be cleared, so one job is taken to find out.
        let mut jobs = FuturesUnordered::new();
        loop {
            let taking = jobs.len() < usize::from(PREFETCH)
                && (jobs.is_empty() || !waiting.load(Ordering::SeqCst));
            tokio::select! {
                next = consumer.next(), if taking => match next {
                    Some(delivery) => jobs.push(self.handle(delivery.map_err(BusError::Consumer)?, waiting)),
                    None => break,
                },
                Some(done) = jobs.next(), if !jobs.is_empty() => done?,
            }
        }
        while let Some(done) = jobs.next().await {
            done?;
        }
        drop(conn);
        Ok(())
    }

    /// Errors only for broker trouble (ack/nack failed); job failures are handled here.
    async fn handle(&self, d: Delivery, waiting: &AtomicBool) -> Result<(), BusError> {
        let env: Envelope = match serde_json::from_slice(&d.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %chain(&e), "undecodable message on the email queue; dead-lettering it");
                self.metrics.emails_dead_lettered.inc();
                return d
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..BasicNackOptions::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(BusError::Nack);
            }
        };
        let id = env.id;
        // Every line about this job names the request and the correlation id behind it.
        let span = tracing::info_span!(
            "email_job",
            message_id = %id,
            request_id = env.request_id.as_deref().unwrap_or(""),
            correlation_id = env.correlation_id.as_deref().unwrap_or(""),
        );
        let room = Mailroom {
            mailer: self.mailer.clone(),
            from: self.from.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            templates: self.templates.clone(),
            vapid: self.vapid.clone(),
            http: self.http.clone(),
            sms: self.sms.clone(),
        };
        let (room_for_log, env_for_log) = (room.clone(), env.clone());
        let outcome = loop {
            match deliver(room.clone(), env.clone())
                .instrument(span.clone())
                .await
            {
                Err(e) if self.database_is_down(&e).await => {
                    span.in_scope(|| tracing::warn!(%id, error = %chain(&e), "the database does not answer; holding the job until it does"));
                    wait_for_database(&self.store, waiting).await;
                    span.in_scope(
                        || tracing::info!(%id, "the database answers again; running the job again"),
                    );
                }
                outcome => break outcome,
            }
        };
        if outcome.is_ok() {
            // The job went through the database: it answers.
            waiting.store(false, Ordering::SeqCst);
        }
        match outcome {
            Ok(()) => d
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(BusError::Ack),
            Err(e) if delivery_count(&d) + 1 >= i64::from(EMAIL_DELIVERY_LIMIT) => {
                // The broker would only redeliver it to dead-letter it: say so in the log now.
                let answer = chain(&e);
                span.in_scope(|| tracing::error!(%id, error = %answer, "sending failed for the last time; dead-lettering"));
                if let Err(le) = give_up(&room_for_log, &env_for_log, &answer).await {
                    span.in_scope(|| tracing::warn!(%id, error = %chain(&le), "the delivery log could not record the dead job"));
                }
                self.metrics.emails_dead_lettered.inc();
                d.nack(BasicNackOptions {
                    requeue: false,
                    ..BasicNackOptions::default()
                })
                .await
                .map(|_| ())
                .map_err(BusError::Nack)
            }
            Err(e) => {
                let count = delivery_count(&d);
                let wait = Duration::from_millis(250u64.saturating_mul(1 << count.clamp(0, 5)));
                span.in_scope(|| tracing::warn!(%id, error = %chain(&e), deliveries = count + 1, retry_in_ms = wait.as_millis() as u64, "sending failed; requeueing"));
                tokio::time::sleep(wait).await;
                d.nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .map(|_| ())
                .map_err(BusError::Nack)
            }
        }
    }

    /// Whether `e` is the database being unreachable rather than the job failing: a database
    /// error while the database does not answer a ping. (A statement the database answers
    /// with an error is the job's failure, and counts.)
    async fn database_is_down(&self, e: &MailError) -> bool {
        matches!(e, MailError::Inbox(StorageError::Backend(_)))
            && !database_answers(&self.store).await
    }
}
