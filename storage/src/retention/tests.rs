//! `Retention` on a fresh migrated database per test (SQLite, or PostgreSQL when
//! `KEYWARD_TEST_DATABASE_URL` is set): old rows go, young and still-useful ones stay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
use keyward_messages::{SessionId, UserId};
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use crate::testing::{at, test_db, TestDb};
use crate::{AuditRecord, NewEmailToken, SessionRecord, TokenPurpose};

async fn count(db: &TestDb, sql: &str) -> i64 {
    let c = db.connection();
    let row = c
        .query_one_raw(Statement::from_string(c.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Repeats a batched purge until it comes back short, as the purger does.
macro_rules! drain {
    ($call:expr, $limit:expr) => {{
        let mut total = 0;
        loop {
            let n = $call.await.unwrap();
            total += n;
            if n < $limit {
                break total;
            }
        }
    }};
}

fn envelope(t: i64) -> Envelope {
    let ev = DomainEvent::UserUnblocked {
        user_id: UserId::new(),
        by: None,
        by_client: None,
    };
    Envelope::new(Uuid::now_v7(), at(t), None, &Outgoing::Event(ev))
}

#[tokio::test]
async fn published_outbox_rows_go_after_the_cutoff_and_unpublished_ones_never() {
    let db = test_db().await;
    let mut old = Vec::new();
    for _ in 0..5 {
        let e = envelope(0);
        db.outbox().enqueue(&e).await.unwrap();
        db.outbox().mark_published(&[e.id], at(10)).await.unwrap();
        old.push(e.id);
    }
    let young = envelope(0);
    db.outbox().enqueue(&young).await.unwrap();
    db.outbox()
        .mark_published(&[young.id], at(200))
        .await
        .unwrap();
    // Written long ago, never published (the broker was down): it must stay.
    let stuck = envelope(-1000);
    db.outbox().enqueue(&stuck).await.unwrap();

    let r = db.retention();
    assert_eq!(r.purge_outbox(at(100), 2).await.unwrap(), 2, "one batch");
    assert_eq!(drain!(r.purge_outbox(at(100), 2), 2), 3);

    let ids: Vec<Uuid> = db
        .outbox()
        .recent(at(-2000), &["user.unblocked"], 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&young.id) && ids.contains(&stuck.id));
    assert_eq!(db.outbox().backlog().await.unwrap(), 1);
    assert_eq!(r.purge_outbox(at(100_000), 10).await.unwrap(), 1);
    assert_eq!(db.outbox().backlog().await.unwrap(), 1, "still unpublished");
}

#[tokio::test]
async fn processed_inbox_records_go_after_the_cutoff() {
    let db = test_db().await;
    let (old, young) = (Uuid::now_v7(), Uuid::now_v7());
    let inbox = db.outbox();
    inbox
        .inbox_record("notify.email", old, at(10))
        .await
        .unwrap();
    inbox.inbox_record("caches", old, at(10)).await.unwrap();
    inbox
        .inbox_record("notify.email", young, at(200))
        .await
        .unwrap();

    assert_eq!(drain!(db.retention().purge_inbox(at(100), 1), 1), 2);

    assert!(!inbox.inbox_contains("notify.email", old).await.unwrap());
    assert!(!inbox.inbox_contains("caches", old).await.unwrap());
    assert!(inbox.inbox_contains("notify.email", young).await.unwrap());
}

/// A session of `user` opened at `created`, idle for 100 s, 1000 s at most.
fn session(user: UserId, created: i64, revoked: Option<i64>) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(),
        user_id: user,
        created_at: at(created),
        last_used_at: at(created),
        idle_expires_at: at(created + 100),
        expires_at: at(created + 1000),
        revoked_at: revoked.map(at),
        user_agent: Some("curl/8".into()),
        ip: Some("192.0.2.7".into()),
        amr: vec!["pwd".into()],
        acr: "aal1".into(),
    }
}

