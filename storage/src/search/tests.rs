//! `ProfileSearch` on a fresh migrated database per test (SQLite, and PostgreSQL when
//! `KEYWARD_TEST_DATABASE_URL` is set).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use keyward_messages::profiles::{Viewer, Visibility};
use keyward_messages::UserId;
use sea_orm::ConnectionTrait;

use super::{validate_query, SearchEntry, SearchError, SearchPage, SearchQuery};
use crate::testing::{test_db, TestDb};

fn entry(
    username: Option<&str>,
    display_name: Option<&str>,
    visibility: Visibility,
) -> SearchEntry {
    SearchEntry {
        user_id: UserId::new(),
        username: username.map(str::to_owned),
        display_name: display_name.map(str::to_owned),
        avatar: username.map(|u| format!("https://cdn.example/{u}.webp")),
        visibility,
    }
}

fn public(username: Option<&str>, display_name: Option<&str>) -> SearchEntry {
    entry(username, display_name, Visibility::Public)
}

async fn index(db: &TestDb, entries: &[&SearchEntry]) {
    for e in entries {
        db.search_index().upsert(e).await.unwrap();
    }
}

async fn page(
    db: &TestDb,
    q: &str,
    viewer: Viewer,
    limit: u32,
    cursor: Option<&str>,
) -> SearchPage {
    db.search_index()
        .search(&SearchQuery {
            q,
            viewer,
            limit,
            cursor,
        })
        .await
        .unwrap()
}

/// The ids an anonymous search finds, in order (one page of 50).
async fn found(db: &TestDb, q: &str) -> Vec<UserId> {
    let p = page(db, q, Viewer::Anonymous, 50, None).await;
    p.items.into_iter().map(|h| h.user_id).collect()
}

/// The ids an anonymous search finds going through its pages of `limit`, each checked to
/// hold at most `limit` hits.
async fn paged(db: &TestDb, q: &str, limit: u32) -> Vec<UserId> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = page(db, q, Viewer::Anonymous, limit, cursor.as_deref()).await;
        assert!(p.items.len() <= limit as usize);
        ids.extend(p.items.iter().map(|h| h.user_id));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

/// A store on a SQLite file of its own (WAL, the search connections beside the writer), not
/// yet migrated, and its directory.
async fn file_store(tag: &str) -> (crate::Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "keyward-search-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = crate::Store::connect(&format!("sqlite://{}/db?mode=rwc", dir.display()))
        .await
        .unwrap();
    (store, dir)
}

/// What an anonymous search of `store` finds (one page of 50).
async fn anonymous_hits(store: &crate::Store, q: &str) -> Vec<super::SearchHit> {
    let q = SearchQuery {
        q,
        viewer: Viewer::Anonymous,
        limit: 50,
        cursor: None,
    };
    store.search_index().search(&q).await.unwrap().items
}

#[tokio::test]
async fn exact_comes_before_prefix_before_typo_before_transliteration() {
    let db = test_db().await;
    let exact = public(Some("petrov"), None);
    let prefix_word = public(None, Some("Petrova Anna"));
    let prefix_name = public(Some("petrovsky"), None);
    let typo = public(Some("petrof"), None);
    let translit = public(None, Some("Петров Игорь"));
    let unrelated = public(Some("sidorov"), Some("Ivan Sidorov"));
    // Indexed in another order than they rank.
    index(
        &db,
        &[
            &translit,
            &unrelated,
            &typo,
            &prefix_name,
            &prefix_word,
            &exact,
        ],
    )
    .await;

    let ids = found(&db, "Petrov").await;

    let want = [&exact, &prefix_word, &prefix_name, &typo, &translit];
    assert_eq!(ids, want.map(|e| e.user_id));
    let p = page(&db, "petrov", Viewer::Anonymous, 1, None).await;
    assert_eq!(p.items[0].username.as_deref(), Some("petrov"));
    assert_eq!(
        p.items[0].avatar.as_deref(),
        Some("https://cdn.example/petrov.webp")
    );
}

