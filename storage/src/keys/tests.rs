//! `SigningKeys` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::SigningKeyRecord;
use crate::testing::{at, test_db};
use crate::StorageError;

fn key(kid: &str, created: i64, retired: Option<i64>) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        algorithm: "EdDSA".into(),
        public_key: format!("pub-{kid}"),
        private_key_enc: format!("enc-{kid}"),
        created_at: at(created),
        retired_at: retired.map(at),
        signs_from: None,
    }
}

#[tokio::test]
async fn signing_keys_are_listed_oldest_first_as_they_were_written() {
    let db = test_db().await;
    let tx = db.begin().await.unwrap();
    tx.signing_keys()
        .insert(&key("k2", 10, None))
        .await
        .unwrap();
    tx.signing_keys()
        .insert(&key("k1", 0, Some(5)))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let keys = db.signing_keys().all().await.unwrap();

    let kids: Vec<_> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k1", "k2"]);
    let k1 = &keys[0];
    assert_eq!(
        (k1.algorithm.as_str(), k1.public_key.as_str()),
        ("EdDSA", "pub-k1")
    );
    assert_eq!(k1.private_key_enc, "enc-k1");
    assert_eq!((k1.created_at, k1.retired_at), (at(0), Some(at(5))));
}

#[tokio::test]
async fn retiring_ends_every_active_key_and_keeps_earlier_retirements() {
    let db = test_db().await;
    for k in [
        key("old", 0, Some(5)),
        key("a", 10, None),
        key("b", 11, None),
    ] {
        db.signing_keys().insert(&k).await.unwrap();
    }

    db.signing_keys().retire_active(at(20)).await.unwrap();

    let retired: Vec<_> = db
        .signing_keys()
        .all()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.retired_at))
        .collect();
    assert_eq!(
        retired,
        [
            ("old".into(), Some(at(5))),
            ("a".into(), Some(at(20))),
            ("b".into(), Some(at(20))),
        ]
    );
}

#[tokio::test]
async fn a_second_key_with_one_kid_is_a_conflict() {
    let db = test_db().await;
    db.signing_keys().insert(&key("k1", 0, None)).await.unwrap();

    let again = db.signing_keys().insert(&key("k1", 1, None)).await;

    assert!(
        matches!(again, Err(StorageError::Conflict { .. })),
        "{again:?}"
    );
}
