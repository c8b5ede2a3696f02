//! `m0006_profile_search`: the search index's tables (see the module doc of `search`).
//!
//! Written as backend SQL, not with the schema builder: SQLite needs an FTS5 virtual table
//! and a table without rowid, PostgreSQL the pg_trgm extension, a GIN index and byte-wise
//! ("C") collation on the keys, so that a prefix is a range of the B-tree on both.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

pub(crate) struct M0006ProfileSearch;

impl MigrationName for M0006ProfileSearch {
    fn name(&self) -> &str {
        "m0006_profile_search"
    }
}

const SQLITE: &[&str] = &[
    "CREATE TABLE profile_search (
        user_id BLOB NOT NULL PRIMARY KEY,
        username TEXT,
        display_name TEXT,
        avatar TEXT,
        visibility TEXT NOT NULL
    )",
    "CREATE TABLE profile_search_terms (
        term TEXT NOT NULL,
        user_id BLOB NOT NULL,
        flags INTEGER NOT NULL,
        vis INTEGER NOT NULL,
        PRIMARY KEY (term, user_id)
    ) WITHOUT ROWID",
    "CREATE INDEX profile_search_terms_user_idx ON profile_search_terms (user_id)",
    "CREATE TABLE profile_search_vocab (
        id INTEGER PRIMARY KEY,
        term TEXT NOT NULL UNIQUE,
        rterm TEXT NOT NULL,
        len INTEGER NOT NULL,
        refs INTEGER NOT NULL
    )",
    "CREATE INDEX profile_search_vocab_len_term_idx ON profile_search_vocab (len, term)",
    "CREATE INDEX profile_search_vocab_len_rterm_idx ON profile_search_vocab (len, rterm, term)",
    "CREATE VIRTUAL TABLE profile_search_trgm USING fts5(
        term, content='profile_search_vocab', content_rowid='id', tokenize='trigram'
    )",
    "CREATE TRIGGER profile_search_vocab_ai AFTER INSERT ON profile_search_vocab BEGIN
        INSERT INTO profile_search_trgm (rowid, term) VALUES (new.id, new.term);
    END",
    "CREATE TRIGGER profile_search_vocab_ad AFTER DELETE ON profile_search_vocab BEGIN
        INSERT INTO profile_search_trgm (profile_search_trgm, rowid, term)
        VALUES ('delete', old.id, old.term);
    END",
];

const POSTGRES: &[&str] = &[
    // NOTE: pg_trgm is a trusted extension (PostgreSQL 13+): a role that may create objects
    // in the database may create it; otherwise an operator runs this line once.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE TABLE profile_search (
        user_id UUID NOT NULL PRIMARY KEY,
        username TEXT,
        display_name TEXT,
        avatar TEXT,
        visibility TEXT NOT NULL
    )",
    "CREATE TABLE profile_search_terms (
        term TEXT COLLATE \"C\" NOT NULL,
        user_id UUID NOT NULL,
        flags SMALLINT NOT NULL,
        vis SMALLINT NOT NULL,
        PRIMARY KEY (term, user_id)
    )",
    "CREATE INDEX profile_search_terms_user_idx ON profile_search_terms (user_id)",
    "CREATE TABLE profile_search_vocab (
        term TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,
        rterm TEXT COLLATE \"C\" NOT NULL,
        len INTEGER NOT NULL,
        refs INTEGER NOT NULL
    )",
    "CREATE INDEX profile_search_vocab_len_term_idx ON profile_search_vocab (len, term)",
    "CREATE INDEX profile_search_vocab_len_rterm_idx ON profile_search_vocab (len, rterm)
        INCLUDE (term)",
    "CREATE INDEX profile_search_vocab_trgm_idx ON profile_search_vocab
        USING gin (term gin_trgm_ops)",
];

#[async_trait::async_trait]
impl MigrationTrait for M0006ProfileSearch {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let statements = match m.get_database_backend() {
            DatabaseBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        execute_all(m, statements).await
    }
}

/// `m0008_profile_search_tier_indexes`: one B-tree per kind of term, so that each tier reads
/// only the rows it can match (see the module doc of `search`), and the vocabulary's indexes
/// that nothing reads any more go.
///
/// A tier's range of `profile_search_terms` holds the rows of every kind: the Latin range of
/// a short prefix holds thousands of skeletons of Cyrillic names before its first Latin key,
/// and one word (`лев`) thousands of rows that are not a whole field. Read through the
/// primary key, a tier filtered them out one by one (on PostgreSQL each a heap fetch, tens of
/// milliseconds). A partial index per flag holds only the rows that flag marks, in the same
/// order, with the visibility beside them, so that a page is its first rows.
pub(crate) struct M0008ProfileSearchTierIndexes;

impl MigrationName for M0008ProfileSearchTierIndexes {
    fn name(&self) -> &str {
        "m0008_profile_search_tier_indexes"
    }
}

