//! The purger: on a schedule (`KEYWARD_RETENTION__EVERY_SECS`), deletes the rows that have done
//! their work and are older than their retention period: published outbox rows, processed
//! inbox records, ended sessions with their refresh tokens, spent email tokens, failed logins,
//! and, only when `KEYWARD_RETENTION__AUDIT_DAYS` is set, audit lines. Counts what it removed
//! in `keyward_retention_purged_total{table}`.
//!
//! Deletes go in batches of `KEYWARD_RETENTION__BATCH_SIZE` rows, each its own short statement,
//! so no run holds locks on a table (or SQLite's one writer) for long. On PostgreSQL a run
//! first takes a transaction-scoped advisory lock and skips when another node's purger holds
//! it; on SQLite the node is the only writer.
//!
//! Refuses: choosing rows (storage's `Retention` decides what is old enough and what must
//! stay), and stopping the node: a failed run is logged, counted and retried at the next one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyward_config::RetentionSettings;
use keyward_storage::{Result, Store};

use crate::metrics::Metrics;
use crate::Clock;

/// Pause between two batches, so queued requests get the database in between.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// What the purger keeps, from `[retention]`.
#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    /// Time between two runs (the first comes this long after start).
    pub every: Duration,
    /// Rows per delete statement.
    pub batch: u64,
    pub outbox: chrono::Duration,
    pub inbox: chrono::Duration,
    pub sessions: chrono::Duration,
    pub login_failures: chrono::Duration,
    /// `None`: the audit log is kept forever.
    pub audit: Option<chrono::Duration>,
}

impl RetentionPolicy {
    /// The policy `[retention]` describes; `None` when the purger is off (`every_secs = 0`).
    pub fn from_settings(r: &RetentionSettings) -> Option<Self> {
        let days = |d: u32| chrono::Duration::days(i64::from(d));
        (r.every_secs > 0).then(|| RetentionPolicy {
            every: Duration::from_secs(r.every_secs),
            batch: r.batch_size.max(1),
            outbox: days(r.outbox_days),
            inbox: days(r.inbox_days),
            sessions: days(r.sessions_days),
            login_failures: days(r.login_failures_days),
            audit: r.audit_days.map(days),
        })
    }
}

/// Rows one run removed, by table (the label values of
/// [`crate::metrics::RETENTION_TABLES`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub outbox: u64,
    pub inbox: u64,
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub email_tokens: u64,
    pub login_failures: u64,
    pub audit_log: u64,
    /// Ended sessions kept as their user's last login, whose IP and user agent were cleared.
    pub sessions_scrubbed: u64,
}

impl PurgeReport {
    /// Rows deleted, all tables together.
    pub fn total(&self) -> u64 {
        self.outbox
            + self.inbox
            + self.sessions
            + self.refresh_tokens
            + self.email_tokens
            + self.login_failures
            + self.audit_log
    }
}

/// A node's purger. Start it with [`Purger::run`]; [`Purger::run_once`] is one run.
pub struct Purger {
    pub store: Store,
    pub clock: Clock,
    pub metrics: Metrics,
    pub policy: RetentionPolicy,
}

/// Runs `batch` until it comes back short, with a pause between two batches; `each` sees
/// every batch's count as it completes.
async fn repeat<F, Fut>(limit: u64, mut batch: F, mut each: impl FnMut(u64)) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        each(n);
        total += n;
        if n < limit {
            return Ok(total);
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
}

/// [`repeat`], counting the rows deleted from `table` as they go (a run that fails half-way
/// still counts what it removed).
async fn drain<F, Fut>(metrics: &Metrics, table: &str, limit: u64, batch: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let counter = metrics.retention_purged.with_label_values(&[table]);
    repeat(limit, batch, |n| counter.inc_by(n)).await
}

