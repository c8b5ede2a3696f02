//! The canonical-email conflict report: what `keyward migrate` lists until an operator
//! resolves it.

use keyward_messages::UserId;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use super::super::entities::{email_canonical_conflict, user};
use super::super::EmailConflictReason;
use super::new_user;
use crate::testing::{at, test_db, TestDb};
use crate::StorageError;

/// An account whose stored address is `stored` as the migration left it (not canonical, or
/// not parsing at all), and its line in the report.
async fn left_account(
    db: &TestDb,
    stored: &str,
    canonical: Option<&str>,
    reason: &str,
    recorded: i64,
) -> UserId {
    let u = new_user(&format!("temp{recorded}@example.com"), None);
    db.users().insert(u.clone()).await.unwrap();
    user::Entity::update_many()
        .col_expr(user::Column::Email, Expr::value(stored))
        .col_expr(
            user::Column::EmailNormalized,
            Expr::value(stored.to_lowercase()),
        )
        .filter(user::Column::Id.eq(u.id.0))
        .exec(db.connection())
        .await
        .unwrap();
    email_canonical_conflict::ActiveModel {
        user_id: Set(u.id.0),
        email: Set(stored.to_owned()),
        canonical: Set(canonical.map(str::to_owned)),
        reason: Set(reason.to_owned()),
        created_at: Set(at(recorded)),
    }
    .insert(db.connection())
    .await
    .unwrap();
    u.id
}

#[tokio::test]
async fn unresolved_accounts_are_reported_oldest_first_until_an_operator_resolves_them() {
    let db = test_db().await;
    let bob = left_account(
        &db,
        "bob@example.com",
        Some("bob@example.com"),
        "collision",
        1,
    )
    .await;
    let twin = left_account(
        &db,
        "\u{FF42}ob@example.com",
        Some("bob@example.com"),
        "collision",
        2,
    )
    .await;
    let quoted = left_account(&db, "\"a@b\"@example.com", None, "undeliverable", 3).await;
    db.users().set_blocked(twin, true, at(4)).await.unwrap();

    let report = db.users().email_canonical_conflicts().await.unwrap();

    let lines: Vec<_> = report
        .iter()
        .map(|r| {
            (
                r.user_id,
                r.email.as_str(),
                r.canonical.as_deref(),
                r.reason,
            )
        })
        .collect();
    let (c, u) = (
        EmailConflictReason::Collision,
        EmailConflictReason::Undeliverable,
    );
    assert_eq!(
        lines,
        [
            (bob, "bob@example.com", Some("bob@example.com"), c),
            (twin, "\u{FF42}ob@example.com", Some("bob@example.com"), c),
            (quoted, "\"a@b\"@example.com", None, u),
        ]
    );
    assert_eq!(report[1].recorded_at, at(2));
    assert!(report[1].blocked && !report[0].blocked);

    // Deleting the twin resolves bob's mailbox: one account is left, in canonical form.
    user::Entity::delete_by_id(twin.0)
        .exec(db.connection())
        .await
        .unwrap();
    let report = db.users().email_canonical_conflicts().await.unwrap();
    assert_eq!(
        report.iter().map(|r| r.user_id).collect::<Vec<_>>(),
        [quoted]
    );

    // Giving the undeliverable account another address resolves it too.
    user::Entity::update_many()
        .col_expr(user::Column::Email, Expr::value("a@example.com"))
        .filter(user::Column::Id.eq(quoted.0))
        .exec(db.connection())
        .await
        .unwrap();
    assert!(db
        .users()
        .email_canonical_conflicts()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_unknown_conflict_reason_is_corrupt_naming_its_row() {
    let db = test_db().await;
    let id = left_account(&db, "Mixed@Example.com", None, "mystery", 1).await;

    let err = db.users().email_canonical_conflicts().await.unwrap_err();

    let StorageError::Corrupt { what, source } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*what, format!("email_canonical_conflicts {id} reason"));
    assert!(source.to_string().contains("mystery"), "{source}");
}

#[tokio::test]
async fn an_account_whose_stored_address_no_longer_parses_still_loads_as_stored() {
    let db = test_db().await;
    let id = left_account(&db, "\"a@b\"@example.com", None, "undeliverable", 1).await;

    let user = db
        .users()
        .by_id(id)
        .await
        .unwrap()
        .expect("the account loads");

    assert_eq!(user.email.as_str(), "\"a@b\"@example.com");
}
