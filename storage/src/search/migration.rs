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
        let db = m.get_connection();
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
