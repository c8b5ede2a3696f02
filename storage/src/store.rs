//! The store (connection, migrations, readiness) and its transactions, and the one place
//! that hands out each context's repository over either of them: `store.users()` reads and
//! writes on the pool, `tx.users()` inside a unit of work, with the same code.
//!
//! Refuses: queries of its own (each lives in its context's repository).

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::migrations::Migrator;
use crate::search::TypoIndex;
use crate::{
    Audit, LoginFailures, Outbox, Profiles, Result, Sessions, SigningKeys, StorageError, Users,
};

/// Key of the PostgreSQL advisory lock taken while migrating.
const MIGRATION_LOCK: i64 = 0x6b65_7977_6172_6401;

/// Read-only connections for reads beside the writer on a SQLite file (see `Store::connect`).
const SQLITE_READERS: u32 = 4;

/// Bytes of the SQLite file each search connection maps (SQLite caps it at its own limit).
const SQLITE_SEARCH_MMAP: u64 = 2 << 30;

/// Connections of a node's pool for profile searches on PostgreSQL (see `Store::connect`).
/// NOTE: few, so that searches beyond them wait their turn in the pool (first come, first
/// served) rather than share the server's cores among more backends at once: on 2 cores,
/// eight searches at a time through 4 connections had half the p99 of 8 connections at the
/// same throughput (docs/PERFORMANCE.md, "Fewer search connections").
const POSTGRES_SEARCHERS: u32 = 4;

/// Connections of a node's pool for refreshes' group rotations on PostgreSQL (see
/// `Store::rotations`): the sessions context keeps a group in flight on each.
/// NOTE: the main pool hands its idle connections out in turn, so each group went to another
/// of up to 16 server processes, most of them cold; two kept busy measured 3 to 9% more
/// rotations a second (docs/PERFORMANCE.md, "Refresh on PostgreSQL, seventh step").
const POSTGRES_ROTATORS: u32 = 2;

/// SQLite's soft heap limit, for the whole process: past it SQLite reuses its page caches'
/// buffers instead of allocating more. Nine connections' default caches (2 MiB each) and
/// their statements stay under it in the soak (docs/PERFORMANCE.md, "Soak").
const SQLITE_SOFT_HEAP: u64 = 16 << 20;

/// A pooled connection to the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Where profile searches outside a transaction read: on a SQLite file a pool of
    /// read-only connections, on PostgreSQL a pool of its own ([`postgres_searchers`]),
    /// else (in-memory SQLite) `db` itself.
    search_reads: DatabaseConnection,
    /// Where refreshes' group rotations write: on PostgreSQL a pool of its own
    /// ([`POSTGRES_ROTATORS`] connections), else `db` itself.
    rotations: DatabaseConnection,
    // NOTE: the profile search's in-memory typo index lives with the pool it is built from,
    // so that every clone of the store and every transaction shares one (see `search::typo`).
    typo: TypoIndex,
    reads: Reads,
}

/// The repositories over connections that only read and may run beside the writer: on a
/// SQLite file, the read-only pool (WAL readers see every write committed before their
/// statement starts, so a read after a commit sees it); elsewhere the pool itself. For hot
/// reads outside a unit of work (a session's liveness, a profile, a user's grants), which on
/// the one SQLite connection would queue behind every write.
#[derive(Clone, Debug)]
pub struct Reads {
    db: DatabaseConnection,
    typo: TypoIndex,
}

impl Reads {
    fn search_reader(&self) -> Option<&DatabaseConnection> {
        None
    }
}

/// A pool of [`SQLITE_READERS`] read-only connections to a SQLite file, mapping up to `mmap`
/// bytes of it each.
/// Never pinged before use (see `Store::connect`).
async fn read_only(url: &str, mmap: Option<u64>) -> Result<DatabaseConnection> {
    let mut ro = ConnectOptions::new(url.to_owned());
    ro.max_connections(SQLITE_READERS)
        .min_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |o| {
            let o = o.read_only(true);
            match mmap {
                Some(bytes) => o.pragma("mmap_size", bytes.to_string()),
                None => o,
            }
        });
    Ok(Database::connect(ro).await?)
}

/// A pool of `max` connections to PostgreSQL, pinged before use only after a second idle.
fn postgres_pool(url: &str, max: u32) -> ConnectOptions {
    let mut o = ConnectOptions::new(url.to_owned());
    o.max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        .sqlx_logging(false);
    o
}

