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