// NOTE: a query uses a partial index only when its WHERE holds the index's condition as
// written: `repo.rs` writes `(p.flags & <flag>) <> 0` with the flags of `key.rs`
// (KEY = 1, WHOLE = 2, SKEL = 4), literally. SQLite takes a partial index over the table's
// own B-tree only when it covers every column the query names, `flags` included.
const SQLITE_0007: &[&str] = &[
    "CREATE INDEX profile_search_terms_whole_idx ON profile_search_terms
        (term, user_id, vis, flags) WHERE (flags & 2) <> 0",
    "CREATE INDEX profile_search_terms_key_idx ON profile_search_terms
        (term, user_id, vis, flags) WHERE (flags & 1) <> 0",
    "CREATE INDEX profile_search_terms_skel_idx ON profile_search_terms
        (term, user_id, vis, flags) WHERE (flags & 4) <> 0",
    "DROP TRIGGER profile_search_vocab_ai",
    "DROP TRIGGER profile_search_vocab_ad",
    "DROP TABLE profile_search_trgm",
    "DROP INDEX profile_search_vocab_len_term_idx",
    "DROP INDEX profile_search_vocab_len_rterm_idx",
];

const POSTGRES_0007: &[&str] = &[
    "CREATE INDEX profile_search_terms_whole_idx ON profile_search_terms (term, user_id)
        INCLUDE (vis) WHERE (flags & 2) <> 0",
    "CREATE INDEX profile_search_terms_key_idx ON profile_search_terms (term, user_id)
        INCLUDE (vis) WHERE (flags & 1) <> 0",
    "CREATE INDEX profile_search_terms_skel_idx ON profile_search_terms (term, user_id)
        INCLUDE (vis) WHERE (flags & 4) <> 0",
    // The extension stays: dropping it could take objects of others with it.
    "DROP INDEX profile_search_vocab_trgm_idx",
    "DROP INDEX profile_search_vocab_len_term_idx",
    "DROP INDEX profile_search_vocab_len_rterm_idx",
];

#[async_trait::async_trait]
impl MigrationTrait for M0008ProfileSearchTierIndexes {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let statements = match m.get_database_backend() {
            DatabaseBackend::Postgres => POSTGRES_0007,
            _ => SQLITE_0007,
        };
        execute_all(m, statements).await
    }
}

/// `m0020_profile_search_without_rowid`: on SQLite, `profile_search` as a table without rowid.
///
/// Every row a search reads is a posting joined to its profile by `user_id`. With a rowid
/// table and a BLOB primary key, each join is two B-tree descents: the key's automatic index,
/// then the row by its rowid. Without rowid the row sits in the key's own B-tree: one
/// descent (docs/PERFORMANCE.md, "Profile search"). The rows are small (names, an avatar's
/// path), as SQLite advises for such tables. PostgreSQL keeps its heap table: nothing to do.
pub(crate) struct M0020ProfileSearchWithoutRowid;

impl MigrationName for M0020ProfileSearchWithoutRowid {
    fn name(&self) -> &str {
        "m0020_profile_search_without_rowid"
    }
}

const SQLITE_0020: &[&str] = &[
    "CREATE TABLE profile_search_0020 (
        user_id BLOB NOT NULL PRIMARY KEY,
        username TEXT,
        display_name TEXT,
        avatar TEXT,
        visibility TEXT NOT NULL
    ) WITHOUT ROWID",
    "INSERT INTO profile_search_0020 (user_id, username, display_name, avatar, visibility)
        SELECT user_id, username, display_name, avatar, visibility FROM profile_search",
    "DROP TABLE profile_search",
    "ALTER TABLE profile_search_0020 RENAME TO profile_search",
];

#[async_trait::async_trait]
impl MigrationTrait for M0020ProfileSearchWithoutRowid {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        execute_all(m, SQLITE_0020).await
    }
}

/// The time each key joined the vocabulary (`added_at`, Unix milliseconds, stamped by the
/// writer), so that a node's typo index catches up with the keys other nodes added by reading
/// those of the last minutes instead of the whole vocabulary (`typo`). Keys already there get
/// 0: every node's first build reads them.
pub(crate) struct M0021ProfileSearchVocabAdded;

impl MigrationName for M0021ProfileSearchVocabAdded {
    fn name(&self) -> &str {
        "m0021_profile_search_vocab_added"
    }
}

const VOCAB_ADDED: &[&str] = &[
    "ALTER TABLE profile_search_vocab ADD COLUMN added_at BIGINT NOT NULL DEFAULT 0",
    "CREATE INDEX profile_search_vocab_added_idx ON profile_search_vocab (added_at, term)",
];

#[async_trait::async_trait]
impl MigrationTrait for M0021ProfileSearchVocabAdded {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        execute_all(m, VOCAB_ADDED).await
    }
}

/// Runs `statements` in order, in the migration's transaction.
async fn execute_all(m: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::key::{KEY, SKEL, WHOLE};

    #[test]
    fn the_tier_indexes_are_written_for_the_flags_the_search_reads() {
        assert_eq!((KEY, WHOLE, SKEL), (1, 2, 4));
    }
}