/// A pool of [`POSTGRES_SEARCHERS`] connections for profile searches on PostgreSQL, whose
/// statements are planned once per connection (a generic plan) and join without Memoize, on
/// servers that have those settings (12 and 14 on; `version` is `server_version_num`).
async fn postgres_searchers(url: &str, version: u32) -> Result<DatabaseConnection> {
    const GENERIC: &str = "SET plan_cache_mode = force_generic_plan";
    const NO_MEMOIZE: &str = "SET enable_memoize = off";
    let settings: &'static [&'static str] = match version {
        140_000.. => &[GENERIC, NO_MEMOIZE],
        120_000.. => &[GENERIC],
        _ => &[],
    };
    let mut o = postgres_pool(url, POSTGRES_SEARCHERS);
    // NOTE: set on each new connection rather than sent as the `options` startup
    // parameter, which connection poolers such as PgBouncer refuse by default.
    o.map_sqlx_postgres_pool_opts(move |p| {
        p.after_connect(move |conn, _| {
            Box::pin(async move {
                for sql in settings {
                    sea_orm::sqlx::Executor::execute(&mut *conn, *sql).await?;
                }
                Ok(())
            })
        })
    });
    Ok(Database::connect(o).await?)
}

/// The first column of the first row `sql` returns, if any.
async fn first_value<T: sea_orm::TryGetable>(
    db: &DatabaseConnection,
    sql: &str,
) -> Result<Option<T>> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(row.map(|r| r.try_get_by_index::<T>(0)).transpose()?)
}

impl Store {
    /// The profile search's in-memory typo index.
    #[cfg(test)]
    pub(crate) fn typo_index(&self) -> &TypoIndex {
        &self.typo
    }

