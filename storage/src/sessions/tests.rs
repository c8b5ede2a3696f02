//! `Sessions` on a fresh migrated database per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward_messages::{SessionId, UserId};

use super::SessionRecord;
use crate::testing::{at, test_db, TestDb};
use crate::StorageError;

/// A session of `user` opened at `created`: idle for 100 s, 1000 s at most.
fn session(user: UserId, created: i64) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(),
        user_id: user,
        created_at: at(created),
        last_used_at: at(created),
        idle_expires_at: at(created + 100),
        expires_at: at(created + 1000),
        revoked_at: None,
        user_agent: Some("curl/8".into()),
        ip: Some("192.0.2.7".into()),
        amr: vec!["pwd".into(), "otp".into()],
        acr: "aal2".into(),
    }
}

async fn insert(db: &TestDb, s: &SessionRecord) {
    db.sessions().insert(s).await.unwrap();
}

#[tokio::test]
async fn a_session_is_read_back_as_it_was_written() {
    let db = test_db().await;
    let s = session(UserId::new(), 0);
    insert(&db, &s).await;

    let back = db.sessions().by_id(s.id).await.unwrap().unwrap();

    assert_eq!((back.id, back.user_id), (s.id, s.user_id));
    assert_eq!((back.created_at, back.last_used_at), (at(0), at(0)));
    assert_eq!((back.idle_expires_at, back.expires_at), (at(100), at(1000)));
    assert_eq!(
        (back.revoked_at, back.user_agent, back.ip),
        (None, s.user_agent, s.ip)
    );
    assert!(db
        .sessions()
        .by_id(SessionId::new())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn live_sessions_are_listed_newest_first_without_revoked_or_expired_ones() {
    let db = test_db().await;
    let kate = UserId::new();
    let older = session(kate, 0);
    let newer = session(kate, 10);
    let revoked = session(kate, 20);
    let idle = SessionRecord {
        idle_expires_at: at(50),
        ..session(kate, 5)
    };
    let ended = SessionRecord {
        expires_at: at(40),
        ..session(kate, 6)
    };
    let someone_elses = session(UserId::new(), 30);
    for s in [&older, &newer, &revoked, &idle, &ended, &someone_elses] {
        insert(&db, s).await;
    }
    db.sessions()
        .revoke(revoked.id, at(21), "logout")
        .await
        .unwrap();

    let live = db.sessions().live_of(kate, at(50)).await.unwrap();

    let ids: Vec<_> = live.iter().map(|s| s.id).collect();
    assert_eq!(ids, [newer.id, older.id]);
    assert!(live.iter().all(|s| s.is_live(at(50))));
}

#[tokio::test]
async fn revoking_a_session_twice_reports_it_once() {
    let db = test_db().await;
    let s = session(UserId::new(), 0);
    insert(&db, &s).await;

    assert!(db.sessions().revoke(s.id, at(5), "logout").await.unwrap());
    assert!(!db.sessions().revoke(s.id, at(6), "logout").await.unwrap());

    let back = db.sessions().by_id(s.id).await.unwrap().unwrap();
    assert_eq!(back.revoked_at, Some(at(5)));
    assert!(!back.is_live(at(7)));
}

#[tokio::test]
async fn revoking_a_users_sessions_spares_the_one_kept_and_other_users() {
    let db = test_db().await;
    let (kate, bob) = (UserId::new(), UserId::new());
    let current = session(kate, 0);
    let (second, third) = (session(kate, 1), session(kate, 2));
    let already = session(kate, 3);
    let bobs = session(bob, 4);
    for s in [&current, &second, &third, &already, &bobs] {
        insert(&db, s).await;
    }
    db.sessions()
        .revoke(already.id, at(5), "logout")
        .await
        .unwrap();

    let tx = db.begin().await.unwrap();
    let mut ended = tx
        .sessions()
        .revoke_all_of(kate, Some(current.id), at(10), "password_changed")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    ended.sort();
    let mut expected = vec![second.id, third.id];
    expected.sort();
    assert_eq!(ended, expected, "only the sessions it revoked");
    let live = db.sessions().live_of(kate, at(11)).await.unwrap();
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), [current.id]);
    assert_eq!(db.sessions().live_of(bob, at(11)).await.unwrap().len(), 1);
    let all = db
        .sessions()
        .revoke_all_of(kate, None, at(12), "account_blocked")
        .await
        .unwrap();
    assert_eq!(all, [current.id]);
}

