//! `Audit` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::UserId;
use sea_orm::sea_query::Expr;
use sea_orm::EntityTrait;

use super::entities::audit;
use super::AuditRecord;
use crate::testing::{at, test_db};

fn line(kind: &str, t: i64, user_id: Option<UserId>) -> AuditRecord {
    AuditRecord {
        actor_id: None,
        actor_client_id: None,
        at: at(t),
        kind: kind.into(),
        user_id,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("curl/8".into()),
        request_id: Some(format!("req-{t}")),
        details: r#"{"login":"kate"}"#.into(),
    }
}

#[tokio::test]
async fn appended_lines_are_read_back_newest_first() {
    let db = test_db().await;
    let kate = UserId::new();
    let lines = [
        line("user.login_failed", 1, None),
        line("user.throttled", 2, Some(kate)),
        line("user.logged_in", 3, Some(kate)),
    ];
    for l in &lines {
        db.audit().append(l).await.unwrap();
    }

    let latest = db.audit().latest(2).await.unwrap();

    assert_eq!(latest, [lines[2].clone(), lines[1].clone()]);
    assert_eq!(db.audit().latest(10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_line_appended_in_a_rolled_back_transaction_is_not_kept() {
    let db = test_db().await;
    let tx = db.begin().await.unwrap();
    tx.audit()
        .append(&line("user.blocked", 1, None))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    assert!(db.audit().latest(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_audit_line_cannot_be_changed_or_deleted() {
    let db = test_db().await;
    let original = line("user.logged_in", 1, None);
    db.audit().append(&original).await.unwrap();

    let update = audit::Entity::update_many()
        .col_expr(audit::Column::Kind, Expr::value("rewritten"))
        .exec(db.connection())
        .await;
    let delete = audit::Entity::delete_many().exec(db.connection()).await;

    assert!(update.is_err() && delete.is_err(), "{update:?} {delete:?}");
    assert_eq!(db.audit().latest(10).await.unwrap(), [original]);
}

#[tokio::test]
async fn one_users_lines_page_newest_first_by_kind() {
    let db = test_db().await;
    let (kate, bob) = (UserId::new(), UserId::new());
    for (i, (kind, who)) in [
        ("user.logged_in", kate),
        ("user.logged_in", bob),
        ("user.login_failed", kate),
        ("session.revoked", kate),
        ("user.logged_in", kate),
    ]
    .into_iter()
    .enumerate()
    {
        db.audit()
            .append(&line(kind, i as i64, Some(who)))
            .await
            .unwrap();
    }
    let kinds = ["user.logged_in", "session.revoked"];
    let page = db.audit().of_user(kate, &kinds, None, 2).await.unwrap();
    let times: Vec<_> = page.iter().map(|(_, r)| r.at).collect();
    assert_eq!(times, [at(4), at(3)]);
    let rest = db
        .audit()
        .of_user(kate, &kinds, Some(page[1].0), 2)
        .await
        .unwrap();
    let times: Vec<_> = rest.iter().map(|(_, r)| r.at).collect();
    assert_eq!(
        times,
        [at(0)],
        "bob's line and the failed login are not kate's history"
    );
}

#[tokio::test]
async fn lines_are_found_by_the_user_or_the_client_that_acted() {
    let db = test_db().await;
    let admin = UserId::new();
    let by_admin = AuditRecord {
        actor_id: Some(admin),
        ..line("user.blocked", 1, Some(UserId::new()))
    };
    let by_client = AuditRecord {
        actor_client_id: Some("kwc_marketplace".into()),
        ..line("role.granted", 2, Some(UserId::new()))
    };
    for l in [&by_admin, &by_client, &line("user.logged_in", 3, None)] {
        db.audit().append(l).await.unwrap();
    }

    let of_client = super::AuditFilter {
        actor_client_id: Some("kwc_marketplace".into()),
        ..Default::default()
    };
    let found = db.audit().query(&of_client, None, 10).await.unwrap();
    assert_eq!(
        found.into_iter().map(|(_, l)| l).collect::<Vec<_>>(),
        [by_client]
    );
    let of_admin = super::AuditFilter {
        actor_id: Some(admin),
        ..Default::default()
    };
    let found = db.audit().query(&of_admin, None, 10).await.unwrap();
    assert_eq!(
        found.into_iter().map(|(_, l)| l).collect::<Vec<_>>(),
        [by_admin]
    );
}