#[tokio::test]
async fn case_and_yo_do_not_matter() {
    let db = test_db().await;
    let yolkin = public(Some("pyotr_y"), Some("Пётр Ёлкин"));
    let plain = public(None, Some("ПЕТР ЕЛКИН"));
    index(&db, &[&yolkin, &plain]).await;

    for q in ["пётр ёлкин", "ПЕТР ЕЛКИН", "Петр Елкин", "ЁЛКИН", "елк"]
    {
        let ids: HashSet<UserId> = found(&db, q).await.into_iter().collect();
        assert_eq!(ids, HashSet::from([yolkin.user_id, plain.user_id]), "{q}");
    }
}

#[tokio::test]
async fn cyrillic_and_latin_find_each_other() {
    let db = test_db().await;
    let pyotr = public(None, Some("Пётр Сидоров"));
    let elkin = public(Some("elkin"), None);
    let julia = public(Some("julia_k"), None);
    let natalia = public(None, Some("Natalia"));
    index(&db, &[&pyotr, &elkin, &julia, &natalia]).await;

    assert_eq!(found(&db, "petr").await, [pyotr.user_id]);
    assert_eq!(found(&db, "Pyotr").await, [pyotr.user_id]);
    assert_eq!(found(&db, "sidorov").await, [pyotr.user_id]);
    assert_eq!(found(&db, "ёлкин").await, [elkin.user_id]);
    assert_eq!(found(&db, "Юлия").await, [julia.user_id]);
    assert_eq!(found(&db, "наталья").await, [natalia.user_id]);
    assert!(found(&db, "иван").await.is_empty());
}

#[tokio::test]
async fn up_to_two_typos_are_forgiven_in_long_queries_and_one_in_short_ones() {
    let db = test_db().await;
    let long = public(Some("aleksandrova"), None);
    let short = public(None, Some("Иван Иванов"));
    index(&db, &[&long, &short]).await;

    for q in ["aleksnadrova", "alksandrovo", "aleksandrva"] {
        assert_eq!(found(&db, q).await, [long.user_id], "{q}");
    }
    // Three edits.
    assert!(found(&db, "alksndrovo").await.is_empty());
    assert_eq!(found(&db, "ивонов").await, [short.user_id]);
    assert_eq!(found(&db, "иванво").await, [short.user_id]);
    // Two edits in a six-letter query, and any typo in a four-letter one.
    assert!(found(&db, "ивонв").await.is_empty());
    assert!(found(&db, "ивон").await.is_empty());
}

#[tokio::test]
async fn fewer_typos_rank_first() {
    let db = test_db().await;
    let two = public(Some("konstantinova"), None);
    let one = public(Some("konstantinov"), None);
    index(&db, &[&two, &one]).await;

    // One edit from konstantinov, two from konstantinova.
    assert_eq!(found(&db, "konstantinv").await, [one.user_id, two.user_id]);
}

#[tokio::test]
async fn each_viewer_finds_only_what_they_may_see() {
    let db = test_db().await;
    let open = entry(Some("mila_open"), None, Visibility::Public);
    let members = entry(Some("mila_members"), None, Visibility::Users);
    let private = entry(Some("mila_private"), None, Visibility::Private);
    index(&db, &[&open, &members, &private]).await;
    let set = |p: SearchPage| {
        p.items
            .into_iter()
            .map(|h| h.user_id)
            .collect::<HashSet<_>>()
    };

    let anonymous = page(&db, "mila", Viewer::Anonymous, 50, None).await;
    let someone = page(&db, "mila", Viewer::User(UserId::new()), 50, None).await;
    let owner = page(&db, "mila", Viewer::User(private.user_id), 50, None).await;

    assert_eq!(set(anonymous), HashSet::from([open.user_id]));
    assert_eq!(set(someone), HashSet::from([open.user_id, members.user_id]));
    let all = HashSet::from([open.user_id, members.user_id, private.user_id]);
    assert_eq!(set(owner), all);
    // Not by an exact match either, and not by a typo.
    assert!(found(&db, "mila_private").await.is_empty());
    assert!(found(&db, "mila_privte").await.is_empty());
}

