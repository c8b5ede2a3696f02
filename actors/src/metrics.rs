//! Prometheus metrics of a node or worker, registered on one registry per process that the
//! management bind serves at /metrics. Names are prefixed `keyward_`.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

/// Every metric this crate updates. Cheap to clone (handles share their values).
#[derive(Clone)]
pub struct Metrics {
    pub outbox_backlog: IntGauge,
    pub outbox_published: IntCounter,
    pub outbox_publish_failures: IntCounter,
    pub hasher_in_flight: IntGauge,
    pub hasher_shed: IntCounter,
    pub actor_restarts: IntCounter,
    pub emails_sent: IntCounter,
    pub emails_failed: IntCounter,
    pub emails_dead_lettered: IntCounter,
    pub amqp_consuming: IntGauge,
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
            hasher_in_flight: gauge(
                r,
                "keyward_hasher_in_flight",
                "Password hashing jobs running or queued",
            )?,
            hasher_shed: counter(
                r,
                "keyward_hasher_shed_total",
                "Requests refused with 503 because the hasher queue was full",
            )?,
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
        })
    }
}
