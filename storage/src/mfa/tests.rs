//! `Mfa` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::UserId;
use uuid::Uuid;

use super::{CeremonyRecord, ChallengeRecord, FactorRecord};
use crate::testing::{at, test_db};

fn totp(user: UserId) -> FactorRecord {
    FactorRecord {
        id: Uuid::now_v7(),
        user_id: user,
        kind: "totp".into(),
        label: None,
        secret: Some("v1:sealed".into()),
        confirmed_at: None,
        last_step: None,
        created_at: at(1),
        last_used_at: None,
    }
}

#[tokio::test]
async fn a_factor_is_confirmed_once_and_a_time_step_is_accepted_once() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    let f = totp(ann);
    db.mfa().insert_factor(&f).await.unwrap();
    assert!(!db.mfa().confirm_factor(bob, f.id, at(2)).await.unwrap());
    assert!(db.mfa().confirm_factor(ann, f.id, at(2)).await.unwrap());
    assert!(!db.mfa().confirm_factor(ann, f.id, at(3)).await.unwrap());
    assert_eq!(
        db.mfa().factors_of(ann).await.unwrap()[0].confirmed_at,
        Some(at(2))
    );

    assert!(db.mfa().advance_step(f.id, 100, at(4)).await.unwrap());
    assert!(
        !db.mfa().advance_step(f.id, 100, at(5)).await.unwrap(),
        "a replay"
    );
    assert!(
        !db.mfa().advance_step(f.id, 99, at(5)).await.unwrap(),
        "an older step"
    );
    assert!(db.mfa().advance_step(f.id, 101, at(6)).await.unwrap());
    let stored = &db.mfa().factors_of(ann).await.unwrap()[0];
    assert_eq!(
        (stored.last_step, stored.last_used_at),
        (Some(101), Some(at(6)))
    );

    // A new enrolment drops the unconfirmed factor of its kind only.
    let pending = totp(ann);
    db.mfa().insert_factor(&pending).await.unwrap();
    db.mfa().delete_unconfirmed(ann, "totp").await.unwrap();
    let ids: Vec<_> = db
        .mfa()
        .factors_of(ann)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(ids, [f.id]);
    assert!(!db.mfa().delete_factor(bob, f.id).await.unwrap());
    assert!(db.mfa().delete_factor(ann, f.id).await.unwrap());
}

#[tokio::test]
async fn a_recovery_code_works_once_and_a_new_set_replaces_the_old() {
    let db = test_db().await;
    let ann = UserId::new();
    let hashes: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    db.mfa()
        .replace_recovery_codes(ann, &hashes, at(1))
        .await
        .unwrap();
    assert_eq!(db.mfa().recovery_codes_left(ann).await.unwrap(), 10);
    assert!(!db
        .mfa()
        .use_recovery_code(UserId::new(), "h0", at(2))
        .await
        .unwrap());
    assert!(db.mfa().use_recovery_code(ann, "h0", at(2)).await.unwrap());
    assert!(!db.mfa().use_recovery_code(ann, "h0", at(3)).await.unwrap());
    assert_eq!(db.mfa().recovery_codes_left(ann).await.unwrap(), 9);
    db.mfa()
        .replace_recovery_codes(ann, &["n0".to_owned()], at(4))
        .await
        .unwrap();
    assert!(!db.mfa().use_recovery_code(ann, "h1", at(5)).await.unwrap());
    assert_eq!(db.mfa().recovery_codes_left(ann).await.unwrap(), 1);
}

#[tokio::test]
async fn a_challenge_ends_once_and_erasure_leaves_nothing() {
    let db = test_db().await;
    let ann = UserId::new();
    let c = ChallengeRecord {
        id: Uuid::now_v7(),
        token_hash: "th".into(),
        user_id: ann,
        amr: vec!["pwd".into()],
        created_at: at(1),
        expires_at: at(301),
        attempts: 0,
    };
    db.mfa().insert_challenge(&c).await.unwrap();
    db.mfa().challenge_failed(c.id).await.unwrap();
    let read = db.mfa().challenge("th").await.unwrap().unwrap();
    assert_eq!(
        (read.amr.clone(), read.attempts),
        (vec!["pwd".to_owned()], 1)
    );
    assert!(db.mfa().delete_challenge(c.id).await.unwrap());
    assert!(
        !db.mfa().delete_challenge(c.id).await.unwrap(),
        "only one verification wins"
    );
    assert_eq!(db.mfa().prune_expired(at(1000)).await.unwrap(), 0);
    let old = ChallengeRecord {
        id: Uuid::now_v7(),
        token_hash: "old".into(),
        ..c.clone()
    };
    db.mfa().insert_challenge(&old).await.unwrap();
    db.mfa()
        .put_code(&crate::CodeRecord {
            factor_id: Uuid::now_v7(),
            user_id: ann,
            code_hash: "h".into(),
            expires_at: at(301),
            attempts: 0,
            sent_at: at(1),
        })
        .await
        .unwrap();
    assert_eq!(
        db.mfa().prune_expired(at(300)).await.unwrap(),
        0,
        "not expired yet"
    );
    assert_eq!(db.mfa().prune_expired(at(302)).await.unwrap(), 2);
    assert!(db.mfa().challenge("old").await.unwrap().is_none());

    db.mfa().insert_factor(&totp(ann)).await.unwrap();
    db.mfa()
        .replace_recovery_codes(ann, &["h".to_owned()], at(1))
        .await
        .unwrap();
    db.mfa()
        .insert_challenge(&ChallengeRecord {
            id: Uuid::now_v7(),
            token_hash: "t2".into(),
            ..c
        })
        .await
        .unwrap();
    assert_eq!(db.mfa().erase_user(ann).await.unwrap(), 1);
    assert!(db.mfa().factors_of(ann).await.unwrap().is_empty());
    assert_eq!(db.mfa().recovery_codes_left(ann).await.unwrap(), 0);
    assert!(db.mfa().challenge("t2").await.unwrap().is_none());
}

#[tokio::test]
async fn a_webauthn_ceremony_is_taken_once_and_not_after_it_expired() {
    let db = test_db().await;
    let ann = UserId::new();
    let ceremony = |challenge: &str, expires| CeremonyRecord {
        id: Uuid::now_v7(),
        challenge: challenge.into(),
        purpose: "register".into(),
        user_id: Some(ann),
        state: "{}".into(),
        created_at: at(1),
        expires_at: expires,
    };
    let c = ceremony("abc", at(100));
    db.mfa().insert_ceremony(&c).await.unwrap();
    assert!(db
        .mfa()
        .take_ceremony("other", at(2))
        .await
        .unwrap()
        .is_none());
    assert_eq!(db.mfa().take_ceremony("abc", at(2)).await.unwrap(), Some(c));
    assert!(
        db.mfa()
            .take_ceremony("abc", at(2))
            .await
            .unwrap()
            .is_none(),
        "a second answer to one challenge"
    );
    db.mfa()
        .insert_ceremony(&ceremony("late", at(10)))
        .await
        .unwrap();
    assert!(db
        .mfa()
        .take_ceremony("late", at(10))
        .await
        .unwrap()
        .is_none());
    assert!(
        db.mfa()
            .take_ceremony("late", at(5))
            .await
            .unwrap()
            .is_none(),
        "an expired ceremony is gone, not kept for later"
    );
    db.mfa()
        .insert_ceremony(&ceremony("old", at(10)))
        .await
        .unwrap();
    assert_eq!(db.mfa().prune_expired(at(11)).await.unwrap(), 1);
    assert!(db
        .mfa()
        .take_ceremony("old", at(1))
        .await
        .unwrap()
        .is_none());
}
