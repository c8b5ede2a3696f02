//! `Users` on a fresh migrated database per test: user rows and roles here, email tokens and
//! the conflict report beside.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conflicts;
mod email_tokens;

use keyward_messages::{Email, UserId, Username};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entities::user;
use super::NewUser;
use crate::testing::{at, test_db};
use crate::StorageError;

fn email(s: &str) -> Email {
    Email::parse("email", s).unwrap()
}

fn username(s: &str) -> Username {
    Username::parse("username", s).unwrap()
}

fn new_user(address: &str, name: Option<&str>) -> NewUser {
    NewUser {
        id: UserId::new(),
        email: email(address),
        username: name.map(username),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
        email_verified: false,
        locale: "en".into(),
        now: at(0),
    }
}

#[tokio::test]
async fn a_user_is_found_by_any_spelling_of_its_email() {
    let db = test_db().await;
    let kate = new_user("Kate@Example.com", None);
    db.users().insert(kate.clone()).await.unwrap();

    for spelling in [
        "kate@example.com",
        "KATE@EXAMPLE.COM",
        "\u{212A}ate@example.com",
        "\u{FF4B}\u{FF41}\u{FF54}\u{FF45}@example.com",
    ] {
        let found = db.users().by_email(&email(spelling)).await.unwrap();
        let found = found.unwrap_or_else(|| panic!("{spelling} finds kate"));
        assert_eq!(found.id, kate.id);
        assert_eq!(found.email.as_str(), "kate@example.com");
    }
    let other = db.users().by_email(&email("other@example.com")).await;
    assert!(other.unwrap().is_none());
}

