//! One-time email tokens: found without being used up, used up exactly once, bounded by
//! expiry and purpose, ended by a newer link, and carrying their registration.

use keyward_messages::UserId;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::super::entities::email_token;
use super::super::{NewEmailToken, Registration, TokenPurpose};
use super::{new_user, username};
use crate::testing::{at, test_db, TestDb};
use crate::StorageError;

const VERIFY: TokenPurpose = TokenPurpose::VerifyEmail;
const RESET: TokenPurpose = TokenPurpose::ResetPassword;

fn registration(hash: &str, name: Option<&str>) -> Registration {
    Registration {
        password_hash: hash.into(),
        username: name.map(username),
    }
}

/// A user with no tokens yet.
async fn user(db: &TestDb, address: &str) -> UserId {
    let u = new_user(address, None);
    db.users().insert(u.clone()).await.unwrap();
    u.id
}

async fn token(
    db: &TestDb,
    user_id: UserId,
    purpose: TokenPurpose,
    hash: &str,
    created: i64,
    registration: Option<Registration>,
) {
    db.users()
        .insert_email_token(NewEmailToken {
            user_id,
            purpose,
            token_hash: hash.into(),
            now: at(created),
            expires_at: at(created + 100),
            registration,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_one_time_token_is_consumed_exactly_once() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    let reg = registration("$argon2id$reg", Some("Kate"));
    token(&db, kate, VERIFY, "h1", 0, Some(reg.clone())).await;

    // Looking the owner up does not use the token up.
    for _ in 0..2 {
        let owner = db.users().email_token_user(VERIFY, "h1", at(1)).await;
        assert_eq!(owner.unwrap(), Some(kate));
    }
    let tx = db.begin().await.unwrap();
    let used = tx.users().consume_email_token(VERIFY, "h1", at(1)).await;
    tx.commit().await.unwrap();
    let used = used.unwrap().unwrap();
    assert_eq!((used.user_id, used.registration), (kate, Some(reg)));

    let again = db.users().consume_email_token(VERIFY, "h1", at(2)).await;
    assert!(again.unwrap().is_none());
    let owner = db.users().email_token_user(VERIFY, "h1", at(2)).await;
    assert_eq!(owner.unwrap(), None);
}

#[tokio::test]
async fn two_consumers_of_one_token_at_once_get_it_once() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    token(&db, kate, RESET, "h1", 0, None).await;
    let store = &db.store;
    let consume = || async move {
        let tx = store.begin().await.unwrap();
        let used = tx.users().consume_email_token(RESET, "h1", at(1)).await;
        tx.commit().await.unwrap();
        used.unwrap().is_some()
    };

    let (a, b) = tokio::join!(consume(), consume());

    assert_eq!(u8::from(a) + u8::from(b), 1, "exactly one gets it");
}

#[tokio::test]
async fn an_expired_token_is_neither_found_nor_consumed() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    token(&db, kate, RESET, "h1", 0, None).await; // expires at(100)

    let live = db.users().email_token_user(RESET, "h1", at(99)).await;
    assert_eq!(live.unwrap(), Some(kate));
    let expired = db.users().email_token_user(RESET, "h1", at(100)).await;
    assert_eq!(expired.unwrap(), None);
    let used = db.users().consume_email_token(RESET, "h1", at(100)).await;
    assert!(used.unwrap().is_none());
    let unknown = db.users().consume_email_token(RESET, "nope", at(1)).await;
    assert!(unknown.unwrap().is_none());
}

#[tokio::test]
async fn a_token_is_consumed_only_for_its_own_purpose() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    token(&db, kate, RESET, "h1", 0, None).await;

    let wrong = db.users().consume_email_token(VERIFY, "h1", at(1)).await;
    assert!(wrong.unwrap().is_none());
    let right = db.users().consume_email_token(RESET, "h1", at(1)).await;
    let right = right.unwrap().unwrap();
    assert_eq!((right.user_id, right.registration), (kate, None));
}

