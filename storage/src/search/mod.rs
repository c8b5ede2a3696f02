//! The profile search index (`GET /v1/users/search`): one row per searchable profile, the
//! terms it is found by, and the distinct keys those terms use. One repository,
//! [`ProfileSearch`].
//!
//! A name and a query become a folded key (NFKC, case folded, `ё` → `е`, separators made
//! spaces) and a Latin skeleton of that key (Russian transliteration with its usual spelling
//! variants collapsed): see `key.rs`. A profile is found by its username and display name,
//! whole, word by word, and by the tails that start at a later word. Results come ranked in
//! four tiers, each profile once, at its best place:
//!
//! 1. exact: the whole username or display name is the query;
//! 2. prefix: a term starts with the query (`ива` finds `Иванов`);
//! 3. typo: a term is within one edit of a query of 5 to 8 characters, two edits from 9
//!    (insertions, deletions, substitutions, swapped neighbours), fewer edits first;
//! 4. transliteration: a term's skeleton starts with the query's (`petr` finds `Пётр`,
//!    `ёлкин` finds `elkin`);
//!
//! and inside a tier by term, then by user id. Pages are cut by an opaque cursor that holds
//! the last place served and is bound to the query; a profile the viewer may not see
//! ([`Viewer::may_see`]) is never served.
//!
//! How it stays fast: exact, prefix and transliteration matches are ranges of B-trees of
//! `profile_search_terms`, keyed by term and user, with the visibility beside them, read in
//! order and cut at the page. Each kind of term (whole field, key, skeleton) has a partial
//! index of its own (`m0008`), so that a tier's range holds only rows it can match: through
//! one B-tree of all terms, the Latin range of a short prefix held thousands of skeletons of
//! Cyrillic names before its first key. The first rows of the tiers come in one statement
//! (on SQLite as one JSON array: sqlx hands rows across threads one by one); on PostgreSQL
//! the transliteration tier's only when the earlier tiers did not fill a batch (it is read
//! later if a page gets there), sparing the joins of rows no page uses. Each row is a
//! posting joined to its profile (on SQLite a table without rowid since `m0020`: one B-tree
//! descent per join). Rows come in rank order, so on a first page a profile's first row is
//! its place; after a cursor its best place is worked out from its names (its skeletons only
//! when no key of it matches), as it may have been served on an earlier page. A typo match
//! first finds the distinct keys near the query in memory: `typo.rs` keeps the keys of
//! `profile_search_vocab` in FST sets, forwards and backwards, and walks them depth-first
//! with Levenshtein automata that each allow the budget's edits (swaps counted as one) in one
//! half of the query, plus a short list of keys added since the sets were built;
//! their postings are then read from the key index, the first two chunks of keys in the
//! first statement (the second's rows only up to about a page's worth) unless a page's
//! worth of keys start with the query (prefix matches then likely fill the page, and the
//! typo tier is read only if the page gets there). Keys written by another node or process
//! reach the typo tier at the node's next catch-up (at most about a minute later, see
//! `typo.rs`); the other tiers are always fresh.
//!
//! Searches on the pool (`store.search_index()`) read through the store's search connections:
//! on a SQLite file a few read-only, memory-mapped connections beside the one writer (WAL lets
//! them read while it writes, each a committed snapshot); on PostgreSQL a pool of their own
//! whose sessions take a generic plan (each statement planned once per connection) and join
//! without Memoize (see `Store::connect`). A search in a transaction (`tx.search_index()`)
//! reads through it and sees what it wrote.
//!
//! The vocabulary's trigram index (FTS5 on SQLite, pg_trgm on PostgreSQL) and its length
//! indexes were dropped by `m0008`: nothing read them since the typo tier moved to memory. Its
//! `rterm` and `len` columns are still written, unread.
//!
//! PostgreSQL: the migration `m0006` runs `CREATE EXTENSION IF NOT EXISTS pg_trgm`. pg_trgm
//! is a trusted extension, so a role that may create objects in the database can do it; where
//! Keyward's role may not, an operator runs that statement once before upgrading. Nothing
//! uses the extension since `m0008`; it stays, as dropping it could take others' objects.
//!
//! Owns: the index rows, their keys, ranking, cursors, and filtering by visibility. Refuses:
//! deciding what goes in (the profiles context upserts a profile when it changes and removes
//! it when it is blocked or deleted, in the same transaction as that change), admins' wider
//! view, and validating `limit` (the caller keeps it in 1..=50).

mod key;
pub(crate) mod migration;
mod repo;
#[cfg(test)]
mod tests;
mod typo;

use keyward_messages::profiles::{Viewer, Visibility};
use keyward_messages::{FieldError, UserId};

use crate::StorageError;

pub use repo::ProfileSearch;
pub use typo::TypoIndex;

/// The longest query, in characters after trimming.
pub const MAX_QUERY_CHARS: usize = keyward_messages::profiles::SEARCH_QUERY_MAX_CHARS;

/// What the index keeps of one profile: what it is found by, what a hit shows, and who may
/// see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchEntry {
    pub user_id: UserId,
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// The avatar's URL (or key) as a hit shows it.
    pub avatar: Option<String>,
    pub visibility: Visibility,
}

/// One search, as the caller validated it ([`validate_query`], `limit` in 1..=50).
#[derive(Clone, Copy, Debug)]
pub struct SearchQuery<'a> {
    pub q: &'a str,
    pub viewer: Viewer,
    pub limit: u32,
    /// The `next_cursor` of the previous page of the same query.
    pub cursor: Option<&'a str>,
}

/// One profile found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub user_id: UserId,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar: Option<String>,
}

/// One page of hits, best first; `next_cursor` is set when more may follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    pub next_cursor: Option<String>,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The cursor is malformed or belongs to another query: the caller's fault (a 400).
    #[error("the cursor is malformed or belongs to another query")]
    BadCursor,
    #[error("search index")]
    Storage(#[from] StorageError),
}

impl From<sea_orm::DbErr> for SearchError {
    fn from(e: sea_orm::DbErr) -> Self {
        SearchError::Storage(e.into())
    }
}

/// A search query is 1 to [`MAX_QUERY_CHARS`] characters after trimming, with at least one
/// letter or digit. The error names the field `q`.
pub fn validate_query(q: &str) -> Result<(), FieldError> {
    let n = q.trim().chars().count();
    if !(1..=MAX_QUERY_CHARS).contains(&n) {
        return Err(FieldError::new(
            "q",
            "invalid_length",
            format!("a search has 1 to {MAX_QUERY_CHARS} characters"),
        ));
    }
    if key::fold(q).is_empty() {
        return Err(FieldError::new(
            "q",
            "invalid_query",
            "a search needs a letter or a digit",
        ));
    }
    Ok(())
}