    /// Connects to `sqlite://…` or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self> {
        let sqlite = url.starts_with("sqlite:");
        let mut opts = ConnectOptions::new(url.to_owned());
        // NOTE: SQLite takes one writer at a time and a deferred transaction that upgrades to a
        // write fails with SQLITE_BUSY instead of waiting; one pooled connection serialises
        // statements (each is microseconds) and removes that failure mode.
        opts.max_connections(if sqlite { 1 } else { 16 })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            // NOTE: a pooled connection is pinged before each use by default: one more
            // hand-off to sqlx's SQLite thread, or round trip to PostgreSQL, per query.
            .test_before_acquire(false)
            .sqlx_logging(false)
            // NOTE: an option, not a PRAGMA run once: a connection the pool opens again (after
            // an error) must not fall back to an fsync per commit.
            .map_sqlx_sqlite_opts(|o| {
                o.synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .pragma("soft_heap_limit", SQLITE_SOFT_HEAP.to_string())
            });
        if sqlite {
            // NOTE: sqlx replaces a connection after 30 minutes, and one idle for 10; on a
            // file that buys nothing and costs memory: the new connection's thread takes new
            // heap (glibc serves SQLite from per-thread arenas) while the old one's stays
            // with the allocator, about 7 MiB at each renewal in the soak.
            opts.max_lifetime(None).idle_timeout(None);
        } else {
            // NOTE: on PostgreSQL the ping finds the connections a server restart broke, but
            // before every query it is one more round trip each; a connection in steady use
            // is tested by its queries (one that fails is closed when it goes back), so only
            // one that sat idle is pinged first.
            opts.test_before_acquire_if_idle_for(Duration::from_secs(1));
        }
        let db = Database::connect(opts).await?;
        let mut search_reads = db.clone();
        let mut reads = db.clone();
        let mut rotations = db.clone();
        if sqlite {
            let mode: Option<String> = first_value(&db, "PRAGMA journal_mode=WAL").await?;
            // NOTE: searches are reads that may take a millisecond each; on the one pooled
            // connection concurrent searches queue behind each other and behind writes. WAL
            // lets readers on other connections run beside the writer, each on a committed
            // snapshot. An in-memory database (tests) has no WAL and no other connection
            // sees it: there searches stay on the writer.
            if mode.is_some_and(|m| m.eq_ignore_ascii_case("wal")) {
                // NOTE: each connection's page cache is 2 MiB by default, so at a million
                // profiles most B-tree pages a search touches came by a read(2) and a copy;
                // mapped, they are read in place from the OS page cache. Other reads touch
                // few pages each and keep the default: a mapped page counts in the
                // process's RSS once per connection that touched it.
                search_reads = read_only(url, Some(SQLITE_SEARCH_MMAP)).await?;
                reads = read_only(url, None).await?;
            }
        } else {
            // NOTE: a search's statement is a union of up to five tiers, each a join cut by
            // a limit. PostgreSQL planned it anew at each execution, and under the joins of
            // ranges it judged large it put a Memoize node, whose hash table is sized for
            // the rows of the range without the limit and set up at every execution. At a
            // million profiles those two were most of the server's CPU per search
            // (docs/PERFORMANCE.md, "Profile search on PostgreSQL"). Each tier's best plan
            // is the same whatever the values (an ordered index range or key list, a
            // limit, a join by primary key), so these connections plan a statement once
            // and join without Memoize.
            let version: Option<i32> =
                first_value(&db, "SELECT current_setting('server_version_num')::int4").await?;
            let version = version.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
            search_reads = postgres_searchers(url, version).await?;
            rotations = Database::connect(postgres_pool(url, POSTGRES_ROTATORS)).await?;
        }
        let typo = TypoIndex::new(search_reads.clone());
        Ok(Self {
            reads: Reads {
                db: reads,
                typo: typo.clone(),
            },
            typo,
            search_reads,
            rotations,
            db,
        })
    }

    /// Applies pending migrations; returns how many ran. On PostgreSQL an advisory lock held
    /// for the transaction serialises nodes and workers that start at the same time.
    pub async fn migrate(&self) -> Result<usize> {
        self.migrate_until(None).await
    }

    /// Applies the pending migrations up to and including the one named `last` (none when it
    /// is not pending); returns how many ran. For rehearsing an upgrade from an older schema.
    pub async fn migrate_through(&self, last: &str) -> Result<usize> {
        self.migrate_until(Some(last)).await
    }

    async fn migrate_until(&self, last: Option<&str>) -> Result<usize> {
        /// How many pending migrations to run: all, or through the one named `last`.
        fn steps(pending: &[sea_orm_migration::Migration], last: Option<&str>) -> u32 {
            let n = match last {
                None => pending.len(),
                Some(name) => pending
                    .iter()
                    .position(|m| m.name() == name)
                    .map_or(0, |i| i + 1),
            };
            u32::try_from(n).unwrap_or(u32::MAX)
        }
        if self.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let tx = self.db.begin().await?;
            tx.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await?;
            let n = steps(&Migrator::get_pending_migrations(&tx).await?, last);
            if n > 0 {
                Migrator::up(&tx, Some(n)).await?;
            }
            tx.commit().await?;
            return Ok(n as usize);
        }
        let n = steps(&Migrator::get_pending_migrations(&self.db).await?, last);
        if n > 0 {
            Migrator::up(&self.db, Some(n)).await?;
        }
        Ok(n as usize)
    }

    /// The sessions repository on the connections kept for refreshes' group rotations
    /// ([`POSTGRES_ROTATORS`] of their own on PostgreSQL).
    pub fn rotations(&self) -> crate::Sessions<'_, DatabaseConnection> {
        crate::Sessions(&self.rotations)
    }

    /// How many connections [`Store::rotations`] has: [`POSTGRES_ROTATORS`] on PostgreSQL,
    /// SQLite's one writer otherwise.
    pub fn rotation_connections(&self) -> usize {
        if self.is_postgres() {
            POSTGRES_ROTATORS as usize
        } else {
            1
        }
    }

    /// PostgreSQL, where several nodes may share the outbox.
    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres
    }

    /// The last migration applied to this database (`None` before the first), without
    /// applying any: what a backup records as its schema level.
    pub async fn migration_level(&self) -> Result<Option<String>> {
        let applied = Migrator::get_applied_migrations(&self.db).await?;
        Ok(applied.last().map(|m| m.name().to_owned()))
    }

    /// SQLite: writes a consistent copy of the whole database into the file at `path` (which
    /// must not exist) with `VACUUM INTO`, while other connections and processes go on writing:
    /// the copy is the database as of one moment. Refused on PostgreSQL (pg_dump's job).
    pub async fn vacuum_into(&self, path: &str) -> Result<()> {
        if self.is_postgres() {
            return Err(StorageError::Backend(sea_orm::DbErr::Custom(
                "VACUUM INTO is SQLite's; back PostgreSQL up with pg_dump".to_owned(),
            )));
        }
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "VACUUM INTO ?",
                [path.into()],
            ))
            .await?;
        Ok(())
    }

    /// Fails when the database does not answer (for /readyz).
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(StorageError::from)
    }

    /// The pool itself, for tests that write rows no repository would (a stored value
    /// that no longer parses, a raw statement the schema must refuse).
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// See [`Reads`].
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// Where `search_index().search` reads, when not on `db`.
    fn search_reader(&self) -> Option<&DatabaseConnection> {
        Some(&self.search_reads)
    }

    /// Starts a unit of work. Dropping the `Tx` without `commit` rolls it back.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            tx: self.db.begin().await?,
            typo: self.typo.clone(),
        })
    }
}