#[tokio::test]
async fn pages_follow_each_other_without_duplicates_or_gaps() {
    let db = test_db().await;
    let mut entries = Vec::new();
    for i in 0..23 {
        entries.push(public(
            Some(&format!("kate{i:02}")),
            Some(&format!("Kate Number {i}")),
        ));
    }
    entries.push(public(Some("kate"), Some("Катя")));
    entries.push(public(None, Some("Кейт Иванова")));
    entries.push(public(Some("kaet"), None));
    entries.push(entry(Some("kate_hidden"), None, Visibility::Private));
    db.search_index().bulk_load(&entries).await.unwrap();

    let whole = found(&db, "kate").await;
    let paged = paged(&db, "kate", 4).await;

    assert_eq!(whole.len(), 23 + 1, "the 23 kates and kate");
    assert_eq!(paged, whole);
    assert_eq!(whole[0], entries[23].user_id, "the exact match first");
    let distinct: HashSet<_> = paged.iter().collect();
    assert_eq!(distinct.len(), paged.len());
}

#[tokio::test]
async fn typo_and_transliteration_matches_page_like_the_rest() {
    let db = test_db().await;
    let q = "aleksandrova";
    let mut entries = Vec::new();
    for i in 1..10 {
        let mut one: Vec<char> = q.chars().collect();
        one[i] = 'x';
        let mut two = one.clone();
        two[i + 2] = 'x';
        entries.push(public(Some(&one.iter().collect::<String>()), None));
        entries.push(public(Some(&two.iter().collect::<String>()), None));
        entries.push(public(None, Some(&format!("Александрова {i}"))));
    }
    entries.push(public(Some(q), None));
    db.search_index().bulk_load(&entries).await.unwrap();

    let whole = found(&db, q).await;
    let paged = paged(&db, q, 3).await;

    assert_eq!(whole.len(), 28);
    assert_eq!(paged, whole);
    let name_of = |id: &UserId| entries.iter().find(|e| e.user_id == *id).unwrap();
    let kinds: Vec<usize> = whole
        .iter()
        .map(|id| {
            let e = name_of(id);
            match e.username.as_deref() {
                Some(u) if u == q => 0,
                Some(u) if u.matches('x').count() == 1 => 1,
                Some(_) => 2,
                None => 3,
            }
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort_unstable();
    assert_eq!(kinds, sorted, "exact, one typo, two typos, transliterated");
}

#[tokio::test]
async fn a_cursor_of_another_query_or_a_made_up_one_is_refused() {
    let db = test_db().await;
    for i in 0..3 {
        index(&db, &[&public(Some(&format!("oleg{i}")), None)]).await;
    }
    let first = page(&db, "oleg", Viewer::Anonymous, 1, None).await;
    let cursor = first.next_cursor.unwrap();
    let search = |q: &'static str, cursor: &str| {
        let cursor = cursor.to_owned();
        let db = &db;
        async move {
            db.search_index()
                .search(&SearchQuery {
                    q,
                    viewer: Viewer::Anonymous,
                    limit: 1,
                    cursor: Some(&cursor),
                })
                .await
        }
    };

    assert!(
        search("OLEG", &cursor).await.is_ok(),
        "the same query, folded"
    );
    for (q, c) in [
        ("olga", cursor.as_str()),
        ("oleg", "not a cursor"),
        ("oleg", ""),
        ("oleg", "e30"),
    ] {
        assert!(
            matches!(search(q, c).await, Err(SearchError::BadCursor)),
            "{q} {c}"
        );
    }
}

#[tokio::test]
async fn an_updated_or_removed_profile_is_found_as_it_is_now() {
    let db = test_db().await;
    let mut e = public(Some("boris"), Some("Борис Годунов"));
    let other = public(Some("godunova"), None);
    index(&db, &[&e, &other]).await;
    assert_eq!(found(&db, "годунов").await, [e.user_id, other.user_id]);

    e.display_name = Some("Борис Шуйский".into());
    e.visibility = Visibility::Users;
    db.search_index().upsert(&e).await.unwrap();
    assert_eq!(found(&db, "годунов").await, [other.user_id]);
    assert!(found(&db, "шуйский").await.is_empty());
    let signed_in = page(&db, "шуйский", Viewer::User(other.user_id), 50, None).await;
    assert_eq!(signed_in.items[0].user_id, e.user_id);
    e.visibility = Visibility::Public;
    db.search_index().upsert(&e).await.unwrap();
    assert_eq!(found(&db, "shuiskii").await, [e.user_id]);

    // A typo still finds the other profile that shares a key, and nothing once it is gone.
    assert_eq!(found(&db, "godunovva").await, [other.user_id]);
    db.search_index().remove(other.user_id).await.unwrap();
    db.search_index().remove(e.user_id).await.unwrap();
    db.search_index().remove(e.user_id).await.unwrap();
    assert!(found(&db, "godunovva").await.is_empty());
    assert!(found(&db, "boris").await.is_empty());
    let left = db
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            db.connection().get_database_backend(),
            "SELECT COUNT(*) AS n FROM profile_search_vocab",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        left.try_get::<i64>("", "n").unwrap(),
        0,
        "no key outlives its profiles"
    );
}

