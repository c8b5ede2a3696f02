#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::TimeZone;
use keyward_config::RetentionSettings;
use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
use keyward_messages::UserId;
use keyward_storage::{AuditRecord, Store};
use uuid::Uuid;

use super::*;

fn t(days: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(days)
}

async fn store() -> Store {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn purger(store: &Store, now: DateTime<Utc>, r: RetentionSettings) -> Purger {
    let registry = prometheus::Registry::new();
    Purger {
        store: store.clone(),
        clock: Arc::new(move || now),
        metrics: Metrics::register(&registry).unwrap(),
        policy: RetentionPolicy::from_settings(&r).unwrap(),
    }
}

async fn published(store: &Store, at: DateTime<Utc>) -> Uuid {
    let ev = DomainEvent::UserUnblocked {
        user_id: UserId::new(),
        by: None,
        by_client: None,
    };
    let env = Envelope::new(Uuid::now_v7(), at, None, &Outgoing::Event(ev));
    store.outbox().enqueue(&env).await.unwrap();
    store.outbox().mark_published(&[env.id], at).await.unwrap();
    env.id
}

fn audit(at: DateTime<Utc>) -> AuditRecord {
    AuditRecord {
        at,
        kind: "user.login_failed".into(),
        user_id: None,
        actor_id: None,
        actor_client_id: None,
        ip: None,
        user_agent: None,
        request_id: None,
        details: "{}".into(),
    }
}

#[test]
fn an_every_of_zero_turns_the_purger_off() {
    let off = RetentionSettings {
        every_secs: 0,
        ..RetentionSettings::default()
    };
    assert!(RetentionPolicy::from_settings(&off).is_none());
    let p = RetentionPolicy::from_settings(&RetentionSettings::default()).unwrap();
    assert_eq!(p.every, Duration::from_secs(3600));
    assert_eq!(p.outbox, chrono::Duration::days(7));
    assert_eq!(p.audit, None, "the audit log is kept by default");
}

#[tokio::test]
async fn a_run_removes_what_is_past_retention_in_batches_and_counts_it_per_table() {
    let store = store().await;
    for _ in 0..5 {
        published(&store, t(0)).await;
    }
    let young = published(&store, t(9)).await;
    for d in [0, 1, 9] {
        store
            .login_failures()
            .record("ip:192.0.2.7", t(d))
            .await
            .unwrap();
    }
    store.audit().append(&audit(t(0))).await.unwrap();
    let p = purger(
        &store,
        t(10),
        RetentionSettings {
            batch_size: 2,
            ..RetentionSettings::default()
        },
    );

    let report = p.run_once().await.unwrap().unwrap();

    assert_eq!(report.outbox, 5);
    assert_eq!(report.login_failures, 2);
    assert_eq!(
        report.audit_log, 0,
        "kept: no KEYWARD_RETENTION__AUDIT_DAYS"
    );
    let purged = |table: &str| p.metrics.retention_purged.with_label_values(&[table]).get();
    assert_eq!((purged("outbox"), purged("login_failures")), (5, 2));
    assert_eq!(purged("audit_log"), 0);
    let left = store.outbox().recent(t(-1), &["user.unblocked"], 10).await;
    let left: Vec<Uuid> = left.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, [young]);
    assert_eq!(store.audit().latest(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn with_audit_days_old_audit_lines_go_too() {
    let store = store().await;
    store.audit().append(&audit(t(0))).await.unwrap();
    store.audit().append(&audit(t(0))).await.unwrap();
    store.audit().append(&audit(t(50))).await.unwrap();
    let p = purger(
        &store,
        t(60),
        RetentionSettings {
            batch_size: 1,
            audit_days: Some(30),
            ..RetentionSettings::default()
        },
    );

    let report = p.run_once().await.unwrap().unwrap();

    assert_eq!(report.audit_log, 2);
    assert_eq!(store.audit().latest(10).await.unwrap().len(), 1);
    let purged = p.metrics.retention_purged.with_label_values(&["audit_log"]);
    assert_eq!(purged.get(), 2);
}