/// The names of every migration this build knows, oldest first: a backup whose schema level
/// is not among them was made by a newer Keyward.
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// The file a `sqlite:` database URL names (`None` for another scheme or an in-memory
/// database), e.g. `sqlite://./data/keyward.db?mode=rwc` → `./data/keyward.db`.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let opts = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(opts.get_filename().to_path_buf())
}

/// One transaction. Everything written through it, outbox messages included, commits or
/// rolls back together.
pub struct Tx {
    tx: DatabaseTransaction,
    typo: TypoIndex,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(StorageError::from)
    }

    /// A search inside a unit of work reads through it, and so sees what it wrote.
    fn search_reader(&self) -> Option<&DatabaseConnection> {
        None
    }

    /// Ends the unit of work without writing anything, before the caller goes on.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await.map_err(StorageError::from)
    }
}

/// The repositories, over the pool (`Store`) or one transaction (`Tx`): one accessor each,
/// written once for both.
macro_rules! repositories {
    ($owner:ty, $conn:ty, $field:ident) => {
        impl $owner {
            /// Users, their roles and one-time email tokens (the accounts context).
            pub fn users(&self) -> Users<'_, $conn> {
                Users(&self.$field)
            }

            /// Profiles, settings, username reservations, pending deletions.
            pub fn profiles(&self) -> Profiles<'_, $conn> {
                Profiles(&self.$field)
            }

            /// Sessions and their refresh tokens.
            pub fn sessions(&self) -> Sessions<'_, $conn> {
                Sessions(&self.$field)
            }

            /// The access-token signing keys.
            pub fn signing_keys(&self) -> SigningKeys<'_, $conn> {
                SigningKeys(&self.$field)
            }

            /// The outbox (and the consumers' inbox).
            pub fn outbox(&self) -> Outbox<'_, $conn> {
                Outbox(&self.$field)
            }

            /// The audit log.
            pub fn audit(&self) -> Audit<'_, $conn> {
                Audit(&self.$field)
            }

            /// Failed logins, for the throttle.
            pub fn login_failures(&self) -> LoginFailures<'_, $conn> {
                LoginFailures(&self.$field)
            }

            /// Roles, grants and service clients (the access context).
            pub fn access(&self) -> crate::Access<'_, $conn> {
                crate::Access(&self.$field)
            }

            /// Templates, the delivery log, inboxes and preferences (the notify context).
            pub fn notices(&self) -> crate::Notices<'_, $conn> {
                crate::Notices(&self.$field)
            }

            /// Identities at social login providers, web login flows, one-time codes.
            pub fn federation(&self) -> crate::Federation<'_, $conn> {
                crate::Federation(&self.$field)
            }

            /// Second factors, recovery codes and login challenges (the mfa context).
            pub fn mfa(&self) -> crate::Mfa<'_, $conn> {
                crate::Mfa(&self.$field)
            }

            /// The profile search index.
            pub fn search_index(&self) -> crate::search::ProfileSearch<'_, $conn> {
                crate::search::ProfileSearch(&self.$field, &self.typo, self.search_reader())
            }
        }
    };
}

repositories!(Store, DatabaseConnection, db);
repositories!(Tx, DatabaseTransaction, tx);
repositories!(Reads, DatabaseConnection, db);

// NOTE: not in `repositories!`: `Reads` may be a read-only pool, and retention only deletes.
impl Store {
    /// Batched deletes of rows past their retention, and the purger's lock.
    pub fn retention(&self) -> crate::Retention<'_, DatabaseConnection> {
        crate::Retention(&self.db)
    }
}

