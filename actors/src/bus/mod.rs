//! The outbox relay: reads committed outbox rows in order, hands each to the subscribers whose
//! prefix matches its type, and marks it published once every one of them has taken it. A
//! failed delivery is retried with backoff; nothing is dropped. In embedded mode the notify
//! actor subscribes to email jobs; in distributed mode the one subscriber is the AMQP publisher
//! ([`amqp`]), so a row is marked only once RabbitMQ confirmed it.

pub mod amqp;
pub mod broadcast;
mod error;

pub use error::BusError;

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use keyward_messages::events::Envelope;
use keyward_storage::{OutboxRecord, StorageError, Store};

use crate::error::chain;
use crate::metrics::Metrics;
use crate::Clock;

/// Relay → subscriber: one message to take. Ok means it was processed (or was a duplicate);
/// an error means the subscriber did not take it, and the relay retries it later.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), BusError>")]
pub struct Deliver(pub Envelope);

/// Anyone → relay: the outbox has new rows, look now rather than at the next tick.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// A consumer of messages whose type starts with `prefix` ("" for all).
#[derive(Clone)]
pub struct Subscriber {
    pub name: &'static str,
    pub prefix: &'static str,
    pub recipient: Recipient<Deliver>,
}

pub struct Relay {
    metrics: Metrics,
    store: Store,
    clock: Clock,
    subscribers: Vec<Subscriber>,
    running: bool,
    again: bool,
    failures: u32,
    not_before: Option<Instant>,
}

const TICK: Duration = Duration::from_millis(500);
const BATCH: u64 = 100;

impl Relay {
    pub fn new(store: Store, clock: Clock, subscribers: Vec<Subscriber>, metrics: Metrics) -> Self {
        Self {
            metrics,
            store,
            clock,
            subscribers,
            running: false,
            again: false,
            failures: 0,
            not_before: None,
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.again = true;
            return;
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.running = true;
        self.again = false;
        let store = self.store.clone();
        let clock = self.clock.clone();
        let subs = self.subscribers.clone();
        let metrics = self.metrics.clone();
        // Only the first failure of an outage is a warning; the retries say nothing new.
        let loud = self.failures == 0;
        async move {
            let ok = drain_once(&store, &clock, &subs, &metrics, loud).await;
            if let Ok(n) = store.outbox().backlog().await {
                metrics
                    .outbox_backlog
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            ok
        }
        .into_actor(self)
        .map(|ok, act, ctx| {
            act.running = false;
            if ok {
                if act.failures > 0 {
                    tracing::info!(failed_attempts = act.failures, "the outbox flows again");
                }
                act.failures = 0;
                act.not_before = None;
                if act.again {
                    act.drain(ctx);
                }
            } else {
                act.failures = act.failures.saturating_add(1);
                // NOTE: capped at a second: after an outage, events (and the mail jobs among
                // them) must flow within seconds of the broker's return. A retry while it is
                // still down costs a refused connection and one claim of the oldest rows.
                let ms = 250u64.saturating_mul(1 << act.failures.min(2)).min(1000);
                act.not_before = Some(Instant::now() + Duration::from_millis(ms));
            }
        })
        .spawn(ctx);
    }
}

enum Outcome {
    /// Every subscriber took it, or it can never be decoded (parked, logged): mark it.
    Done,
    /// A subscriber failed: keep it, retry later, and hold back the rows after it.
    Failed,
}

async fn deliver_row(row: &OutboxRecord, subs: &[Subscriber], loud: bool) -> Outcome {
    let env: Envelope = match serde_json::from_str(&row.payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(id = %row.id, error = %chain(&e), "undecodable outbox row; skipping it");
            return Outcome::Done;
        }
    };
    for s in subs.iter().filter(|s| env.kind.starts_with(s.prefix)) {
        let err = match s.recipient.send(Deliver(env.clone())).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => BusError::Unreachable(e),
        };
        if loud {
            tracing::warn!(id = %env.id, kind = %env.kind, subscriber = s.name, attempts = row.attempts + 1, error = %chain(&err), "delivery failed; will retry");
        } else {
            tracing::debug!(id = %env.id, kind = %env.kind, subscriber = s.name, attempts = row.attempts + 1, error = %chain(&err), "delivery failed again; will retry");
        }
        return Outcome::Failed;
    }
    tracing::debug!(id = %env.id, kind = %env.kind, "published");
    Outcome::Done
}

/// Publishes pending rows; false when a delivery failed (the rest waits for the retry). A
/// failure is logged as a warning when `loud` (the first of an outage), else at debug level.
async fn drain_once(
    store: &Store,
    clock: &Clock,
    subs: &[Subscriber],
    metrics: &Metrics,
    loud: bool,
) -> bool {
    let result = if store.is_postgres() {
        drain_claimed(store, clock, subs, metrics, loud).await
    } else {
        drain_plain(store, clock, subs, metrics, loud).await
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %chain(&e), "relay cannot use the outbox");
        false
    })
}

