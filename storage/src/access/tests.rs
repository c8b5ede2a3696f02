//! `Access` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::UserId;

use super::{ClientRecord, RoleRecord};
use crate::testing::{at, test_db};

fn role(name: &str, perms: &[&str]) -> RoleRecord {
    RoleRecord {
        name: name.into(),
        description: format!("the {name}s"),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        source: "api".into(),
        updated_at: at(1),
    }
}

#[tokio::test]
async fn roles_are_created_replaced_listed_and_deleted() {
    let db = test_db().await;
    assert!(db.access().roles().await.unwrap().is_empty());
    let mut organizer = role("organizer", &["events:read", "events:write"]);
    db.access().put_role(&organizer).await.unwrap();
    db.access()
        .put_role(&role("attendee", &["events:read"]))
        .await
        .unwrap();
    organizer.permissions.push("tickets:scan".into());
    organizer.updated_at = at(2);
    db.access().put_role(&organizer).await.unwrap();

    let names: Vec<_> = db
        .access()
        .roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["attendee", "organizer"]);
    assert_eq!(
        db.access().role("organizer").await.unwrap(),
        Some(organizer)
    );
    assert!(db.access().delete_role("attendee").await.unwrap());
    assert!(!db.access().delete_role("attendee").await.unwrap());
    assert_eq!(db.access().role("attendee").await.unwrap(), None);
}

#[tokio::test]
async fn a_grant_and_a_revoke_say_whether_they_changed_anything() {
    let db = test_db().await;
    let (kate, bob) = (UserId::new(), UserId::new());
    assert!(db.access().grant(kate, "organizer", at(1)).await.unwrap());
    assert!(!db.access().grant(kate, "organizer", at(2)).await.unwrap());
    assert!(db.access().grant(bob, "organizer", at(2)).await.unwrap());
    assert!(db.access().grant(bob, "attendee", at(2)).await.unwrap());
    assert_eq!(
        db.users().roles_of(bob).await.unwrap(),
        ["attendee", "organizer"]
    );
    assert_eq!(db.access().holders_of("organizer").await.unwrap(), 2);
    let mut holders = db.access().holders().await.unwrap();
    holders.sort();
    assert_eq!(
        holders,
        [("attendee".to_owned(), 1), ("organizer".to_owned(), 2)]
    );

    assert!(db.access().revoke(kate, "organizer").await.unwrap());
    assert!(!db.access().revoke(kate, "organizer").await.unwrap());
    assert!(db.users().roles_of(kate).await.unwrap().is_empty());
    assert_eq!(db.access().holders_of("organizer").await.unwrap(), 1);
}

#[tokio::test]
async fn clients_keep_their_scopes_and_change_only_their_secret() {
    let db = test_db().await;
    let c = ClientRecord {
        id: "kwc_booking".into(),
        name: "booking".into(),
        secret_hash: "$argon2id$one".into(),
        scopes: vec!["access:check".into(), "notifications:send".into()],
        created_at: at(1),
        created_by: Some(UserId::new()),
    };
    db.access().create_client(&c).await.unwrap();
    assert!(
        db.access().create_client(&c).await.is_err(),
        "an id is unique"
    );
    assert_eq!(
        db.access().client("kwc_booking").await.unwrap(),
        Some(c.clone())
    );
    assert!(db
        .access()
        .set_client_secret("kwc_booking", "$argon2id$two")
        .await
        .unwrap());
    assert!(!db
        .access()
        .set_client_secret("kwc_nobody", "x")
        .await
        .unwrap());
    let all = db.access().clients().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].secret_hash, "$argon2id$two");
    assert_eq!(all[0].scopes, c.scopes);
    assert!(db.access().delete_client("kwc_booking").await.unwrap());
    assert_eq!(db.access().client("kwc_booking").await.unwrap(), None);
}