#[tokio::test]
async fn touching_a_session_moves_its_last_use_and_idle_expiry() {
    let db = test_db().await;
    let s = session(UserId::new(), 0);
    insert(&db, &s).await;

    db.sessions().touch(s.id, at(60), at(160)).await.unwrap();

    let back = db.sessions().by_id(s.id).await.unwrap().unwrap();
    assert_eq!((back.last_used_at, back.idle_expires_at), (at(60), at(160)));
    assert!(back.is_live(at(150)));
}

#[tokio::test]
async fn a_rotated_refresh_token_cannot_be_rotated_again() {
    let db = test_db().await;
    let s = session(UserId::new(), 0);
    insert(&db, &s).await;
    db.sessions()
        .insert_refresh_token(s.id, "h1", at(1))
        .await
        .unwrap();
    let token = db.sessions().refresh_token_by_hash("h1").await.unwrap();
    let token = token.unwrap();
    assert_eq!((token.session_id, token.created_at), (s.id, at(1)));
    assert_eq!(token.rotated_at, None);

    let tx = db.begin().await.unwrap();
    assert!(tx.sessions().mark_rotated(token.id, at(2)).await.unwrap());
    assert!(!tx.sessions().mark_rotated(token.id, at(3)).await.unwrap());
    tx.commit().await.unwrap();

    let again = db.sessions().mark_rotated(token.id, at(4)).await.unwrap();
    assert!(!again);
    let token = db.sessions().refresh_token_by_hash("h1").await.unwrap();
    assert_eq!(token.unwrap().rotated_at, Some(at(2)));
}

/// A refresh token of `s` with hash `h`, stored at `at(1)`, as read back.
async fn stored_token(db: &TestDb, s: &SessionRecord, h: &str) -> super::RefreshTokenRecord {
    db.sessions()
        .insert_refresh_token(s.id, h, at(1))
        .await
        .unwrap();
    db.sessions()
        .refresh_token_by_hash(h)
        .await
        .unwrap()
        .unwrap()
}

/// Group commit: only tokens not rotated before are marked and get a successor, and their
/// sessions' idle expiry moves to the cap or the session's own end, whichever is sooner.
#[tokio::test]
async fn a_group_of_rotations_marks_only_unrotated_tokens_and_moves_their_sessions() {
    let db = test_db().await;
    let (a, b, c) = (
        session(UserId::new(), 0),
        session(UserId::new(), 0),
        session(UserId::new(), 0),
    );
    // `b` ends sooner than the idle cap below.
    let b = SessionRecord {
        expires_at: at(150),
        ..b
    };
    for s in [&a, &b, &c] {
        insert(&db, s).await;
    }
    let mut tokens = Vec::new();
    for (s, h) in [(&a, "ha"), (&b, "hb"), (&c, "hc")] {
        tokens.push(stored_token(&db, s, h).await);
    }
    assert!(db
        .sessions()
        .mark_rotated(tokens[2].id, at(2))
        .await
        .unwrap());
    let rotation = |i: usize, s: &SessionRecord| super::Rotation {
        token_id: tokens[i].id,
        session_id: s.id,
        successor_hash: format!("next{i}"),
    };
    let marked = db
        .sessions()
        .rotate_many(
            &[rotation(0, &a), rotation(1, &b), rotation(2, &c)],
            at(10),
            at(200),
        )
        .await
        .unwrap();

    assert_eq!(marked, [tokens[0].id, tokens[1].id].into_iter().collect());
    let db = &db;
    let next =
        |h: &'static str| async move { db.sessions().refresh_token_by_hash(h).await.unwrap() };
    assert_eq!(next("next0").await.map(|t| t.session_id), Some(a.id));
    assert_eq!(next("next1").await.map(|t| t.session_id), Some(b.id));
    assert!(
        next("next2").await.is_none(),
        "a rotated token gets no second successor"
    );
    for (s, idle, used) in [
        (&a, at(200), at(10)),
        (&b, at(150), at(10)),
        (&c, at(100), at(0)),
    ] {
        let back = db.sessions().by_id(s.id).await.unwrap().unwrap();
        assert_eq!((back.idle_expires_at, back.last_used_at), (idle, used));
    }
    assert!(db
        .sessions()
        .rotate_many(&[rotation(0, &a)], at(11), at(300))
        .await
        .unwrap()
        .is_empty());
    let tokens_of = |s: SessionId| async move {
        let mut n = 0;
        for h in ["ha", "hb", "hc", "next0", "next1", "next2"] {
            let t = db.sessions().refresh_token_by_hash(h).await.unwrap();
            n += usize::from(t.is_some_and(|t| t.session_id == s));
        }
        n
    };
    assert_eq!(
        (tokens_of(a.id).await, tokens_of(c.id).await),
        (2, 1),
        "a token rotated twice in a row gets one successor"
    );
}