impl Tx {
    /// Retention inside one transaction (the purger's lock, the audit log's purge).
    pub fn retention(&self) -> crate::Retention<'_, DatabaseTransaction> {
        crate::Retention(&self.tx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use keyward_messages::events::{DomainEvent, Envelope, Outgoing};
    use keyward_messages::{Email, UserId};
    use uuid::Uuid;

    use crate::testing::{at, test_db};
    use crate::NewUser;

    #[tokio::test]
    async fn a_migrated_database_answers_and_has_nothing_left_to_migrate() {
        let db = test_db().await;
        db.ping().await.unwrap();
        assert_eq!(db.migrate().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_migration_level_is_the_last_migration_this_build_knows() {
        let db = test_db().await;
        let names = crate::migration_names();
        assert_eq!(names.first().map(String::as_str), Some("m0001_initial"));
        assert_eq!(db.migration_level().await.unwrap(), names.last().cloned());
    }

    #[test]
    fn a_sqlite_url_names_its_file_and_other_urls_none() {
        let file = |u| crate::sqlite_file(u).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite://./data/keyward.db?mode=rwc").as_deref(),
            Some("./data/keyward.db")
        );
        assert_eq!(
            file("sqlite:/var/lib/k.db").as_deref(),
            Some("/var/lib/k.db")
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u:p@db/keyward"), None);
    }

    /// A copy taken from a database file that another connection goes on writing is one
    /// consistent moment of it: it opens, migrated, with every row committed before it.
    #[tokio::test]
    async fn vacuum_into_copies_a_live_sqlite_database() {
        let dir = std::env::temp_dir().join(format!("kw-vacuum-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("copy.db");
        let copy = copy.to_str().unwrap();
        let pg = test_db().await;
        if pg.is_postgres() {
            assert!(pg.vacuum_into(copy).await.is_err(), "pg_dump's job");
        }
        let url = format!("sqlite://{}/live.db?mode=rwc", dir.display());
        let db = crate::Store::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        for t in 0..3 {
            db.login_failures()
                .record("ip:192.0.2.7", at(t))
                .await
                .unwrap();
        }

        db.vacuum_into(copy).await.unwrap();
        db.login_failures()
            .record("ip:192.0.2.7", at(9))
            .await
            .unwrap();

        let back = crate::Store::connect(&format!("sqlite://{copy}"))
            .await
            .unwrap();
        assert_eq!(back.migrate().await.unwrap(), 0);
        let n = back.login_failures().since("ip:192.0.2.7", at(-1)).await;
        assert_eq!(n.unwrap().0, 3);
        assert!(db.vacuum_into(copy).await.is_err(), "never over a file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// WAL with synchronous=NORMAL fsyncs at checkpoints, not at every commit, and SQLite's
    /// heap has its soft limit: on every connection the writer's pool opens, not only its
    /// first.
    #[tokio::test]
    async fn a_replaced_sqlite_writer_connection_keeps_synchronous_normal_and_the_heap_limit() {
        use sea_orm::ConnectionTrait;
        let dir = std::env::temp_dir().join(format!("kw-sync-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/k.db?mode=rwc", dir.display());
        let db = crate::Store::connect(&url).await.unwrap();
        let pragma = |name: &'static str| {
            let db = db.db.clone();
            async move {
                let row = db
                    .query_one_raw(sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Sqlite,
                        format!("PRAGMA {name}"),
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get_by_index::<i64>(0).unwrap()
            }
        };
        let limit = i64::try_from(super::SQLITE_SOFT_HEAP).unwrap();
        assert_eq!(pragma("synchronous").await, 1, "NORMAL");
        assert_eq!(pragma("soft_heap_limit").await, limit);
        // The pool's one connection leaves it, as after an error.
        let first = db.db.get_sqlite_connection_pool().acquire().await.unwrap();
        drop(first.detach());
        assert_eq!(
            pragma("synchronous").await,
            1,
            "NORMAL on the new connection"
        );
        assert_eq!(pragma("soft_heap_limit").await, limit);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn one_transaction_spans_every_repository() {
        let db = test_db().await;
        let id = UserId::new();
        let write = |tx: crate::Tx| async move {
            let email = Email::parse("email", "kate@example.com").unwrap();
            tx.users()
                .insert(NewUser {
                    id,
                    email,
                    username: None,
                    password_hash: "$argon2id$h".into(),
                    email_verified: true,
                    locale: "en".into(),
                    now: at(0),
                })
                .await
                .unwrap();
            let ev = DomainEvent::UserUnblocked {
                user_id: id,
                by: None,
                by_client: None,
            };
            let env = Envelope::new(Uuid::now_v7(), at(0), None, &Outgoing::Event(ev));
            tx.outbox().enqueue(&env).await.unwrap();
            tx.login_failures()
                .record("ip:192.0.2.7", at(0))
                .await
                .unwrap();
            tx
        };

        write(db.begin().await.unwrap())
            .await
            .rollback()
            .await
            .unwrap();
        assert!(db.users().by_id(id).await.unwrap().is_none());
        assert_eq!(db.outbox().backlog().await.unwrap(), 0);
        let failures = db.login_failures().since("ip:192.0.2.7", at(-1)).await;
        assert_eq!(failures.unwrap().0, 0);

        write(db.begin().await.unwrap())
            .await
            .commit()
            .await
            .unwrap();
        assert!(db.users().by_id(id).await.unwrap().is_some());
        assert_eq!(db.outbox().backlog().await.unwrap(), 1);
        let failures = db.login_failures().since("ip:192.0.2.7", at(-1)).await;
        assert_eq!(failures.unwrap().0, 1);
    }
}
