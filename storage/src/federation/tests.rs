//! `Federation` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::UserId;
use uuid::Uuid;

use super::{FlowRecord, IdentityRecord, OAuthCodeRecord};
use crate::testing::{at, test_db};

#[tokio::test]
async fn an_identity_belongs_to_one_account_and_unlinks_only_from_it() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    let id = IdentityRecord {
        id: Uuid::now_v7(),
        user_id: ann,
        provider: "acme".into(),
        subject: "sub-1".into(),
        email: Some("ann@example.com".into()),
        email_verified: true,
        created_at: at(1),
        last_login_at: None,
    };
    db.federation().insert_identity(&id).await.unwrap();
    let again = IdentityRecord {
        id: Uuid::now_v7(),
        user_id: bob,
        ..id.clone()
    };
    assert!(
        db.federation().insert_identity(&again).await.is_err(),
        "one (provider, subject) links to one account"
    );
    assert_eq!(
        db.federation().identity("acme", "sub-1").await.unwrap(),
        Some(id.clone())
    );
    assert!(db
        .federation()
        .identity("other", "sub-1")
        .await
        .unwrap()
        .is_none());
    db.federation()
        .touch_identity(id.id, Some("ann@new.example"), false, at(5))
        .await
        .unwrap();
    let got = db.federation().identities_of(ann).await.unwrap();
    assert_eq!(got[0].last_login_at, Some(at(5)));
    assert_eq!(got[0].email.as_deref(), Some("ann@new.example"));
    assert!(!db.federation().delete_identity(bob, id.id).await.unwrap());
    assert!(db.federation().delete_identity(ann, id.id).await.unwrap());
    assert!(db.federation().identities_of(ann).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_flow_and_a_code_are_taken_once_and_not_after_they_expired() {
    let db = test_db().await;
    let flow = |state: &str, expires| FlowRecord {
        id: Uuid::now_v7(),
        state_hash: state.into(),
        provider: "acme".into(),
        redirect_uri: "https://app.example.com/done".into(),
        nonce: "n".into(),
        pkce_verifier: "v1:sealed".into(),
        link_user_id: None,
        app_state: Some("app".into()),
        created_at: at(1),
        expires_at: expires,
    };
    let f = flow("s1", at(100));
    db.federation().insert_flow(&f).await.unwrap();
    assert_eq!(
        db.federation().take_flow("s1", at(2)).await.unwrap(),
        Some(f)
    );
    assert!(
        db.federation()
            .take_flow("s1", at(2))
            .await
            .unwrap()
            .is_none(),
        "a replayed callback"
    );
    db.federation()
        .insert_flow(&flow("late", at(10)))
        .await
        .unwrap();
    assert!(db
        .federation()
        .take_flow("late", at(10))
        .await
        .unwrap()
        .is_none());

    let user = UserId::new();
    let code = |hash: &str, expires| OAuthCodeRecord {
        code_hash: hash.into(),
        user_id: user,
        provider: "acme".into(),
        created_at: at(1),
        expires_at: expires,
    };
    db.federation()
        .insert_code(&code("c1", at(100)))
        .await
        .unwrap();
    assert_eq!(
        db.federation()
            .take_code("c1", at(2))
            .await
            .unwrap()
            .map(|c| c.user_id),
        Some(user)
    );
    assert!(db
        .federation()
        .take_code("c1", at(2))
        .await
        .unwrap()
        .is_none());
    db.federation()
        .insert_code(&code("old", at(10)))
        .await
        .unwrap();
    db.federation()
        .insert_flow(&flow("old", at(10)))
        .await
        .unwrap();
    assert_eq!(db.federation().prune_expired(at(11)).await.unwrap(), 2);
}

#[tokio::test]
async fn a_native_apps_id_token_is_spent_once() {
    let db = test_db().await;
    assert!(db.federation().spend_token("t1", at(100)).await.unwrap());
    assert!(
        !db.federation().spend_token("t1", at(100)).await.unwrap(),
        "a replay"
    );
    assert!(db.federation().spend_token("t2", at(10)).await.unwrap());
    assert_eq!(db.federation().prune_expired(at(11)).await.unwrap(), 1);
}
