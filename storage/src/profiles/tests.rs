//! `Profiles` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::profiles::Visibility;
use keyward_messages::{UserId, Username};
use serde_json::json;

use super::ProfileRecord;
use crate::testing::{at, test_db};

fn profile(user: UserId) -> ProfileRecord {
    let mut p = ProfileRecord::empty(user, Visibility::Users, at(0));
    p.display_name = Some("Пётр Ёлкин".into());
    p.country = Some("RU".into());
    p.attributes = json!({"skills": ["rust", "sql"], "rate": 40})
        .as_object()
        .cloned()
        .unwrap();
    p
}

#[tokio::test]
async fn a_profile_is_read_back_as_written_and_replaced_whole() {
    let db = test_db().await;
    let user = UserId::new();
    assert_eq!(db.profiles().get(user).await.unwrap(), None);

    let mut p = profile(user);
    db.profiles().put(&p).await.unwrap();
    assert_eq!(db.profiles().get(user).await.unwrap(), Some(p.clone()));

    p.display_name = None;
    p.visibility = Visibility::Private;
    p.updated_at = at(5);
    db.profiles().put(&p).await.unwrap();
    assert_eq!(db.profiles().get(user).await.unwrap(), Some(p));
}

#[tokio::test]
async fn settings_start_empty_and_are_replaced() {
    let db = test_db().await;
    let user = UserId::new();
    assert!(db.profiles().settings(user).await.unwrap().is_empty());
    let s = json!({"theme": "dark", "tabs": [1, 2]})
        .as_object()
        .cloned()
        .unwrap();
    db.profiles().put_settings(user, &s, at(1)).await.unwrap();
    db.profiles().put_settings(user, &s, at(2)).await.unwrap();
    assert_eq!(db.profiles().settings(user).await.unwrap(), s);
}

#[tokio::test]
async fn a_reservation_holds_a_name_and_its_lookalikes_until_it_expires() {
    let db = test_db().await;
    let (owner, other) = (UserId::new(), UserId::new());
    let name = Username::parse("username", "coco").unwrap();
    db.profiles().reserve(&name, owner, at(100)).await.unwrap();

    // All-Cyrillic "сосо" reads as "coco": the same hold.
    let lookalike = Username::parse("username", "сосо").unwrap();
    assert_eq!(
        db.profiles().reserved_by(&lookalike, at(99)).await.unwrap(),
        Some(owner)
    );
    assert_eq!(
        db.profiles().reserved_by(&name, at(100)).await.unwrap(),
        None
    );

    db.profiles().reserve(&name, other, at(200)).await.unwrap();
    assert_eq!(
        db.profiles().reserved_by(&name, at(150)).await.unwrap(),
        Some(other)
    );
}

#[tokio::test]
async fn deletions_come_due_in_order_and_a_cancelled_one_does_not() {
    let db = test_db().await;
    let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
    for (u, due) in [(a, 20), (b, 10), (c, 30)] {
        let mut p = profile(u);
        p.deletion_due_at = Some(at(due));
        db.profiles().put(&p).await.unwrap();
    }
    assert_eq!(
        db.profiles().deletions_due(at(25), 10).await.unwrap(),
        vec![b, a]
    );
    assert!(db.profiles().cancel_deletion(a, at(26)).await.unwrap());
    assert!(!db.profiles().cancel_deletion(a, at(26)).await.unwrap());
    assert_eq!(
        db.profiles().deletions_due(at(40), 10).await.unwrap(),
        vec![b, c]
    );

    db.profiles().erase(b).await.unwrap();
    assert_eq!(db.profiles().get(b).await.unwrap(), None);
    assert_eq!(
        db.profiles().deletions_due(at(40), 10).await.unwrap(),
        vec![c]
    );
}