/// Spawns this node's purger on the current runtime, unless `[retention]` turns it off.
pub fn start(settings: &RetentionSettings, store: &Store, clock: &Clock, metrics: &Metrics) {
    if let Some(policy) = RetentionPolicy::from_settings(settings) {
        let purger = Purger {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            policy,
        };
        // NOTE: a tokio task, not an arbiter-local one: when the runtime goes away mid-run, the
        // run's pooled connection is dropped inside the runtime, which sqlx needs to return
        // it (outside, its drop panics and aborts the process).
        tokio::spawn(purger.run());
    }
}

impl Purger {
    /// Every `policy.every`, one run; never returns.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(self.policy.every).await;
            let outcome = match self.run_once().await {
                Ok(Some(report)) => {
                    if report.total() > 0 || report.sessions_scrubbed > 0 {
                        tracing::info!(
                            outbox = report.outbox,
                            inbox = report.inbox,
                            sessions = report.sessions,
                            refresh_tokens = report.refresh_tokens,
                            email_tokens = report.email_tokens,
                            login_failures = report.login_failures,
                            audit_log = report.audit_log,
                            sessions_scrubbed = report.sessions_scrubbed,
                            "retention: purged {} rows past their retention",
                            report.total()
                        );
                    }
                    "completed"
                }
                Ok(None) => {
                    tracing::debug!("retention: another node's purger is running; skipped");
                    "skipped"
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "retention: the purge failed; retrying at the next run");
                    "failed"
                }
            };
            self.metrics
                .retention_runs
                .with_label_values(&[outcome])
                .inc();
        }
    }

    /// One run at the clock's current time: what it removed, or `None` when another node's
    /// purger holds the lock (PostgreSQL).
    pub async fn run_once(&self) -> Result<Option<PurgeReport>> {
        let now = (self.clock)();
        // NOTE: the lock lives in a transaction of its own that writes nothing and is held
        // for the whole run; the deletes commit batch by batch on other connections. On
        // SQLite there is one pooled connection, which that transaction would hold.
        let lock = if self.store.is_postgres() {
            let tx = self.store.begin().await?;
            if !tx.retention().try_lock().await? {
                tx.rollback().await?;
                return Ok(None);
            }
            Some(tx)
        } else {
            None
        };
        let mut report = PurgeReport::default();
        let result = self.purge(now, &mut report).await;
        if let Some(tx) = lock {
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %crate::error::chain(&e), "retention: releasing the lock failed; it goes with its connection");
            }
        }
        result.map(|()| Some(report))
    }

    async fn purge(&self, now: DateTime<Utc>, report: &mut PurgeReport) -> Result<()> {
        let (p, m, batch) = (&self.policy, &self.metrics, self.policy.batch);
        let r = self.store.retention();
        let before = now - p.outbox;
        report.outbox = drain(m, "outbox", batch, || r.purge_outbox(before, batch)).await?;
        let before = now - p.inbox;
        report.inbox = drain(m, "inbox", batch, || r.purge_inbox(before, batch)).await?;
        let before = now - p.sessions;
        report.refresh_tokens = drain(m, "refresh_tokens", batch, || {
            r.purge_session_tokens(before, batch)
        })
        .await?;
        report.sessions = drain(m, "sessions", batch, || r.purge_sessions(before, batch)).await?;
        report.sessions_scrubbed =
            repeat(batch, || r.scrub_sessions(before, batch), |_| {}).await?;
        report.email_tokens = drain(m, "email_tokens", batch, || {
            r.purge_email_tokens(before, batch)
        })
        .await?;
        let before = now - p.login_failures;
        report.login_failures = drain(m, "login_failures", batch, || {
            r.purge_login_failures(before, batch)
        })
        .await?;
        if let Some(audit) = p.audit {
            let before = now - audit;
            let store = &self.store;
            report.audit_log = drain(m, "audit_log", batch, || async move {
                let tx = store.begin().await?;
                let n = tx.retention().purge_audit_log(before, batch).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