#[tokio::test]
async fn users_are_read_by_a_list_of_ids_and_unknown_ids_are_absent() {
    let db = test_db().await;
    let (kate, lena) = (
        new_user("kate@example.com", None),
        new_user("lena@example.com", None),
    );
    for u in [&kate, &lena] {
        db.users().insert(u.clone()).await.unwrap();
    }

    let found = db
        .users()
        .by_ids(&[lena.id, UserId::new(), kate.id])
        .await
        .unwrap();

    let mut emails: Vec<_> = found.iter().map(|u| u.email.as_str()).collect();
    emails.sort_unstable();
    assert_eq!(emails, ["kate@example.com", "lena@example.com"]);
    assert!(db.users().by_ids(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_user_is_read_back_as_it_was_written() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", Some("Kate_99"));
    db.users().insert(kate.clone()).await.unwrap();

    let u = db.users().by_id(kate.id).await.unwrap().unwrap();
    assert_eq!(u.email, kate.email);
    assert_eq!(u.username, Some(username("Kate_99")));
    assert_eq!(u.password_hash, kate.password_hash);
    assert_eq!((u.email_verified, u.blocked), (false, false));
    assert_eq!((u.locale.as_str(), u.created_at), ("en", at(0)));
    assert!(db.users().by_id(UserId::new()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_user_is_found_by_its_username_in_any_case_and_keeps_its_spelling() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", Some("Kate_99"));
    db.users().insert(kate.clone()).await.unwrap();

    let found = db.users().by_username(&username("KATE_99")).await.unwrap();
    let found = found.unwrap();
    assert_eq!(found.id, kate.id);
    assert_eq!(found.username.unwrap().as_str(), "Kate_99");
    let nobody = db.users().by_username(&username("bob")).await.unwrap();
    assert!(nobody.is_none());
}

#[tokio::test]
async fn a_second_account_for_one_mailbox_is_a_conflict_on_email() {
    let db = test_db().await;
    db.users()
        .insert(new_user("kate@example.com", None))
        .await
        .unwrap();

    let again = db.users().insert(new_user("KATE@example.com", None)).await;
    assert!(
        matches!(&again, Err(StorageError::Conflict { what }) if what == "email"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_username_taken_in_another_case_is_a_conflict_on_username() {
    let db = test_db().await;
    db.users()
        .insert(new_user("kate@example.com", Some("kate")))
        .await
        .unwrap();

    let again = db
        .users()
        .insert(new_user("bob@example.com", Some("KATE")))
        .await;
    assert!(
        matches!(&again, Err(StorageError::Conflict { what }) if what == "username"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_user_written_in_a_transaction_is_seen_there_and_gone_after_rollback() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", None);

    let tx = db.begin().await.unwrap();
    tx.users().insert(kate.clone()).await.unwrap();
    tx.users().lock(kate.id).await.unwrap();
    assert!(tx.users().by_id(kate.id).await.unwrap().is_some());
    tx.rollback().await.unwrap();

    assert!(db.users().by_id(kate.id).await.unwrap().is_none());
}

#[tokio::test]
async fn roles_are_listed_in_alphabetical_order_and_granted_once() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", None);
    let bob = new_user("bob@example.com", None);
    db.users().insert(kate.clone()).await.unwrap();
    db.users().insert(bob.clone()).await.unwrap();

    db.users()
        .grant_role(kate.id, "support", at(1))
        .await
        .unwrap();
    db.users()
        .grant_role(kate.id, "admin", at(2))
        .await
        .unwrap();

    assert_eq!(
        db.users().roles_of(kate.id).await.unwrap(),
        ["admin", "support"]
    );
    assert!(db.users().roles_of(bob.id).await.unwrap().is_empty());
    let twice = db.users().grant_role(kate.id, "admin", at(3)).await;
    assert!(
        matches!(twice, Err(StorageError::Conflict { .. })),
        "{twice:?}"
    );
}

/// A few users' roles (a placeholder per id) and many users' (one list): the same pairs,
/// and nothing for users without roles or unknown ids.
#[tokio::test]
async fn the_roles_of_many_users_are_read_at_once_however_many() {
    let db = test_db().await;
    let mut users = Vec::new();
    for i in 0..crate::lists::ROWS_INLINE * 2 + 3 {
        let u = new_user(&format!("u{i}@example.com"), None);
        db.users().insert(u.clone()).await.unwrap();
        // Every third user holds no role, every other one two.
        for role in ["support", "editor"].iter().take(i % 3) {
            db.users().grant_role(u.id, role, at(1)).await.unwrap();
        }
        users.push(u.id);
    }
    for n in [3, users.len()] {
        let mut ids = users[..n].to_vec();
        ids.push(UserId::new());
        let mut read = db.users().roles_of_many(&ids).await.unwrap();
        read.sort();
        let mut expected = Vec::new();
        for (i, u) in users[..n].iter().enumerate() {
            for role in ["support", "editor"].iter().take(i % 3) {
                expected.push((*u, role.to_string()));
            }
        }
        expected.sort();
        assert_eq!(read, expected, "{n} users");
    }
}

#[tokio::test]
async fn blocking_an_account_twice_reports_no_change_the_second_time() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", None);
    db.users().insert(kate.clone()).await.unwrap();

    assert!(db.users().set_blocked(kate.id, true, at(1)).await.unwrap());
    assert!(!db.users().set_blocked(kate.id, true, at(2)).await.unwrap());
    assert!(db.users().by_id(kate.id).await.unwrap().unwrap().blocked);
    assert!(db.users().set_blocked(kate.id, false, at(3)).await.unwrap());
    assert!(!db.users().by_id(kate.id).await.unwrap().unwrap().blocked);
}

#[tokio::test]
async fn the_password_hash_and_the_verified_flag_are_updated() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", None);
    db.users().insert(kate.clone()).await.unwrap();

    let tx = db.begin().await.unwrap();
    tx.users()
        .set_password_hash(kate.id, "$argon2id$new", at(1))
        .await
        .unwrap();
    tx.users().set_email_verified(kate.id, at(1)).await.unwrap();
    tx.commit().await.unwrap();

    let u = db.users().by_id(kate.id).await.unwrap().unwrap();
    assert_eq!(u.password_hash, "$argon2id$new");
    assert!(u.email_verified);
}

#[tokio::test]
async fn a_username_is_set_changed_and_cleared() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", None);
    db.users().insert(kate.clone()).await.unwrap();
    let name_of = |u: Option<super::UserRecord>| u.unwrap().username.map(String::from);

    let tx = db.begin().await.unwrap();
    let kate_name = username("Kate");
    assert!(tx
        .users()
        .set_username(kate.id, Some(&kate_name), at(1))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        name_of(db.users().by_id(kate.id).await.unwrap()),
        Some("Kate".into())
    );
    let found = db.users().by_username(&username("kate")).await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(kate.id));

    assert!(db.users().set_username(kate.id, None, at(2)).await.unwrap());
    assert_eq!(name_of(db.users().by_id(kate.id).await.unwrap()), None);
}

#[tokio::test]
async fn a_username_held_by_another_account_leaves_the_account_without_one() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", Some("kate"));
    let bob = new_user("bob@example.com", Some("bob"));
    db.users().insert(kate.clone()).await.unwrap();
    db.users().insert(bob.clone()).await.unwrap();

    let tx = db.begin().await.unwrap();
    let taken = username("KATE");
    let kept = tx
        .users()
        .set_username(bob.id, Some(&taken), at(1))
        .await
        .unwrap();
    // The rest of the unit of work goes on (on PostgreSQL too, thanks to the savepoint).
    tx.users().set_email_verified(bob.id, at(1)).await.unwrap();
    tx.commit().await.unwrap();

    assert!(!kept);
    let b = db.users().by_id(bob.id).await.unwrap().unwrap();
    assert_eq!((b.username, b.email_verified), (None, true));
    let k = db.users().by_id(kate.id).await.unwrap().unwrap();
    assert_eq!(k.username, Some(username("kate")));
}

#[tokio::test]
async fn a_stored_value_that_no_longer_parses_is_corrupt_naming_its_row() {
    let db = test_db().await;
    let kate = new_user("kate@example.com", Some("kate"));
    db.users().insert(kate.clone()).await.unwrap();
    let set = |column: user::Column, value: &'static str| {
        user::Entity::update_many()
            .col_expr(column, Expr::value(value))
            .filter(user::Column::Id.eq(kate.id.0))
            .exec(db.connection())
    };

    set(user::Column::Username, "no/slash").await.unwrap();
    let err = db.users().by_id(kate.id).await.unwrap_err();
    let StorageError::Corrupt { what, source } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*what, format!("users {} username", kate.id));
    assert!(source.to_string().contains("invalid_username"), "{source}");

    assert!(std::error::Error::source(&err).is_some());
}