#[tokio::test]
async fn one_profile_appears_once_whatever_it_matches_by() {
    let db = test_db().await;
    let e = public(Some("anna_anna"), Some("Анна Anna"));
    index(&db, &[&e]).await;

    assert_eq!(found(&db, "anna").await, [e.user_id]);
    assert_eq!(found(&db, "ана").await, [e.user_id]);
}

#[test]
fn a_query_needs_a_letter_or_digit_and_at_most_64_characters() {
    assert!(validate_query("  Пётр ").is_ok());
    assert!(validate_query(&"я".repeat(64)).is_ok());
    assert_eq!(validate_query("   ").unwrap_err().code, "invalid_length");
    assert_eq!(
        validate_query(&"a".repeat(65)).unwrap_err().code,
        "invalid_length"
    );
    let e = validate_query("__").unwrap_err();
    assert_eq!((e.field.as_str(), e.code.as_str()), ("q", "invalid_query"));
}

#[tokio::test]
async fn keys_written_after_the_typo_index_was_built_are_found_at_once() {
    let db = test_db().await;
    let first = public(Some("aleksandrov"), None);
    index(&db, &[&first]).await;
    // The first typo search builds the in-memory index.
    assert_eq!(found(&db, "aleksandrvo").await, [first.user_id]);
    assert_eq!(db.search_index().load_typo_index().await.unwrap(), 1);

    // Written on the pool, in a transaction, and through a clone of the store.
    let pooled = public(Some("konstantinov"), None);
    db.search_index().upsert(&pooled).await.unwrap();
    let in_tx = public(None, Some("Vladimirova"));
    let tx = db.begin().await.unwrap();
    tx.search_index().upsert(&in_tx).await.unwrap();
    tx.commit().await.unwrap();
    let rolled_back = public(Some("maksimilian"), None);
    let tx = db.begin().await.unwrap();
    tx.search_index().upsert(&rolled_back).await.unwrap();
    tx.rollback().await.unwrap();
    let clone = db.store.clone();
    let renamed = public(Some("mikhailovich"), None);
    clone.search_index().upsert(&renamed).await.unwrap();

    assert_eq!(found(&db, "konstantinv").await, [pooled.user_id]);
    assert_eq!(found(&db, "vladimriova").await, [in_tx.user_id]);
    assert!(found(&db, "maksimillian").await.is_empty());
    assert_eq!(found(&db, "mikhailovihc").await, [renamed.user_id]);

    // A bulk load has the index rebuilt before the next typo search.
    let bulk = public(Some("dostoevsky"), None);
    db.search_index()
        .bulk_load(std::slice::from_ref(&bulk))
        .await
        .unwrap();
    assert_eq!(found(&db, "dostoevksy").await, [bulk.user_id]);
    assert!(db.search_index().load_typo_index().await.unwrap() >= 5);
}

/// Two stores on one database, as two nodes: the test's PostgreSQL database, or a SQLite
/// file (an in-memory one is the store's own). The guard keeps the database.
async fn two_nodes(tag: &str) -> (crate::Store, crate::Store, Box<dyn std::any::Any>) {
    let db = test_db().await;
    if let Some(url) = db.pg_url() {
        let other = crate::Store::connect(&url).await.unwrap();
        return (db.store.clone(), other, Box::new(db));
    }
    let (store, dir) = file_store(tag).await;
    store.migrate().await.unwrap();
    let other = crate::Store::connect(&format!("sqlite://{}/db?mode=rwc", dir.display()))
        .await
        .unwrap();
    (store, other, Box::new(dir))
}

