//! `LoginFailures` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::testing::{at, test_db};

#[tokio::test]
async fn failures_are_counted_inside_the_window_only_with_the_latest() {
    let db = test_db().await;
    let tx = db.begin().await.unwrap();
    for t in [0, 20, 10] {
        tx.login_failures()
            .record("ip:192.0.2.7", at(t))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let failures = db.login_failures();
    let since = |t| failures.since("ip:192.0.2.7", at(t));
    assert_eq!(since(-1).await.unwrap(), (3, Some(at(20))));
    // The window starts after `since`: a failure at that instant is outside it.
    assert_eq!(since(0).await.unwrap(), (2, Some(at(20))));
    assert_eq!(since(20).await.unwrap(), (0, None));
}

#[tokio::test]
async fn failures_are_counted_and_cleared_per_key() {
    let db = test_db().await;
    let failures = db.login_failures();
    failures.record("account:kate", at(1)).await.unwrap();
    failures.record("account:kate", at(2)).await.unwrap();
    failures.record("login:bob", at(3)).await.unwrap();

    assert_eq!(failures.since("account:kate", at(0)).await.unwrap().0, 2);
    assert_eq!(failures.since("login:bob", at(0)).await.unwrap().0, 1);

    failures.clear("account:kate").await.unwrap();

    assert_eq!(
        failures.since("account:kate", at(0)).await.unwrap(),
        (0, None)
    );
    assert_eq!(
        failures.since("login:bob", at(0)).await.unwrap(),
        (1, Some(at(3)))
    );
}

#[tokio::test]
async fn concurrent_spenders_get_no_more_than_the_budget() {
    let db = test_db().await;
    const IP: &str = "sms:ip:192.0.2.7";
    const SPENDERS: usize = 12;
    // On PostgreSQL every transaction is open before any of them counts (SQLite's one writer
    // runs them one at a time anyway).
    let together = db
        .pg_url()
        .map(|_| std::sync::Arc::new(tokio::sync::Barrier::new(SPENDERS)));
    let mut spenders = tokio::task::JoinSet::new();
    for i in 0..SPENDERS {
        let (store, together) = (db.store.clone(), together.clone());
        spenders.spawn(async move {
            let tx = store.begin().await.unwrap();
            if let Some(b) = together {
                b.wait().await;
            }
            // Two budgets each: the address's, and one of two numbers' (never full).
            let number = if i % 2 == 0 {
                "sms:number:a"
            } else {
                "sms:number:b"
            };
            let keys = [(IP, 5), (number, 100)];
            let wait = tx
                .login_failures()
                .spend_hourly(&keys, at(0))
                .await
                .unwrap();
            if wait.is_none() {
                tx.commit().await.unwrap();
            }
            wait.is_none()
        });
    }
    let spent = spenders.join_all().await.into_iter().filter(|s| *s).count();
    assert_eq!(spent, 5, "{SPENDERS} at once against a budget of 5");
    let failures = db.login_failures();
    assert_eq!(failures.since(IP, at(-1)).await.unwrap().0, 5);
    let numbers = failures.since("sms:number:a", at(-1)).await.unwrap().0
        + failures.since("sms:number:b", at(-1)).await.unwrap().0;
    assert_eq!(numbers, 5, "a refused spend records none of its keys");

    // Full: the wait is until the oldest request leaves the hour; then there is room again.
    assert_eq!(tx_spend(&db, &[(IP, 5)], at(600)).await, Some(3000));
    assert_eq!(tx_spend(&db, &[(IP, 5)], at(3600)).await, None);
}

async fn tx_spend(
    db: &crate::testing::TestDb,
    keys: &[(&str, u64)],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<u64> {
    let tx = db.begin().await.unwrap();
    let wait = tx.login_failures().spend_hourly(keys, now).await.unwrap();
    tx.commit().await.unwrap();
    wait
}
