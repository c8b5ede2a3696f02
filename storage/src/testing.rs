//! The repositories' unit tests run on a fresh, migrated database each: in-memory SQLite, or,
//! when `KEYWARD_TEST_DATABASE_URL` names a PostgreSQL server (an admin URL, as
//! `scripts/services.sh` exports), a database of its own there, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::Store;

/// A migrated store for one test; its PostgreSQL database (if any) goes when it is dropped.
pub(crate) struct TestDb {
    pub store: Store,
    url: String,
    pg: Option<(String, String)>,
}

impl std::ops::Deref for TestDb {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// A fixed instant `secs` seconds after an arbitrary epoch, in whole seconds, so that it reads
/// back equal from either backend (PostgreSQL keeps microseconds).
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

pub(crate) async fn test_db() -> TestDb {
    test_db_through(None).await
}

/// A fresh database migrated through the migration named `last` (all when `None`).
pub(crate) async fn test_db_through(last: Option<&str>) -> TestDb {
    let admin = std::env::var("KEYWARD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (url, pg) = match admin {
        None => ("sqlite::memory:".to_owned(), None),
        Some(admin_url) => {
            let name = format!("kw_unit_{}", uuid::Uuid::new_v4().simple());
            let db = Database::connect(admin_url.clone()).await.unwrap();
            db.execute_raw(Statement::from_string(
                db.get_database_backend(),
                format!("CREATE DATABASE {name}"),
            ))
            .await
            .unwrap();
            let _ = db.close().await;
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            (format!("{base}/{name}"), Some((admin_url, name)))
        }
    };
    let store = Store::connect(&url).await.unwrap();
    match last {
        None => store.migrate().await.unwrap(),
        Some(name) => store.migrate_through(name).await.unwrap(),
    };
    TestDb { store, url, pg }
}

impl TestDb {
    /// The URL of the test's PostgreSQL database, if it has one (another store may connect).
    pub(crate) fn pg_url(&self) -> Option<String> {
        self.pg.as_ref().map(|_| self.url.clone())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((url, name)) = self.pg.take() else {
            return;
        };
        // NOTE: on a thread of its own: the test's runtime may be shutting down, and DROP
        // DATABASE (FORCE) ends the store's own connections.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(db) = Database::connect(url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = db
                        .execute_raw(Statement::from_string(db.get_database_backend(), sql))
                        .await;
                    let _ = db.close().await;
                }
            })
        })
        .join();
    }
}
