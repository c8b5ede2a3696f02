//! `Notices` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::UserId;
use uuid::Uuid;

use super::{DeliveryFilter, DeliveryRecord, InboxRecord, SendRecord, TemplateRecord};
use crate::testing::{at, test_db};
use crate::StorageError;

fn template(body: &str, source: &str) -> TemplateRecord {
    TemplateRecord {
        key: "generic".into(),
        channel: "in_app".into(),
        locale: "en".into(),
        parts: [
            ("title".to_string(), "{{ title }}".to_string()),
            ("body".to_string(), body.to_string()),
        ]
        .into(),
        variables: vec!["body".into(), "title".into()],
        source: source.into(),
        updated_at: at(1),
        updated_by: None,
    }
}

fn delivery(user: UserId, status: &str, secs: i64) -> DeliveryRecord {
    DeliveryRecord {
        id: Uuid::now_v7(),
        notification_id: Uuid::now_v7(),
        user_id: user,
        channel: "email".into(),
        category: "booking".into(),
        template: "generic".into(),
        status: status.into(),
        attempts: 0,
        answer: None,
        created_at: at(secs),
        updated_at: at(secs),
    }
}

fn item(user: UserId, title: &str) -> InboxRecord {
    InboxRecord {
        id: Uuid::now_v7(),
        user_id: user,
        category: "booking".into(),
        title: title.into(),
        body: "b".into(),
        action_url: None,
        created_at: at(1),
        read_at: None,
    }
}

#[tokio::test]
async fn a_template_is_stored_replaced_and_read_back_by_its_three_keys() {
    let db = test_db().await;
    let n = db.notices();
    assert_eq!(n.template("generic", "in_app", "en").await.unwrap(), None);
    n.put_template(&template("{{ body }}", "shipped"))
        .await
        .unwrap();
    let mut edited = template("<b>{{ body }}</b>", "api");
    edited.updated_by = Some(UserId::new());
    edited.updated_at = at(2);
    n.put_template(&edited).await.unwrap();

    assert_eq!(
        n.template("generic", "in_app", "en").await.unwrap(),
        Some(edited.clone())
    );
    assert_eq!(n.template("generic", "in_app", "ru").await.unwrap(), None);
    assert_eq!(n.templates().await.unwrap(), vec![edited]);
}

