//! `Federation` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::UserId;
use uuid::Uuid;

use super::{FlowRecord, IdentityRecord, LinkProofRecord, OAuthCodeRecord};
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

#[tokio::test]
async fn a_pending_link_counts_its_codes_and_failures_and_is_taken_once() {
    let db = test_db().await;
    let user = UserId::new();
    let proof = LinkProofRecord {
        id: Uuid::now_v7(),
        token_hash: "t".repeat(64),
        user_id: user,
        provider: "acme".into(),
        subject: "sub-9".into(),
        email: Some("ann@example.com".into()),
        email_verified: true,
        code_hash: None,
        code_sent_at: None,
        codes_sent: 0,
        attempts: 0,
        created_at: at(0),
        expires_at: at(900),
    };
    let f = db.federation();
    f.insert_link_proof(&proof).await.unwrap();
    f.set_link_code(proof.id, "h1", at(10)).await.unwrap();
    f.fail_link_proof(proof.id).await.unwrap();
    f.fail_link_proof(proof.id).await.unwrap();
    let got = f
        .link_proof(&proof.token_hash, at(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.code_hash.as_deref(), Some("h1"));
    assert_eq!((got.codes_sent, got.attempts), (1, 2));
    assert_eq!(got.code_sent_at, Some(at(10)));
    assert!(
        f.link_proof(&proof.token_hash, at(900))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(f.take_link_proof(proof.id).await.unwrap());
    assert!(!f.take_link_proof(proof.id).await.unwrap(), "taken once");
    assert!(f
        .link_proof(&proof.token_hash, at(20))
        .await
        .unwrap()
        .is_none());

    f.insert_link_proof(&LinkProofRecord {
        id: Uuid::now_v7(),
        ..proof.clone()
    })
    .await
    .unwrap();
    f.erase_user(user).await.unwrap();
    assert!(
        f.link_proof(&proof.token_hash, at(20))
            .await
            .unwrap()
            .is_none(),
        "erased with the account"
    );
}