async fn with_tokens(db: &TestDb, s: &SessionRecord, n: usize) {
    db.sessions().insert(s).await.unwrap();
    for _ in 0..n {
        let hash = Uuid::new_v4().simple().to_string();
        db.sessions()
            .insert_refresh_token(s.id, &hash, s.created_at)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn ended_sessions_go_with_their_tokens_but_each_users_latest_stays_scrubbed() {
    let db = test_db().await;
    let (kate, bob, ann) = (UserId::new(), UserId::new(), UserId::new());
    // Kate: two sessions idle-expired at 100 and 110, one revoked at 50, one live.
    let idle = session(kate, 0, None);
    let idle2 = session(kate, 10, None);
    let revoked = session(kate, 20, Some(50));
    let live = session(kate, 5_000, None);
    // Bob: one session, expired long ago: it is his last login, so it stays.
    let last = session(bob, 0, None);
    // Ann: two sessions that ended after the cutoff: both stay.
    let recent = session(ann, 4_450, Some(4_520));
    let recent2 = session(ann, 4_460, None);
    for s in [&idle, &idle2, &revoked, &live, &last, &recent, &recent2] {
        with_tokens(&db, s, 3).await;
    }

    let cutoff = at(4_500);
    let r = db.retention();
    let tokens = drain!(r.purge_session_tokens(cutoff, 4), 4);
    let sessions = drain!(r.purge_sessions(cutoff, 2), 2);
    let scrubbed = drain!(r.scrub_sessions(cutoff, 2), 2);

    assert_eq!(tokens, 12, "the tokens of idle, idle2, revoked and last");
    assert_eq!(sessions, 3, "idle, idle2 and revoked");
    assert_eq!(scrubbed, 1, "bob's last");
    for gone in [&idle, &idle2, &revoked] {
        assert!(db.sessions().by_id(gone.id).await.unwrap().is_none());
    }
    for kept in [&live, &recent, &recent2] {
        let back = db.sessions().by_id(kept.id).await.unwrap().unwrap();
        assert_eq!(back.ip.as_deref(), Some("192.0.2.7"));
    }
    let bobs = db.sessions().by_id(last.id).await.unwrap().unwrap();
    assert_eq!((bobs.ip, bobs.user_agent), (None, None));
    let logins = db.sessions().last_logins(&[bob, kate]).await.unwrap();
    assert!(logins.contains(&(bob, at(0))), "{logins:?}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM refresh_tokens").await,
        9,
        "the tokens of live, recent and recent2"
    );
}

async fn email_token(db: &TestDb, purpose: TokenPurpose, created: i64, ttl: i64) -> String {
    let hash = Uuid::new_v4().simple().to_string();
    db.users()
        .insert_email_token(NewEmailToken {
            user_id: UserId::new(),
            purpose,
            token_hash: hash.clone(),
            now: at(created),
            expires_at: at(created + ttl),
            registration: None,
        })
        .await
        .unwrap();
    hash
}

#[tokio::test]
async fn email_tokens_go_once_they_cannot_be_used_except_an_unused_verification() {
    let db = test_db().await;
    use TokenPurpose::{ResetPassword as Reset, VerifyEmail as Verify};
    let used = email_token(&db, Verify, 0, 1000).await;
    db.users()
        .consume_email_token(Verify, &used, at(10))
        .await
        .unwrap();
    let used_late = email_token(&db, Reset, 0, 1000).await;
    db.users()
        .consume_email_token(Reset, &used_late, at(900))
        .await
        .unwrap();
    let expired_reset = email_token(&db, Reset, 0, 100).await;
    let expired_verify = email_token(&db, Verify, 0, 100).await;
    let live = email_token(&db, Reset, 0, 100_000).await;

    let n = drain!(db.retention().purge_email_tokens(at(500), 1), 1);

    assert_eq!(n, 2, "the used verification and the expired reset");
    let left = count(&db, "SELECT COUNT(*) FROM email_tokens").await;
    assert_eq!(left, 3, "used late, the unused verification, the live one");
    let owner = db.users().email_token_user(Reset, &live, at(600)).await;
    assert!(owner.unwrap().is_some());
    let _ = (expired_verify, expired_reset);
}

#[tokio::test]
async fn failed_logins_go_after_the_cutoff() {
    let db = test_db().await;
    let failures = db.login_failures();
    for t in [0, 10, 20] {
        failures.record("ip:192.0.2.7", at(t)).await.unwrap();
    }
    failures.record("ip:192.0.2.7", at(200)).await.unwrap();

    assert_eq!(
        drain!(db.retention().purge_login_failures(at(100), 2), 2),
        3
    );

    assert_eq!(
        failures.since("ip:192.0.2.7", at(-1)).await.unwrap(),
        (1, Some(at(200)))
    );
}

fn line(t: i64, kind: &str) -> AuditRecord {
    AuditRecord {
        at: at(t),
        kind: kind.into(),
        user_id: Some(UserId::new()),
        actor_id: None,
        actor_client_id: None,
        ip: Some("192.0.2.7".into()),
        user_agent: None,
        request_id: None,
        details: "{}".into(),
    }
}

#[tokio::test]
async fn old_audit_lines_go_only_through_the_purge_and_the_log_stays_append_only() {
    let db = test_db().await;
    for t in [0, 10, 20] {
        db.audit()
            .append(&line(t, "user.login_failed"))
            .await
            .unwrap();
    }
    db.audit()
        .append(&line(200, "user.logged_in"))
        .await
        .unwrap();

    let tx = db.begin().await.unwrap();
    assert_eq!(tx.retention().purge_audit_log(at(100), 2).await.unwrap(), 2);
    assert_eq!(tx.retention().purge_audit_log(at(100), 2).await.unwrap(), 1);
    tx.commit().await.unwrap();

    let left = db.audit().latest(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].kind, "user.logged_in");
    // The gate closed with the purge: a plain delete or update is refused as before, old
    // line or not, and no cutoff is left behind.
    let c = db.connection();
    let backend = c.get_database_backend();
    for sql in [
        "DELETE FROM audit_log",
        "UPDATE audit_log SET kind = 'rewritten'",
    ] {
        let r = c.execute_raw(Statement::from_string(backend, sql)).await;
        assert!(r.is_err(), "{sql} was allowed");
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_log_retention").await,
        0
    );
    // A purge that fails half-way (here: rolled back) leaves nothing behind either.
    db.audit()
        .append(&line(0, "user.login_failed"))
        .await
        .unwrap();
    let tx = db.begin().await.unwrap();
    assert_eq!(
        tx.retention().purge_audit_log(at(100), 10).await.unwrap(),
        1
    );
    tx.rollback().await.unwrap();
    assert_eq!(db.audit().latest(10).await.unwrap().len(), 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_log_retention").await,
        0
    );
}

/// Two nodes' purgers at once (PostgreSQL): the second finds the lock taken and skips its
/// run; once the first one's transaction ends, the lock is free again. SQLite has one writer,
/// so there the lock is always granted.
#[tokio::test]
async fn one_purger_at_a_time_holds_the_lock() {
    let db = test_db().await;
    let first = db.begin().await.unwrap();
    assert!(first.retention().try_lock().await.unwrap());
    if !db.is_postgres() {
        first.rollback().await.unwrap();
        return;
    }
    let second = db.begin().await.unwrap();
    assert!(!second.retention().try_lock().await.unwrap());
    second.rollback().await.unwrap();
    // Holding the lock does not hold up the purge itself, which runs on other connections.
    db.login_failures()
        .record("ip:192.0.2.7", at(0))
        .await
        .unwrap();
    assert_eq!(
        db.retention()
            .purge_login_failures(at(100), 10)
            .await
            .unwrap(),
        1
    );
    first.commit().await.unwrap();
    let third = db.begin().await.unwrap();
    assert!(third.retention().try_lock().await.unwrap());
    third.rollback().await.unwrap();
}