#[tokio::test]
async fn the_log_pages_newest_first_by_user_and_status_and_records_attempts() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    let rows: Vec<_> = (0..5)
        .map(|i| delivery(if i % 2 == 0 { ann } else { bob }, "queued", i))
        .collect();
    db.notices().insert_deliveries(&rows).await.unwrap();

    assert!(db
        .notices()
        .record_attempt(rows[4].id, "sent", Some("250 OK"), at(9))
        .await
        .unwrap());
    assert!(!db
        .notices()
        .record_attempt(Uuid::now_v7(), "sent", None, at(9))
        .await
        .unwrap());
    let sent = db.notices().delivery(rows[4].id).await.unwrap().unwrap();
    assert_eq!(
        (sent.status.as_str(), sent.attempts, sent.answer.as_deref()),
        ("sent", 1, Some("250 OK"))
    );
    assert_eq!(sent.updated_at, at(9));

    let store = &db.store;
    let page = |f: DeliveryFilter| async move {
        store
            .notices()
            .deliveries(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    let anns = page(DeliveryFilter {
        user_id: Some(ann),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(anns, vec![rows[4].id, rows[2].id]);
    let rest = page(DeliveryFilter {
        user_id: Some(ann),
        before: Some(rows[2].id),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(rest, vec![rows[0].id]);
    let queued = page(DeliveryFilter {
        status: Some("queued".into()),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(queued, vec![rows[3].id, rows[2].id, rows[1].id, rows[0].id]);
}

#[tokio::test]
async fn an_inbox_lists_counts_and_marks_only_its_owners_items() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    let items: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|t| item(ann, t))
        .chain([item(bob, "bob's")])
        .collect();
    db.notices().insert_inbox(&items).await.unwrap();
    assert_eq!(db.notices().unread_count(ann).await.unwrap(), 3);

    assert!(!db
        .notices()
        .mark_read(bob, items[0].id, at(5))
        .await
        .unwrap());
    assert!(db
        .notices()
        .mark_read(ann, items[0].id, at(5))
        .await
        .unwrap());
    assert!(db
        .notices()
        .mark_read(ann, items[0].id, at(6))
        .await
        .unwrap());
    assert_eq!(
        db.notices().unread_count(ann).await.unwrap(),
        2,
        "a second read does not count twice"
    );
    let titles = |v: Vec<InboxRecord>| v.into_iter().map(|i| i.title).collect::<Vec<_>>();
    let unread = db.notices().inbox(ann, true, None, 10).await.unwrap();
    assert_eq!(titles(unread), ["three", "two"]);
    let all = db.notices().inbox(ann, false, None, 10).await.unwrap();
    assert_eq!(all[2].read_at, Some(at(5)), "the first read is kept");
    let older = db
        .notices()
        .inbox(ann, false, Some(items[1].id), 10)
        .await
        .unwrap();
    assert_eq!(titles(older), ["one"]);

    assert_eq!(db.notices().mark_all_read(ann, at(7)).await.unwrap(), 2);
    assert_eq!(db.notices().unread_count(ann).await.unwrap(), 0);
    assert_eq!(db.notices().unread_count(bob).await.unwrap(), 1);
}

#[tokio::test]
async fn the_unread_count_matches_the_items_under_concurrent_reads_and_arrivals() {
    let db = test_db().await;
    let ann = UserId::new();
    let first: Vec<_> = (0..10).map(|i| item(ann, &format!("{i}"))).collect();
    db.notices().insert_inbox(&first).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30usize {
        let store = db.store.clone();
        let id = first[i % 5].id;
        tasks.spawn(async move {
            if i % 3 == 0 {
                let tx = store.begin().await.unwrap();
                tx.notices()
                    .insert_inbox(&[item(ann, "late"), item(ann, "later")])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            } else {
                let tx = store.begin().await.unwrap();
                assert!(tx.notices().mark_read(ann, id, at(5)).await.unwrap());
                tx.commit().await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let unread = db
        .notices()
        .inbox(ann, true, None, 1000)
        .await
        .unwrap()
        .len();
    assert_eq!(unread, 10 - 5 + 2 * 10);
    assert_eq!(db.notices().unread_count(ann).await.unwrap(), unread as u64);
}

#[tokio::test]
async fn preferences_are_per_user_and_replaced_whole() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    assert!(db.notices().preferences(ann).await.unwrap().is_empty());
    let muted = [(
        "marketing".to_string(),
        [("email".to_string(), false)].into(),
    )]
    .into();
    db.notices()
        .put_preferences(ann, &muted, at(1))
        .await
        .unwrap();
    let mut more = muted.clone();
    more.insert("booking".into(), [("sms".to_string(), true)].into());
    db.notices()
        .put_preferences(ann, &more, at(2))
        .await
        .unwrap();

    let of = db.notices().preferences_of(&[ann, bob]).await.unwrap();
    assert_eq!(of.get(&ann), Some(&more));
    assert!(!of.contains_key(&bob));
}

#[tokio::test]
async fn a_send_request_is_kept_once_per_caller_and_key() {
    let db = test_db().await;
    let r = SendRecord {
        caller: "client:booking".into(),
        idempotency_key: "reminder-42".into(),
        fingerprint: "f1".into(),
        ids: vec![Uuid::now_v7(), Uuid::now_v7()],
        created_at: at(1),
    };
    db.notices().insert_send_request(&r).await.unwrap();
    let again = db.notices().insert_send_request(&r).await;
    assert!(
        matches!(again, Err(StorageError::Conflict { .. })),
        "{again:?}"
    );
    let other = SendRecord {
        caller: "client:events".into(),
        ..r.clone()
    };
    db.notices().insert_send_request(&other).await.unwrap();

    assert_eq!(
        db.notices()
            .send_request("client:booking", "reminder-42")
            .await
            .unwrap(),
        Some(r)
    );
    assert_eq!(
        db.notices()
            .send_request("client:booking", "x")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn erasing_a_user_removes_their_log_inbox_and_preferences_only() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    db.notices()
        .insert_deliveries(&[delivery(ann, "sent", 1), delivery(bob, "sent", 2)])
        .await
        .unwrap();
    db.notices()
        .insert_inbox(&[item(ann, "a"), item(bob, "b")])
        .await
        .unwrap();
    db.notices()
        .put_preferences(ann, &Default::default(), at(1))
        .await
        .unwrap();

    db.notices().erase_user(ann).await.unwrap();

    let all = DeliveryFilter {
        limit: 10,
        ..Default::default()
    };
    let left = db.notices().deliveries(&all).await.unwrap();
    assert_eq!(left.iter().map(|d| d.user_id).collect::<Vec<_>>(), [bob]);
    assert_eq!(db.notices().unread_count(ann).await.unwrap(), 0);
    assert_eq!(db.notices().unread_count(bob).await.unwrap(), 1);
}

#[tokio::test]
async fn scheduled_sends_fall_due_in_order_and_leave_the_schedule_once() {
    let db = test_db().await;
    let user = UserId::new();
    let at_secs = |id: Uuid, secs: i64| super::ScheduledRecord {
        notification_id: id,
        user_id: user,
        due_at: at(secs),
        template: "generic".into(),
        category: "reminders".into(),
        variables: serde_json::json!({"title": "t", "n": 1})
            .as_object()
            .unwrap()
            .clone(),
        created_at: at(0),
    };
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    db.notices()
        .insert_schedule(&[at_secs(c, 30), at_secs(a, 10), at_secs(b, 20)])
        .await
        .unwrap();

    let due = db.notices().due(at(25), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.notification_id).collect::<Vec<_>>(),
        [a, b]
    );
    assert_eq!(due[0], at_secs(a, 10), "read back as written");
    assert!(db.notices().unschedule(a).await.unwrap());
    assert!(!db.notices().unschedule(a).await.unwrap());
    assert_eq!(db.notices().due(at(25), 10).await.unwrap().len(), 1);

    let row = delivery(user, "scheduled", 1);
    db.notices()
        .insert_deliveries(std::slice::from_ref(&row))
        .await
        .unwrap();
    db.notices()
        .set_delivery(
            row.id,
            "cancelled",
            0,
            Some("cancelled by the sender"),
            at(3),
        )
        .await
        .unwrap();
    let got = db
        .notices()
        .deliveries_of(row.notification_id)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].status.as_str(), got[0].answer.as_deref()),
        ("cancelled", Some("cancelled by the sender"))
    );
}

#[tokio::test]
async fn a_push_endpoint_is_kept_once_and_removed_by_its_owner_or_as_gone() {
    let db = test_db().await;
    let (ann, bob) = (UserId::new(), UserId::new());
    let sub = |user: UserId, endpoint: &str| super::PushSubscriptionRecord {
        id: Uuid::now_v7(),
        user_id: user,
        endpoint: endpoint.into(),
        p256dh: "BPk".into(),
        auth: "au".into(),
        created_at: at(1),
    };
    let a1 = db
        .notices()
        .put_push_subscription(&sub(ann, "https://push.example/1"))
        .await
        .unwrap();
    db.notices()
        .put_push_subscription(&sub(ann, "https://push.example/2"))
        .await
        .unwrap();
    // The browser of endpoint 1 now belongs to bob: ann no longer gets its pushes.
    let b1 = db
        .notices()
        .put_push_subscription(&sub(bob, "https://push.example/1"))
        .await
        .unwrap();
    let of = db
        .notices()
        .push_subscriptions_of(&[ann, bob])
        .await
        .unwrap();
    let endpoints = |u: UserId| {
        of[&u]
            .iter()
            .map(|s| s.endpoint.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(endpoints(ann), ["https://push.example/2"]);
    assert_eq!(endpoints(bob), ["https://push.example/1"]);

    assert!(
        !db.notices()
            .delete_push_subscription(ann, a1)
            .await
            .unwrap(),
        "replaced"
    );
    assert!(
        !db.notices()
            .delete_push_subscription(ann, b1)
            .await
            .unwrap(),
        "not ann's"
    );
    assert!(db
        .notices()
        .delete_push_subscription(bob, b1)
        .await
        .unwrap());
    assert!(db
        .notices()
        .delete_push_endpoint("https://push.example/2")
        .await
        .unwrap());
    assert!(db
        .notices()
        .push_subscriptions_of(&[ann, bob])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_unread_counts_are_filled_from_the_inbox_on_upgrade() {
    use sea_orm::{EntityTrait, Set};

    use super::entities::inbox;

    let store = crate::testing::test_db_through(Some("m0009_notify")).await;
    let (ann, bob) = (UserId::new(), UserId::new());
    // Written as m0009 left them: no count beside them.
    let rows = [
        (ann, None),
        (ann, None),
        (ann, Some(at(2))),
        (bob, Some(at(2))),
    ]
    .map(|(user, read_at)| {
        let i = item(user, "t");
        inbox::ActiveModel {
            id: Set(i.id),
            user_id: Set(user.0),
            category: Set(i.category),
            title: Set(i.title),
            body: Set(i.body),
            action_url: Set(None),
            created_at: Set(i.created_at),
            read_at: Set(read_at),
        }
    });
    inbox::Entity::insert_many(rows)
        .exec_without_returning(store.store.connection())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.notices().unread_count(ann).await.unwrap(), 2);
    assert_eq!(store.notices().unread_count(bob).await.unwrap(), 0);
    assert_eq!(
        store
            .notices()
            .inbox(ann, true, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}