/// A batch after its delivery: the rows that went out (in order, up to the first failure),
/// the one that failed, and when.
struct Delivered {
    published: Vec<uuid::Uuid>,
    failed: Option<uuid::Uuid>,
    now: DateTime<Utc>,
}

/// Delivers `rows` in order until one fails, and counts the outcome: each row published with
/// how long it waited in the outbox, or the failure.
async fn deliver(
    rows: &[OutboxRecord],
    subs: &[Subscriber],
    metrics: &Metrics,
    clock: &Clock,
    loud: bool,
) -> Delivered {
    let mut published = Vec::with_capacity(rows.len());
    let mut failed = None;
    for row in rows {
        if let Outcome::Failed = deliver_row(row, subs, loud).await {
            failed = Some(row.id);
            break;
        }
        published.push(row);
    }
    let now = clock();
    for row in &published {
        metrics.outbox_published.inc();
        let lag = (now - row.created_at).to_std().unwrap_or_default();
        metrics.outbox_publish_lag.observe(lag.as_secs_f64());
    }
    if failed.is_some() {
        metrics.outbox_publish_failures.inc();
    }
    Delivered {
        published: published.iter().map(|r| r.id).collect(),
        failed,
        now,
    }
}

/// One relay per database (SQLite): read, deliver, then mark the batch in one statement. A
/// crash between a batch's delivery and its mark delivers the batch again: consumers
/// deduplicate by message id.
async fn drain_plain(
    store: &Store,
    clock: &Clock,
    subs: &[Subscriber],
    metrics: &Metrics,
    loud: bool,
) -> Result<bool, StorageError> {
    loop {
        let rows = store.outbox().pending(BATCH).await?;
        if rows.is_empty() {
            return Ok(true);
        }
        let d = deliver(&rows, subs, metrics, clock, loud).await;
        store.outbox().settle(&d.published, d.failed, d.now).await?;
        if d.failed.is_some() {
            return Ok(false);
        }
    }
}

/// Several nodes share the outbox (PostgreSQL): each batch is claimed with FOR UPDATE SKIP
/// LOCKED inside one transaction, so each row is published by one relay.
async fn drain_claimed(
    store: &Store,
    clock: &Clock,
    subs: &[Subscriber],
    metrics: &Metrics,
    loud: bool,
) -> Result<bool, StorageError> {
    loop {
        let tx = store.begin().await?;
        let rows = tx.outbox().claim_pending(BATCH).await?;
        if rows.is_empty() {
            return Ok(true);
        }
        let d = deliver(&rows, subs, metrics, clock, loud).await;
        tx.outbox().settle(&d.published, d.failed, d.now).await?;
        tx.commit().await?;
        if d.failed.is_some() {
            return Ok(false);
        }
    }
}

impl Actor for Relay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.drain(ctx));
        self.drain(ctx);
    }
}

impl Supervised for Relay {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.running = false;
    }
}

impl Handler<Wake> for Relay {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyward_messages::commands::Locale;
    use keyward_messages::events::{EmailJob, EmailTemplate, Outgoing};

    /// A subscriber that never takes anything.
    struct Refuses;

    impl Actor for Refuses {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Refuses {
        type Result = Result<(), BusError>;
        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) -> Self::Result {
            Err(BusError::ConnectTimeout)
        }
    }

    fn row(payload: String) -> OutboxRecord {
        OutboxRecord {
            id: uuid::Uuid::now_v7(),
            message_type: "email.verify_email".into(),
            payload,
            created_at: Utc::now(),
            attempts: 0,
        }
    }

    fn email_row() -> OutboxRecord {
        let job = Outgoing::Email(EmailJob {
            to: "a@example.com".into(),
            template: EmailTemplate::VerifyEmail.as_str().into(),
            locale: Locale::En,
            variables: Default::default(),
            delivery: None,
        });
        let env = Envelope::new(uuid::Uuid::now_v7(), Utc::now(), None, &job);
        row(serde_json::to_string(&env).unwrap())
    }

    #[actix_rt::test]
    async fn an_outbox_row_that_never_decodes_is_marked_done_not_retried() {
        let subs = [Subscriber {
            name: "refuses",
            prefix: "",
            recipient: Refuses.start().recipient(),
        }];

        let outcome = deliver_row(&row("{not an envelope".into()), &subs, true).await;

        assert!(matches!(outcome, Outcome::Done));
    }

    #[actix_rt::test]
    async fn a_subscriber_that_fails_keeps_the_row_for_a_retry() {
        let subs = [Subscriber {
            name: "refuses",
            prefix: "email.",
            recipient: Refuses.start().recipient(),
        }];

        let outcome = deliver_row(&email_row(), &subs, true).await;

        assert!(matches!(outcome, Outcome::Failed));
    }
}
