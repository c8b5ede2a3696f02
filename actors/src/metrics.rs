//! Prometheus metrics of a node or worker, registered on one registry per process that the
//! management bind serves at /metrics. Names are prefixed `keyward_`, durations are in seconds
//! and counters end in `_total`, as Prometheus' naming conventions ask.
//!
//! Refuses: labels with unbounded values (ids, emails, addresses): every label here takes one
//! of a fixed set of values.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every value `keyward_logins_total{outcome}` takes; each is exported from the start (at 0).
pub const LOGIN_OUTCOMES: [&str; 7] = [
    "success",
    "invalid_credentials",
    "throttled",
    "blocked",
    "email_not_verified",
    "overloaded",
    "error",
];

/// Every value `keyward_retention_purged_total{table}` takes: the tables the purger deletes
/// from; each is exported from the start (at 0).
pub const RETENTION_TABLES: [&str; 7] = [
    "outbox",
    "inbox",
    "sessions",
    "refresh_tokens",
    "email_tokens",
    "login_failures",
    "audit_log",
];

/// Every value `keyward_retention_runs_total{outcome}` takes: `completed`, `skipped` (another
/// node's purger held the lock) or `failed` (retried at the next run).
pub const RETENTION_OUTCOMES: [&str; 3] = ["completed", "skipped", "failed"];

/// Waits and runs of the hasher pool: an argon2id verify with OWASP parameters takes tens of
/// milliseconds; a wait beyond a few seconds means the pool is far too small.
const HASHER_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Outbox row written → published: well under a second normally, up to hours in an outage.
const LAG_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Every metric this crate updates. Cheap to clone (handles share their values).
#[derive(Clone)]
pub struct Metrics {
    pub outbox_backlog: IntGauge,
    pub outbox_published: IntCounter,
    pub outbox_publish_failures: IntCounter,
    /// Time from an outbox row's creation to its publication, observed as the relay marks it.
    pub outbox_publish_lag: Histogram,
    pub hasher_in_flight: IntGauge,
    /// Admitted jobs that wait for a pool thread (a part of `hasher_in_flight`).
    pub hasher_queue_depth: IntGauge,
    /// Time from a job's admission to the start of its run on a pool thread.
    pub hasher_wait: Histogram,
    /// Time a job runs on a pool thread.
    pub hasher_duration: Histogram,
    pub hasher_shed: IntCounter,
    /// Logins by outcome, one of [`LOGIN_OUTCOMES`].
    pub logins: IntCounterVec,
    pub actor_restarts: IntCounter,
    pub emails_sent: IntCounter,
    pub emails_failed: IntCounter,
    pub emails_dead_lettered: IntCounter,
    pub amqp_consuming: IntGauge,
    /// 1 while a node consumes `keyward.broadcast` (distributed mode).
    pub broadcast_consuming: IntGauge,
    /// 1 while this process holds a live RabbitMQ connection (a node's publisher, a worker).
    pub amqp_connected: IntGauge,
    /// Rows the purger deleted, by table (one of [`RETENTION_TABLES`]).
    pub retention_purged: IntCounterVec,
    /// The purger's runs, by outcome (one of [`RETENTION_OUTCOMES`]).
    pub retention_runs: IntCounterVec,
    /// Calls to Vault Transit's sign endpoint (each signs a batch).
    pub signing_batches: IntCounter,
    /// Of those, the ones that failed (Vault down, slow or refusing).
    pub signing_failures: IntCounter,
    /// Tokens signed, by where the key is (`local` or `vault`).
    pub signatures: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::with_opts(Opts::new(name, help))?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

fn logins(r: &Registry) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(
        Opts::new("keyward_logins_total", "Login attempts by outcome"),
        &["outcome"],
    )?;
    r.register(Box::new(c.clone()))?;
    for outcome in LOGIN_OUTCOMES {
        c.with_label_values(&[outcome]);
    }
    Ok(c)
}

