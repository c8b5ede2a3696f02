//! Retention: the purger deletes what is past its period on a schedule, counts it in
//! /metrics, keeps the audit log unless told otherwise, and runs on one node at a time.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

use crate::helpers::{backend, spawn_app_with, Options, TestApp, PASSWORD};
use crate::ops::{sample, scrape};

const DAY: i64 = 86_400;

/// Purges every second; published events and failed logins are kept one day.
fn fast_purger() -> Options {
    Options {
        settings: Some(Box::new(|s| {
            s.retention.every_secs = 1;
            s.retention.outbox_days = 1;
            s.retention.login_failures_days = 1;
        })),
        ..Options::default()
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn purged(app: &TestApp, table: &str) -> f64 {
    let text = scrape(&app.management).await;
    sample(&text, "keyward_retention_purged_total", &[("table", table)]).unwrap_or(-1.0)
}

async fn runs(app: &TestApp, outcome: &str) -> f64 {
    let text = scrape(&app.management).await;
    sample(
        &text,
        "keyward_retention_runs_total",
        &[("outcome", outcome)],
    )
    .unwrap_or(-1.0)
}

/// Waits up to 15 s for `check`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} ({})", backend());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn after_the_retention_period_published_events_and_failed_logins_are_purged_and_counted() {
    let app = spawn_app_with(fast_purger()).await;
    app.verified_user("kept@example.com", None).await;
    let wrong = app.login("kept@example.com", "not the password").await;
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    app.wait_outbox_drained().await;
    let events = count(&app, "SELECT COUNT(*) FROM outbox").await;
    let audit = count(&app, "SELECT COUNT(*) FROM audit_log").await;
    assert!(!app.events_of_type("user.registered").await.is_empty());
    assert!(audit > 0);
    assert_eq!(purged(&app, "outbox").await, 0.0, "exported from the start");
    // A day is not past the period yet: a few runs remove nothing.
    app.advance(DAY - 600);
    eventually("two runs", || async {
        runs(&app, "completed").await >= 2.0
    })
    .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, events);

    app.advance(DAY + 600);
    eventually("the published events are purged", || async {
        count(&app, "SELECT COUNT(*) FROM outbox").await == 0
    })
    .await;

    eventually("/metrics counts them", || async {
        purged(&app, "outbox").await == events as f64
    })
    .await;
    assert!(app.events_of_type("user.registered").await.is_empty());
    eventually("the failed login is purged", || async {
        count(&app, "SELECT COUNT(*) FROM login_failures").await == 0
    })
    .await;
    assert!(purged(&app, "login_failures").await >= 1.0);
    // The audit log is kept: KEYWARD_RETENTION__AUDIT_DAYS is not set.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM audit_log").await, audit);
    assert_eq!(purged(&app, "audit_log").await, 0.0);
    // The account itself is untouched, and a new event waits for its own period.
    app.login_ok("kept@example.com", PASSWORD).await;
    app.wait_outbox_drained().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!app.events_of_type("user.logged_in").await.is_empty());
}

/// Several nodes on one PostgreSQL database: while another node's purger holds the lock,
/// this node's runs are skipped (and counted so); once it is released, this node purges.
#[actix_web::test]
async fn on_postgresql_a_purger_skips_its_run_while_another_holds_the_lock() {
    if backend() != "postgres" {
        return;
    }
    let app = spawn_app_with(fast_purger()).await;
    app.verified_user("locked@example.com", None).await;
    app.wait_outbox_drained().await;
    // The purger's advisory lock (storage::retention's PURGE_LOCK), as another node holds it.
    let other = app.db.begin().await.unwrap();
    other
        .execute_unprepared("SELECT pg_advisory_xact_lock(7738725088349021186)")
        .await
        .unwrap();
    app.advance(2 * DAY);

    let skipped = runs(&app, "skipped").await;
    // The lock's transaction ends here whatever the checks say: dropped while a failed check
    // unwinds, its connection would go back to the pool outside the runtime and abort the
    // whole test binary.
    let held = std::panic::AssertUnwindSafe(async {
        eventually("two skipped runs", || async {
            runs(&app, "skipped").await >= skipped + 2.0
        })
        .await;
        assert!(count(&app, "SELECT COUNT(*) FROM outbox").await > 0);
        assert_eq!(purged(&app, "outbox").await, 0.0);
    });
    let checked = futures::FutureExt::catch_unwind(held).await;
    other.rollback().await.unwrap();
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
    eventually("purged once the lock is free", || async {
        count(&app, "SELECT COUNT(*) FROM outbox").await == 0
    })
    .await;
    assert!(purged(&app, "outbox").await > 0.0);
}