/// What `store` finds for `q`, asked until it finds something or 10 s passed (a catch-up or
/// a rebuild runs in the background of the search that starts it).
async fn found_soon(store: &crate::Store, q: &str) -> Vec<UserId> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let hits = anonymous_hits(store, q).await;
        if !hits.is_empty() || std::time::Instant::now() > deadline {
            return hits.into_iter().map(|h| h.user_id).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Another node's keys reach this node's typo tier at the first catch-up after a minute,
/// which reads what was added, not the whole vocabulary; the set is rebuilt only after an
/// hour (or when many keys came).
#[tokio::test]
async fn another_nodes_keys_reach_the_typo_tier_at_the_next_catch_up_without_a_rebuild() {
    let (node, other, _db) = two_nodes("catch-up").await;
    let first = public(Some("aleksandrov"), None);
    node.search_index().upsert(&first).await.unwrap();
    assert_eq!(found_soon(&node, "aleksandrvo").await, [first.user_id]);
    let typo = node.typo_index();
    assert_eq!(typo.builds(), 1);

    let elsewhere = public(Some("konstantinov"), None);
    other.search_index().upsert(&elsewhere).await.unwrap();
    // Exact and prefix matches read the database; the typo tier waits for the catch-up.
    assert_eq!(found_soon(&node, "konstantinov").await, [elsewhere.user_id]);
    assert!(anonymous_hits(&node, "konstantinvo").await.is_empty());

    typo.age(super::typo::REFRESH + std::time::Duration::from_secs(1));
    assert_eq!(found_soon(&node, "konstantinvo").await, [elsewhere.user_id]);
    assert_eq!(
        typo.builds(),
        1,
        "caught up without reading the whole vocabulary"
    );

    let passing = public(Some("maksimilian"), None);
    other.search_index().upsert(&passing).await.unwrap();
    typo.age(super::typo::REFRESH + std::time::Duration::from_secs(1));
    assert_eq!(found_soon(&node, "maksimillian").await, [passing.user_id]);
    // Taken away on the other node: its key lingers here until the rebuild, harmlessly.
    other.search_index().remove(passing.user_id).await.unwrap();
    assert!(anonymous_hits(&node, "maksimillian").await.is_empty());
    assert_eq!(typo.builds(), 1);

    typo.age(super::typo::REBUILD + std::time::Duration::from_secs(1));
    anonymous_hits(&node, "aleksandrvo").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while typo.builds() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(typo.builds(), 2, "rebuilt after an hour");
    assert_eq!(found_soon(&node, "konstantinvo").await, [elsewhere.user_id]);

    // More new keys than the list takes (a bulk load on the other node): the catch-up
    // leaves them to a rebuild, which the next typo search starts.
    let bulk: Vec<SearchEntry> = (0..super::typo::ADDED_MAX + 10)
        .map(|i| public(Some(&format!("bulk{i:05}")), None))
        .collect();
    other.search_index().bulk_load(&bulk).await.unwrap();
    typo.age(super::typo::REFRESH + std::time::Duration::from_secs(1));
    let target = &bulk[4000];
    let hits = found_soon(&node, "buk04000").await;
    assert!(hits.contains(&target.user_id), "{hits:?}");
    assert_eq!(typo.builds(), 3, "rebuilt for the bulk load");
}

#[tokio::test]
async fn on_a_sqlite_file_searches_read_beside_the_writer_and_see_what_it_committed() {
    let (store, dir) = file_store("readers").await;
    store.migrate().await.unwrap();
    let search = |q: &'static str| {
        let store = store.clone();
        async move {
            let hits = anonymous_hits(&store, q).await;
            hits.into_iter().map(|h| h.user_id).collect::<Vec<_>>()
        }
    };
    let first = public(Some("petrov"), None);
    store.search_index().upsert(&first).await.unwrap();
    assert_eq!(search("petrov").await, [first.user_id]);

    // The one writer connection is held by an open transaction: searches on the pool still
    // answer, from what was committed; the transaction's own search sees its write.
    let tx = store.begin().await.unwrap();
    let second = public(Some("petrova"), None);
    tx.search_index().upsert(&second).await.unwrap();
    assert_eq!(search("petrov").await, [first.user_id]);
    let q = SearchQuery {
        q: "petrov",
        viewer: Viewer::Anonymous,
        limit: 50,
        cursor: None,
    };
    let in_tx = tx.search_index().search(&q).await.unwrap();
    assert_eq!(in_tx.items.len(), 2);
    tx.commit().await.unwrap();
    assert_eq!(search("petrov").await, [first.user_id, second.user_id]);

    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn transliterations_follow_a_full_batch_of_prefix_matches() {
    let db = test_db().await;
    let mut entries = Vec::new();
    // Three prefix terms each: `petr07`, `petr number7`, `petr`.
    for i in 0..12 {
        entries.push(public(
            Some(&format!("petr{i:02}")),
            Some(&format!("Petr Number{i}")),
        ));
    }
    for i in 0..5 {
        entries.push(public(None, Some(&format!("Пётр {i}"))));
    }
    db.search_index().bulk_load(&entries).await.unwrap();

    let whole = found(&db, "petr").await;
    assert_eq!(whole.len(), 17);
    let translit: HashSet<_> = entries[12..].iter().map(|e| e.user_id).collect();
    assert!(whole[12..].iter().all(|id| translit.contains(id)));
    // A page of 13 reads a batch of 36 rows: all of the prefix tier's, which fills it, so
    // the transliteration tier is read after them, for the page's last hit.
    let p = page(&db, "petr", Viewer::Anonymous, 13, None).await;
    let ids: Vec<_> = p.items.iter().map(|h| h.user_id).collect();
    assert_eq!(ids, whole[..13]);
    assert_eq!(paged(&db, "petr", 4).await, whole);
}

/// `m0020` moves the profiles a SQLite file already holds into a table without rowid: the
/// same searches find the same profiles, with their names and avatars, before and after.
#[tokio::test]
async fn profiles_indexed_before_m0020_are_found_after_it() {
    let (store, dir) = file_store("m0020").await;
    store
        .migrate_through("m0019_audit_client_actor")
        .await
        .unwrap();
    let table_sql = || async {
        let row = store
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT sql FROM sqlite_master WHERE name = 'profile_search'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<String>("", "sql").unwrap()
    };
    assert!(!table_sql().await.contains("WITHOUT ROWID"));
    let shown = public(Some("petrov"), Some("Пётр Петров"));
    let hidden = entry(Some("petrova"), None, Visibility::Private);
    // NOTE: today's writes stamp the vocabulary's `added_at`, which `m0021` adds: the column
    // is there for them only, so that the file is as `m0019` left it, with these profiles.
    let vocab = |sql: &'static str| {
        let conn = store.connection();
        async move {
            conn.execute_unprepared(sql).await.unwrap();
        }
    };
    vocab("ALTER TABLE profile_search_vocab ADD COLUMN added_at BIGINT NOT NULL DEFAULT 0").await;
    for e in [&shown, &hidden] {
        store.search_index().upsert(e).await.unwrap();
    }
    vocab("ALTER TABLE profile_search_vocab DROP COLUMN added_at").await;
    let search = |q: &'static str| anonymous_hits(&store, q);
    let before = (search("petrov").await, search("петр").await);

    assert_eq!(store.migrate().await.unwrap(), 2);
    assert!(table_sql().await.contains("WITHOUT ROWID"));
    let after = (search("petrov").await, search("петр").await);
    assert_eq!(after, before);
    assert_eq!(after.0.len(), 1, "the private profile stays hidden");
    assert_eq!(after.0[0].user_id, shown.user_id);
    assert_eq!(after.0[0].display_name.as_deref(), Some("Пётр Петров"));
    assert_eq!(
        after.0[0].avatar.as_deref(),
        Some("https://cdn.example/petrov.webp")
    );
    // Writes after it go to the new table.
    let later = public(Some("petrovsky"), None);
    store.search_index().upsert(&later).await.unwrap();
    store.search_index().remove(shown.user_id).await.unwrap();
    let ids: Vec<UserId> = search("petrov").await.iter().map(|h| h.user_id).collect();
    assert_eq!(ids, [later.user_id]);

    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A search's first statement reads the typo tier's next chunk of keys too; those rows count
/// only when the first chunk's rows all came. Here two profiles hold twelve one-edit keys
/// each, all before a third profile's one-edit key: more rows than a page of 2 reads at once
/// (14), yet only two profiles. Pages of every size come to the third before two edits.
#[tokio::test]
async fn typo_rows_past_a_full_batch_of_one_edit_come_in_rank_order() {
    let db = test_db().await;
    let q = "aleksandrova";
    let words = |from: char| -> String {
        (from..='m')
            .map(|c| format!("Aleksandrov{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let a1 = public(Some("aleksandrovb"), Some(&words('c')));
    let a2 = public(None, Some(&words('b')));
    let later = public(Some("aleksandrovz"), None);
    let two = public(Some("aleksandrxvz"), None);
    let all = [a1.clone(), a2.clone(), later.clone(), two.clone()];
    db.search_index().bulk_load(&all).await.unwrap();

    let whole = found(&db, q).await;
    assert_eq!(whole.len(), 4);
    let firsts: HashSet<UserId> = whole[..2].iter().copied().collect();
    assert_eq!(firsts, HashSet::from([a1.user_id, a2.user_id]));
    assert_eq!(whole[2..], [later.user_id, two.user_id]);
    for limit in [1, 2, 3] {
        assert_eq!(paged(&db, q, limit).await, whole, "pages of {limit}");
    }
}

#[tokio::test]
async fn a_second_chunk_of_typo_keys_full_of_profiles_found_twice_pages_on() {
    let db = test_db().await;
    let q = "aleksandrova";
    // One edit: the first chunk of keys, one profile. Two edits: the second chunk, where 15
    // profiles come twice (by two words) before 10 more, so its first rows in the first
    // statement hold fewer profiles than a page needs.
    let first = public(Some("aleksandrovb"), None);
    let twice: Vec<SearchEntry> = (0..15)
        .map(|i| {
            public(
                Some(&format!("twice{i}")),
                Some("Aleksandrxvy Aleksandrxvz"),
            )
        })
        .collect();
    let after: Vec<SearchEntry> = (0..10)
        .map(|i| public(Some(&format!("after{i}")), Some("Aleksandrzvz")))
        .collect();
    let mut all = vec![first.clone()];
    all.extend(twice.iter().cloned());
    all.extend(after.iter().cloned());
    db.search_index().bulk_load(&all).await.unwrap();

    let whole = found(&db, q).await;
    assert_eq!(whole.len(), 26);
    assert_eq!(whole[0], first.user_id);
    let by_id = |entries: &[SearchEntry]| {
        let mut ids: Vec<UserId> = entries.iter().map(|e| e.user_id).collect();
        ids.sort_by_key(|id| id.0);
        ids
    };
    assert_eq!(whole[1..16], by_id(&twice)[..]);
    assert_eq!(whole[16..], by_id(&after)[..]);
    for limit in [20, 7] {
        assert_eq!(paged(&db, q, limit).await, whole, "pages of {limit}");
    }
}

#[tokio::test]
async fn on_postgresql_searches_plan_once_and_join_without_memoize() {
    let db = test_db().await;
    if !db.is_postgres() {
        return;
    }
    let setting = |conn: &sea_orm::DatabaseConnection, name: &str| {
        let sql = format!("SELECT current_setting('{name}')");
        let conn = conn.clone();
        async move {
            let row = conn
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    sql,
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<String>(0).unwrap()
        }
    };
    let search = db.search_index().2.unwrap().clone();
    assert_eq!(
        setting(&search, "plan_cache_mode").await,
        "force_generic_plan"
    );
    assert_eq!(setting(&search, "enable_memoize").await, "off");
    // The store's other connections keep the server's defaults.
    assert_eq!(setting(db.connection(), "enable_memoize").await, "on");
    assert_eq!(setting(db.connection(), "plan_cache_mode").await, "auto");
}