/// A counter with one label, every value of which is exported from the start (at 0).
fn labelled(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    r.register(Box::new(c.clone()))?;
    for v in values {
        c.with_label_values(&[v]);
    }
    Ok(c)
}

impl Metrics {
    pub fn register(r: &Registry) -> Result<Metrics, prometheus::Error> {
        Ok(Metrics {
            outbox_backlog: gauge(
                r,
                "keyward_outbox_backlog",
                "Outbox messages not yet published (as of the relay's last pass)",
            )?,
            outbox_published: counter(
                r,
                "keyward_outbox_published_total",
                "Outbox messages published by this node's relay",
            )?,
            outbox_publish_failures: counter(
                r,
                "keyward_outbox_publish_failures_total",
                "Failed publish attempts (retried)",
            )?,
            outbox_publish_lag: histogram(
                r,
                "keyward_outbox_publish_lag_seconds",
                "Time from an outbox row's creation to its publication",
                &LAG_BUCKETS,
            )?,
            hasher_in_flight: gauge(
                r,
                "keyward_hasher_in_flight",
                "Password hashing jobs running or queued",
            )?,
            hasher_queue_depth: gauge(
                r,
                "keyward_hasher_queue_depth",
                "Password hashing jobs admitted and waiting for a pool thread",
            )?,
            hasher_wait: histogram(
                r,
                "keyward_hasher_wait_seconds",
                "Time a password hashing job waits for a pool thread",
                &HASHER_BUCKETS,
            )?,
            hasher_duration: histogram(
                r,
                "keyward_hasher_duration_seconds",
                "Time a password hashing job runs on a pool thread",
                &HASHER_BUCKETS,
            )?,
            hasher_shed: counter(
                r,
                "keyward_hasher_shed_total",
                "Requests refused with 503 because the hasher queue was full",
            )?,
            logins: logins(r)?,
            actor_restarts: counter(
                r,
                "keyward_actor_restarts_total",
                "Context actors restarted after a handler panic",
            )?,
            emails_sent: counter(
                r,
                "keyward_emails_sent_total",
                "Emails handed to the mail transport",
            )?,
            emails_failed: counter(
                r,
                "keyward_emails_failed_total",
                "Email send attempts that failed (retried)",
            )?,
            emails_dead_lettered: counter(
                r,
                "keyward_emails_dead_lettered_total",
                "Email jobs rejected to keyward.dead",
            )?,
            amqp_consuming: gauge(
                r,
                "keyward_amqp_consuming",
                "1 while the worker consumes from RabbitMQ",
            )?,
            broadcast_consuming: gauge(
                r,
                "keyward_broadcast_consuming",
                "1 while the node consumes keyward.broadcast; at 0, other nodes' revocations reach it only through the session recheck",
            )?,
            amqp_connected: gauge(
                r,
                "keyward_amqp_connected",
                "1 while this process is connected to RabbitMQ (0 without a broker configured)",
            )?,
            retention_purged: labelled(
                r,
                "keyward_retention_purged_total",
                "Rows deleted by this node's purger, by table",
                "table",
                &RETENTION_TABLES,
            )?,
            retention_runs: labelled(
                r,
                "keyward_retention_runs_total",
                "Runs of this node's purger, by outcome (skipped: another node's purger held the lock)",
                "outcome",
                &RETENTION_OUTCOMES,
            )?,
            signing_batches: counter(
                r,
                "keyward_signing_batches_total",
                "Calls to Vault Transit's sign endpoint, each signing a batch of tokens",
            )?,
            signing_failures: counter(
                r,
                "keyward_signing_failures_total",
                "Vault Transit sign calls that failed (Vault down, slow or refusing: 503s)",
            )?,
            signatures: labelled(
                r,
                "keyward_signatures_total",
                "Tokens signed, by where the key is",
                "backend",
                &["local", "vault"],
            )?,
        })
    }
}