/// A group whose successor collides with a stored hash fails as a whole: nothing of it stays.
#[tokio::test]
async fn a_group_of_rotations_that_fails_writes_nothing() {
    let db = test_db().await;
    let (a, b) = (session(UserId::new(), 0), session(UserId::new(), 0));
    let mut tokens = Vec::new();
    for (s, h) in [(&a, "ha"), (&b, "hb")] {
        insert(&db, s).await;
        tokens.push(stored_token(&db, s, h).await);
    }
    let rotations = [
        super::Rotation {
            token_id: tokens[0].id,
            session_id: a.id,
            successor_hash: "next".into(),
        },
        super::Rotation {
            token_id: tokens[1].id,
            session_id: b.id,
            successor_hash: "ha".into(),
        },
    ];

    let failed = db.sessions().rotate_many(&rotations, at(10), at(200)).await;

    assert!(failed.is_err(), "{failed:?}");
    for (t, s) in tokens.iter().zip([&a, &b]) {
        let back = db
            .sessions()
            .refresh_token_by_hash(&t.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert!(back.rotated_at.is_none());
        let session = db.sessions().by_id(s.id).await.unwrap().unwrap();
        assert_eq!(session.last_used_at, at(0));
    }
    assert!(db
        .sessions()
        .refresh_token_by_hash("next")
        .await
        .unwrap()
        .is_none());
    // The writer is usable again: the failed transaction did not stay open.
    let marked = db
        .sessions()
        .rotate_many(&rotations[..1], at(11), at(200))
        .await
        .unwrap();
    assert_eq!(marked, [tokens[0].id].into_iter().collect());
}

#[tokio::test]
async fn a_refresh_token_hash_is_unique_and_an_unknown_one_finds_nothing() {
    let db = test_db().await;
    let s = session(UserId::new(), 0);
    insert(&db, &s).await;
    db.sessions()
        .insert_refresh_token(s.id, "h1", at(1))
        .await
        .unwrap();

    let twice = db.sessions().insert_refresh_token(s.id, "h1", at(2)).await;

    assert!(
        matches!(twice, Err(StorageError::Conflict { .. })),
        "{twice:?}"
    );
    let unknown = db.sessions().refresh_token_by_hash("nope").await.unwrap();
    assert!(unknown.is_none());
}

#[tokio::test]
async fn a_group_of_refresh_hashes_is_read_with_its_sessions_and_users_in_one_query() {
    let db = test_db().await;
    let (a, b) = (session(UserId::new(), 0), session(UserId::new(), 0));
    let holder = crate::NewUser {
        id: a.user_id,
        email: keyward_messages::Email::parse("email", "a@example.com").unwrap(),
        username: None,
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
        email_verified: true,
        locale: "en".into(),
        now: at(0),
    };
    db.users().insert(holder).await.unwrap();
    for (s, h) in [(&a, "ha"), (&b, "hb")] {
        insert(&db, s).await;
        db.sessions()
            .insert_refresh_token(s.id, h, at(1))
            .await
            .unwrap();
    }
    let hashes = ["hb", "nope", "ha"].map(String::from);

    let mut found = db
        .sessions()
        .refresh_tokens_with_holders(&hashes)
        .await
        .unwrap();

    found.sort_by(|x, y| x.0.token_hash.cmp(&y.0.token_hash));
    let rows: Vec<_> = found
        .iter()
        .map(|(t, s, u)| {
            (
                t.token_hash.as_str(),
                t.session_id,
                s.id,
                s.user_id,
                u.as_ref().map(|u| u.id),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ha", a.id, a.id, a.user_id, Some(a.user_id)),
            ("hb", b.id, b.id, b.user_id, None)
        ]
    );
    assert!(db
        .sessions()
        .refresh_tokens_with_holders(&[])
        .await
        .unwrap()
        .is_empty());
}

/// A stampede's group, larger than the groups written with a placeholder per value: read and
/// rotated through the one-list form, with the same outcome.
#[tokio::test]
async fn a_large_group_is_read_and_rotated_as_a_small_one_is() {
    large_group(|i| format!("next{i}")).await;
}

/// Hashes that cannot go as PostgreSQL's comma-joined list go a placeholder per value.
#[tokio::test]
async fn a_large_group_with_commas_in_its_hashes_is_rotated_as_well() {
    large_group(|i| format!("next,{i}")).await;
}

async fn large_group(successor: fn(usize) -> String) {
    let db = test_db().await;
    let n = crate::lists::ROWS_INLINE * 2 + 3;
    let (mut sessions, mut tokens) = (Vec::new(), Vec::new());
    for i in 0..n {
        let s = session(UserId::new(), 0);
        insert(&db, &s).await;
        tokens.push(stored_token(&db, &s, &successor(i + 1000)).await);
        sessions.push(s);
    }
    let mut hashes: Vec<String> = (0..n).map(|i| successor(i + 1000)).collect();
    hashes.push("nope".into());
    let mut found: Vec<_> = db
        .sessions()
        .refresh_tokens_with_holders(&hashes)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, s, _)| (t.id, s.id))
        .collect();
    found.sort();
    let mut expected: Vec<_> = tokens.iter().map(|t| (t.id, t.session_id)).collect();
    expected.sort();
    assert_eq!(found, expected);

    // Every third token was rotated before.
    let before = |i: usize| i.is_multiple_of(3);
    for i in (0..n).filter(|&i| before(i)) {
        assert!(db
            .sessions()
            .mark_rotated(tokens[i].id, at(2))
            .await
            .unwrap());
    }
    let rotations: Vec<_> = (0..n)
        .map(|i| super::Rotation {
            token_id: tokens[i].id,
            session_id: sessions[i].id,
            successor_hash: successor(i),
        })
        .collect();
    let marked = db
        .sessions()
        .rotate_many(&rotations, at(10), at(50))
        .await
        .unwrap();

    let rotated: std::collections::HashSet<_> = (0..n)
        .filter(|&i| !before(i))
        .map(|i| tokens[i].id)
        .collect();
    assert_eq!(marked, rotated);
    for (i, s) in sessions.iter().enumerate() {
        let next = db
            .sessions()
            .refresh_token_by_hash(&successor(i))
            .await
            .unwrap();
        let back = db.sessions().by_id(s.id).await.unwrap().unwrap();
        if before(i) {
            assert!(
                next.is_none(),
                "{i}: a rotated token gets no second successor"
            );
            assert_eq!((back.last_used_at, back.idle_expires_at), (at(0), at(100)));
        } else {
            assert_eq!(
                next.map(|t| (t.session_id, t.rotated_at)),
                Some((s.id, None))
            );
            assert_eq!((back.last_used_at, back.idle_expires_at), (at(10), at(50)));
        }
    }
}