#[tokio::test]
async fn invalidated_tokens_of_one_purpose_can_no_longer_be_used() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    let bob = user(&db, "bob@example.com").await;
    token(&db, kate, RESET, "r1", 0, None).await;
    token(&db, kate, RESET, "r2", 1, None).await;
    token(&db, kate, VERIFY, "v1", 2, None).await;
    token(&db, bob, RESET, "b1", 3, None).await;

    db.users()
        .invalidate_email_tokens(kate, RESET, at(5))
        .await
        .unwrap();

    let live = |purpose, hash: &'static str| {
        let users = db.users();
        async move {
            users
                .email_token_user(purpose, hash, at(6))
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(!live(RESET, "r1").await && !live(RESET, "r2").await);
    assert!(live(VERIFY, "v1").await, "another purpose stays");
    assert!(live(RESET, "b1").await, "another user's stays");
}

#[tokio::test]
async fn the_latest_registration_is_the_newest_token_carrying_one_live_or_not() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    let bob = user(&db, "bob@example.com").await;
    let first = registration("$argon2id$first", None);
    let second = registration("$argon2id$second", Some("kate"));
    token(&db, kate, VERIFY, "v1", 0, Some(first)).await;
    token(&db, kate, VERIFY, "v2", 5, Some(second.clone())).await;
    token(&db, kate, VERIFY, "v3", 8, None).await;
    token(&db, kate, RESET, "r1", 10, None).await;

    let latest = db.users().latest_registration(kate).await.unwrap();
    assert_eq!(latest, Some(second.clone()));
    db.users()
        .consume_email_token(VERIFY, "v2", at(6))
        .await
        .unwrap()
        .unwrap();
    let latest = db.users().latest_registration(kate).await.unwrap();
    assert_eq!(latest, Some(second), "a used link still counts");
    assert_eq!(db.users().latest_registration(bob).await.unwrap(), None);
}

#[tokio::test]
async fn deleting_tokens_of_one_purpose_keeps_only_the_one_named() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    for (hash, t) in [("v1", 0), ("v2", 1), ("v3", 2)] {
        let reg = registration(&format!("$argon2id${hash}"), None);
        token(&db, kate, VERIFY, hash, t, Some(reg)).await;
    }
    token(&db, kate, RESET, "r1", 3, None).await;
    let used = db.users().consume_email_token(VERIFY, "v1", at(4)).await;
    let used = used.unwrap().unwrap();

    db.users()
        .delete_email_tokens(kate, VERIFY, Some(used.id))
        .await
        .unwrap();

    let latest = db.users().latest_registration(kate).await.unwrap();
    assert_eq!(latest.unwrap().password_hash, "$argon2id$v1");
    for hash in ["v2", "v3"] {
        let gone = db.users().email_token_user(VERIFY, hash, at(5)).await;
        assert_eq!(gone.unwrap(), None, "{hash}");
    }
    let reset = db.users().email_token_user(RESET, "r1", at(5)).await;
    assert_eq!(reset.unwrap(), Some(kate));

    db.users()
        .delete_email_tokens(kate, VERIFY, None)
        .await
        .unwrap();
    assert_eq!(db.users().latest_registration(kate).await.unwrap(), None);
}

#[tokio::test]
async fn a_stored_registration_username_that_no_longer_parses_is_corrupt() {
    let db = test_db().await;
    let kate = user(&db, "kate@example.com").await;
    let reg = registration("$argon2id$reg", Some("kate"));
    token(&db, kate, VERIFY, "v1", 0, Some(reg)).await;
    let row = email_token::Entity::find()
        .filter(email_token::Column::TokenHash.eq("v1"))
        .one(db.connection())
        .await
        .unwrap()
        .unwrap();
    email_token::Entity::update_many()
        .col_expr(email_token::Column::Username, Expr::value("x"))
        .filter(email_token::Column::Id.eq(row.id))
        .exec(db.connection())
        .await
        .unwrap();

    let err = db.users().latest_registration(kate).await.unwrap_err();

    let StorageError::Corrupt { what, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*what, format!("email_tokens {} username", row.id));
}
