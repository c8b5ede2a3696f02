//! `Outbox` (and the inbox) on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
use keyward_messages::UserId;
use uuid::Uuid;

use crate::testing::{at, test_db, TestDb};

/// An envelope with a time-ordered id, as the actors make them.
fn envelope(t: i64) -> Envelope {
    let ev = DomainEvent::UserUnblocked {
        user_id: UserId::new(),
        by: None,
        by_client: None,
    };
    Envelope::new(Uuid::now_v7(), at(t), None, &Outgoing::Event(ev))
}

/// Three committed messages, oldest first.
async fn three(db: &TestDb) -> [Envelope; 3] {
    let envs = [envelope(1), envelope(2), envelope(3)];
    let tx = db.begin().await.unwrap();
    for e in &envs {
        tx.outbox().enqueue(e).await.unwrap();
    }
    tx.commit().await.unwrap();
    envs
}

fn ids(rows: &[crate::OutboxRecord]) -> Vec<Uuid> {
    rows.iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn an_enqueued_message_waits_as_its_envelope_exactly() {
    let db = test_db().await;
    let env = envelope(1);
    db.outbox().enqueue(&env).await.unwrap();

    let rows = db.outbox().pending(10).await.unwrap();

    assert_eq!(ids(&rows), [env.id]);
    let row = &rows[0];
    assert_eq!(row.message_type, "user.unblocked");
    assert_eq!(row.payload, serde_json::to_string(&env).unwrap());
    assert_eq!((row.created_at, row.attempts), (at(1), 0));
}

#[tokio::test]
async fn pending_messages_come_in_commit_order_up_to_the_limit() {
    let db = test_db().await;
    let [a, b, c] = three(&db).await;

    assert_eq!(ids(&db.outbox().pending(2).await.unwrap()), [a.id, b.id]);
    assert_eq!(
        ids(&db.outbox().pending(10).await.unwrap()),
        [a.id, b.id, c.id]
    );
}

#[tokio::test]
async fn published_messages_leave_the_pending_list_and_the_backlog() {
    let db = test_db().await;
    let [a, b, c] = three(&db).await;
    assert_eq!(db.outbox().backlog().await.unwrap(), 3);

    db.outbox().mark_published(&[b.id], at(5)).await.unwrap();

    assert_eq!(db.outbox().backlog().await.unwrap(), 2);
    assert_eq!(ids(&db.outbox().pending(10).await.unwrap()), [a.id, c.id]);
}

/// A relay's batch is marked in one statement: a few rows (a placeholder each) or many (one
/// list); the others stay pending, in order.
#[tokio::test]
async fn a_batch_of_published_messages_is_marked_at_once_however_large() {
    let db = test_db().await;
    let n = crate::lists::ROWS_INLINE * 3;
    let tx = db.begin().await.unwrap();
    let mut all = Vec::new();
    for t in 0..n {
        let e = envelope(i64::try_from(t).unwrap());
        tx.outbox().enqueue(&e).await.unwrap();
        all.push(e.id);
    }
    tx.commit().await.unwrap();

    db.outbox()
        .mark_published(&all[..3], at(100))
        .await
        .unwrap();
    db.outbox()
        .mark_published(&all[5..n - 1], at(100))
        .await
        .unwrap();

    let left = [&all[3..5], &all[n - 1..]].concat();
    assert_eq!(ids(&db.outbox().pending(1000).await.unwrap()), left);
    assert_eq!(db.outbox().backlog().await.unwrap(), 3);
}

#[tokio::test]
async fn a_decoy_is_never_pending_nor_in_a_feed_and_goes_with_the_published_rows() {
    let db = test_db().await;
    let decoy = envelope(0);
    let tx = db.begin().await.unwrap();
    tx.outbox().enqueue_decoy(&decoy).await.unwrap();
    tx.commit().await.unwrap();
    let [a, b, c] = three(&db).await;

    assert_eq!(db.outbox().backlog().await.unwrap(), 3);
    assert_eq!(
        ids(&db.outbox().pending(10).await.unwrap()),
        [a.id, b.id, c.id]
    );
    let feed = db
        .outbox()
        .recent(at(-1), &["user.unblocked", super::repo::DECOY], 10)
        .await
        .unwrap();
    assert_eq!(ids(&feed), [decoy.id, a.id, b.id, c.id], "it is a row");
    assert_eq!(
        ids(&db
            .outbox()
            .recent(at(0), &["user.unblocked"], 10)
            .await
            .unwrap()),
        [a.id, b.id, c.id]
    );
    // Published at its own time, so retention takes it once that is past the cutoff.
    assert_eq!(db.retention().purge_outbox(at(1), 10).await.unwrap(), 1);
    assert_eq!(db.outbox().backlog().await.unwrap(), 3);
}

#[tokio::test]
async fn a_failed_attempt_is_counted_and_the_message_stays_pending() {
    let db = test_db().await;
    let [a, ..] = three(&db).await;

    db.outbox().record_failed_attempt(a.id).await.unwrap();
    db.outbox().record_failed_attempt(a.id).await.unwrap();

    let rows = db.outbox().pending(1).await.unwrap();
    assert_eq!((rows[0].id, rows[0].attempts), (a.id, 2));
}

/// What the relay writes after a batch whose second row failed: the first published, the
/// failure counted, the rest still pending in order.
#[tokio::test]
async fn a_settled_batch_marks_what_went_out_and_counts_the_failure() {
    let db = test_db().await;
    let [a, b, c] = three(&db).await;

    db.outbox()
        .settle(&[a.id], Some(b.id), at(5))
        .await
        .unwrap();

    let rows = db.outbox().pending(10).await.unwrap();
    let left: Vec<_> = rows.iter().map(|r| (r.id, r.attempts)).collect();
    assert_eq!(left, [(b.id, 1), (c.id, 0)]);
    db.outbox()
        .settle(&[b.id, c.id], None, at(6))
        .await
        .unwrap();
    assert_eq!(db.outbox().backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn a_message_enqueued_in_a_rolled_back_transaction_never_waits() {
    let db = test_db().await;
    let tx = db.begin().await.unwrap();
    tx.outbox().enqueue(&envelope(1)).await.unwrap();
    tx.rollback().await.unwrap();

    assert_eq!(db.outbox().backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn claimed_outbox_rows_are_not_claimed_twice() {
    let db = test_db().await;
    let [a, b, c] = three(&db).await;

    let tx = db.begin().await.unwrap();
    let claimed = tx.outbox().claim_pending(2).await.unwrap();
    assert_eq!(ids(&claimed), [a.id, b.id]);
    for row in &claimed {
        tx.outbox().mark_published(&[row.id], at(5)).await.unwrap();
    }
    tx.commit().await.unwrap();

    let tx = db.begin().await.unwrap();
    assert_eq!(ids(&tx.outbox().claim_pending(10).await.unwrap()), [c.id]);
    tx.rollback().await.unwrap();
}

/// Two relays at once (PostgreSQL, where several nodes share the outbox): the rows one has
/// claimed are skipped by the other until its transaction ends. SQLite has one connection and
/// one relay, so there is nothing to show there.
#[tokio::test]
async fn rows_claimed_by_one_relay_are_skipped_by_another_until_it_ends() {
    let db = test_db().await;
    if !db.is_postgres() {
        return;
    }
    let [a, b, c] = three(&db).await;

    let first = db.begin().await.unwrap();
    let second = db.begin().await.unwrap();
    let mine = first.outbox().claim_pending(2).await.unwrap();
    let theirs = second.outbox().claim_pending(10).await.unwrap();

    assert_eq!(ids(&mine), [a.id, b.id]);
    assert_eq!(ids(&theirs), [c.id]);
    first.rollback().await.unwrap();
    second.rollback().await.unwrap();
    let tx = db.begin().await.unwrap();
    let again = tx.outbox().claim_pending(10).await.unwrap();
    assert_eq!(ids(&again), [a.id, b.id, c.id], "a rollback releases them");
}

#[tokio::test]
async fn the_inbox_records_a_message_once_per_consumer() {
    let db = test_db().await;
    let id = Uuid::now_v7();
    let inbox = db.outbox();
    assert!(!inbox.inbox_contains("notify.email", id).await.unwrap());

    inbox.inbox_record("notify.email", id, at(1)).await.unwrap();
    inbox.inbox_record("notify.email", id, at(2)).await.unwrap();

    assert!(inbox.inbox_contains("notify.email", id).await.unwrap());
    assert!(!inbox.inbox_contains("audit.export", id).await.unwrap());
    assert!(!inbox
        .inbox_contains("notify.email", Uuid::now_v7())
        .await
        .unwrap());
}