/// A verified user named `name`, stored.
async fn stored_user(db: &TestDb, name: &str) -> UserId {
    let id = UserId::new();
    let user = crate::NewUser {
        id,
        email: keyward_messages::Email::parse("email", &format!("{name}@example.com")).unwrap(),
        username: None,
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
        email_verified: true,
        locale: "en".into(),
        now: at(0),
    };
    db.users().insert(user).await.unwrap();
    id
}

/// A one-call rotation the database refuses (a successor's hash taken) writes nothing, and
/// the connection it ran on rotates again afterwards.
#[tokio::test]
async fn a_one_call_rotation_that_fails_writes_nothing() {
    let db = test_db().await;
    let kate = stored_user(&db, "kate").await;
    let (a, b) = (session(kate, 0), session(kate, 0));
    for (s, h) in [(&a, "ha"), (&b, "hb")] {
        insert(&db, s).await;
        stored_token(&db, s, h).await;
    }
    let succession = |presented: &str, successor: &str| super::Succession {
        presented_hash: presented.into(),
        successor_hash: successor.into(),
    };
    let both = [succession("ha", "next"), succession("hb", "ha")];

    let mut lease = super::ConnectionLease::default();
    let failed = db
        .sessions()
        .rotate_presented(&mut lease, &both, at(10), at(200))
        .await;

    assert!(failed.is_err(), "{failed:?}");
    for (h, s) in [("ha", &a), ("hb", &b)] {
        let back = db.sessions().refresh_token_by_hash(h).await.unwrap();
        assert!(back.unwrap().rotated_at.is_none(), "{h} was marked");
        let session = db.sessions().by_id(s.id).await.unwrap().unwrap();
        assert_eq!(session.last_used_at, at(0));
    }
    let next = db.sessions().refresh_token_by_hash("next").await.unwrap();
    assert!(next.is_none());
    let again = db
        .sessions()
        .rotate_presented(&mut lease, &both[..1], at(11), at(200))
        .await
        .unwrap();
    assert!(again.len() == 1 && again[0].marked, "{again:?}");
}

/// The one-call rotation (one statement on PostgreSQL, one hand-off on SQLite): it marks only
/// tokens not rotated yet whose session is live and whose user is not blocked, and answers
/// with what it found before its own writes.
#[tokio::test]
async fn rotating_presented_tokens_in_one_statement_marks_only_the_usable_ones() {
    let db = test_db().await;
    let (kate, bob) = (
        stored_user(&db, "kate").await,
        stored_user(&db, "bob").await,
    );
    db.users().set_blocked(bob, true, at(1)).await.unwrap();
    // live, ending before the idle cap, rotated before, revoked, idle-expired at 10, blocked.
    let live = session(kate, 0);
    let short = SessionRecord {
        expires_at: at(150),
        ..session(kate, 0)
    };
    let (rotated, revoked, idle) = (session(kate, 0), session(kate, 0), session(kate, -95));
    let blocked = session(bob, 0);
    let all = [
        (&live, "h0"),
        (&short, "h1"),
        (&rotated, "h2"),
        (&revoked, "h3"),
        (&idle, "h4"),
        (&blocked, "h5"),
    ];
    let mut ids = Vec::new();
    for (s, h) in all {
        insert(&db, s).await;
        ids.push(stored_token(&db, s, h).await.id);
    }
    assert!(db.sessions().mark_rotated(ids[2], at(2)).await.unwrap());
    assert!(db
        .sessions()
        .revoke(revoked.id, at(3), "logout")
        .await
        .unwrap());
    let successions: Vec<super::Succession> = ["h0", "h1", "h2", "h3", "h4", "h5", "nope"]
        .iter()
        .map(|h| super::Succession {
            presented_hash: (*h).into(),
            successor_hash: format!("next-{h}"),
        })
        .collect();

    let mut found = db
        .sessions()
        .rotate_presented(&mut Default::default(), &successions, at(10), at(200))
        .await
        .unwrap();

    found.sort_by(|x, y| x.token.token_hash.cmp(&y.token.token_hash));
    let seen: Vec<_> = found
        .iter()
        .map(|p| {
            (
                p.token.token_hash.as_str(),
                p.marked,
                p.token.rotated_at,
                p.session.id,
                p.user.as_ref().map(|u| u.id),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("h0", true, None, live.id, Some(kate)),
            ("h1", true, None, short.id, Some(kate)),
            ("h2", false, Some(at(2)), rotated.id, Some(kate)),
            ("h3", false, None, revoked.id, Some(kate)),
            ("h4", false, None, idle.id, Some(kate)),
            ("h5", false, None, blocked.id, Some(bob)),
        ],
        "what it found is as it was before the statement"
    );
    // Found before its own writes: the sessions' use shows on the next read only.
    assert_eq!(found[0].session.last_used_at, at(0));
    let db = &db;
    let next = |h: String| async move { db.sessions().refresh_token_by_hash(&h).await.unwrap() };
    for (h, successor_of) in [("h0", Some(live.id)), ("h1", Some(short.id))] {
        let t = next(format!("next-{h}")).await;
        assert_eq!(t.map(|t| t.session_id), successor_of);
        let back = next(h.to_owned()).await.unwrap();
        assert_eq!(back.rotated_at, Some(at(10)));
    }
    for h in ["h2", "h3", "h4", "h5", "nope"] {
        assert!(
            next(format!("next-{h}")).await.is_none(),
            "{h} got a successor"
        );
    }
    for (s, idle, used) in [
        (&live, at(200), at(10)),
        (&short, at(150), at(10)),
        (&rotated, at(100), at(0)),
    ] {
        let back = db.sessions().by_id(s.id).await.unwrap().unwrap();
        assert_eq!((back.idle_expires_at, back.last_used_at), (idle, used));
    }
    let again = db
        .sessions()
        .rotate_presented(&mut Default::default(), &successions[..1], at(11), at(300))
        .await
        .unwrap();
    assert!(
        again.len() == 1 && !again[0].marked && again[0].token.rotated_at == Some(at(10)),
        "a token rotated once is not rotated again: {again:?}"
    );
}

/// A lease keeps its connection after a rotation. On SQLite that is the one writer: the node's
/// other writes wait for it until it is released, then go through. On PostgreSQL it is one
/// connection of a pool: the others' writes go on.
#[tokio::test]
async fn a_connection_lease_holds_sqlites_writer_until_released() {
    let db = test_db().await;
    let kate = stored_user(&db, "kate").await;
    let live = session(kate, 0);
    insert(&db, &live).await;
    stored_token(&db, &live, "h").await;
    let mut lease = super::ConnectionLease::default();

    let rotated = db
        .sessions()
        .rotate_presented(
            &mut lease,
            &[super::Succession {
                presented_hash: "h".into(),
                successor_hash: "next".into(),
            }],
            at(10),
            at(200),
        )
        .await
        .unwrap();

    assert!(rotated.len() == 1 && rotated[0].marked, "{rotated:?}");
    assert!(lease.held_for().is_some());
    let other = session(kate, 0);
    let write = {
        let (store, other) = (db.store.clone(), other.clone());
        tokio::spawn(async move { store.sessions().insert(&other).await })
    };
    if !db.is_postgres() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!write.is_finished(), "a write went through a held writer");
        lease.release();
        assert!(lease.held_for().is_none());
    }
    tokio::time::timeout(std::time::Duration::from_secs(5), write)
        .await
        .expect("the write goes through (on SQLite once the writer is released)")
        .unwrap()
        .unwrap();
    assert!(db.sessions().by_id(other.id).await.unwrap().is_some());
}
