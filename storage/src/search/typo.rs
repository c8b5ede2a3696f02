//! [`TypoIndex`]: the typo tier's candidate keys, found in memory. The distinct keys of
//! `profile_search_vocab` are held in an [`fst::Set`] and intersected with a Levenshtein
//! automaton (`levenshtein_automata`, transpositions counted as one edit), which visits only
//! the set's states that can still end within the edit budget: every key within two edits of
//! a query in a fraction of a millisecond, most of it spent building the automaton for the
//! query, which does not grow with the number of keys.
//!
//! Freshness. The set is built from the vocabulary table, read in key order, when the node
//! starts or at the first typo search (again when [`TypoIndex::invalidate`] asked for it). A
//! key this node writes after that goes into a small "added since build" list too, the moment
//! the upsert writes it, and searches scan that list linearly. The set is rebuilt in the
//! background, through the store's search connections, when the list passes [`ADDED_MAX`]
//! keys (on the write that passes it) or a typo search finds the set older than [`REFRESH`],
//! so a key written by **another** node or process reaches the typo tier at the first rebuild
//! after its commit: within `REFRESH` plus one rebuild of the first typo search that follows.
//! Exact, prefix and transliteration matches read the database and are always fresh.
//!
//! A key that left the vocabulary may linger in the set until the next rebuild: its
//! postings are gone, so reading them finds nothing, and it is harmless.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use fst::{IntoStreamer, Set, Streamer};
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::{Result, StorageError};

/// The longest the set goes without a rebuild while typo searches come: the bound on how late
/// a key written by another node or process reaches the typo tier (plus one rebuild).
pub(crate) const REFRESH: Duration = Duration::from_secs(60);

/// Keys added since the build that start a rebuild (the list is scanned on each search: a
/// few thousand keys cost tens of microseconds).
pub(crate) const ADDED_MAX: usize = 4096;

/// How long an added key stays in the list after a rebuild that does not hold it: time for
/// the transaction that wrote it to commit (it then is in the next rebuild) or roll back.
const GRACE: Duration = Duration::from_secs(120);

/// Vocabulary keys read per statement while building, so that other statements pass between
/// the pages (a store in memory, as in tests, has one connection).
const LOAD_PAGE: u64 = 50_000;

/// The typo tier's in-memory index of distinct keys, one per store and shared by its clones
/// and transactions.
#[derive(Clone)]
pub struct TypoIndex {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store's search connections, for background rebuilds.
    pool: DatabaseConnection,
    state: Mutex<State>,
    /// Held while a build reads and builds, so that one runs at a time.
    building: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    set: Option<Arc<Set<Vec<u8>>>>,
    /// When the read that built `set` started.
    built_at: Option<Instant>,
    /// Rebuild before the next use (many keys were added at once).
    stale: bool,
    /// Keys written on this node since the build, and when.
    added: BTreeMap<String, Instant>,
    /// A background rebuild is under way.
    rebuilding: bool,
}

impl fmt::Debug for TypoIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("TypoIndex")
            .field("keys", &s.set.as_ref().map(|s| s.len()))
            .field("added", &s.added.len())
            .finish()
    }
}

impl TypoIndex {
    pub(crate) fn new(pool: DatabaseConnection) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                state: Mutex::new(State::default()),
                building: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one holds consistent state.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keys an upsert on this node just wrote: searches find them before the next rebuild.
    pub(crate) fn note_added<'k>(&self, keys: impl IntoIterator<Item = &'k String>) {
        let now = Instant::now();
        let rebuild = {
            let mut s = self.state();
            for k in keys {
                s.added.insert(k.clone(), now);
            }
            if s.added.len() <= ADDED_MAX {
                false
            } else if s.set.is_none() {
                // NOTE: a node that writes but has not searched yet: what its transactions
                // wrote long enough ago is in the table, where the first build reads it.
                s.added.retain(|_, at| now.duration_since(*at) < GRACE);
                false
            } else {
                !s.rebuilding
            }
        };
        if rebuild {
            self.rebuild_in_background();
        }
    }

    /// Many keys were written at once (a bulk load): rebuild before the next typo search.
    pub(crate) fn invalidate(&self) {
        self.state().stale = true;
    }

    /// Builds the set now if there is none (or it was invalidated), reading through `conn`.
    pub(crate) async fn ensure_built<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        let needed = |s: &State| s.set.is_none() || s.stale;
        if !needed(&self.state()) {
            return Ok(());
        }
        let _one = self.inner.building.lock().await;
        if needed(&self.state()) {
            self.rebuild(conn).await?;
        }
        Ok(())
    }

    /// The distinct keys within `budget` edits of `query` (the query itself included when it
    /// is a key), unsorted, possibly with keys no longer in use. `ensure_built` first.
    pub(crate) fn candidates(&self, query: &str, budget: usize) -> Vec<String> {
        let Some(dfa) = automaton(query, budget) else {
            return Vec::new();
        };
        let (set, mut keys, refresh) = {
            let s = self.state();
            let keys: Vec<String> = s
                .added
                .keys()
                .filter(|k| matches!(dfa.eval(k), Distance::Exact(_)))
                .cloned()
                .collect();
            let refresh = !s.rebuilding
                && (s.added.len() > ADDED_MAX || s.built_at.is_none_or(|t| t.elapsed() > REFRESH));
            (s.set.clone(), keys, refresh)
        };
        if refresh {
            self.rebuild_in_background();
        }
        if let Some(set) = set {
            keys.extend(search(&set, &dfa));
        }
        keys
    }

    /// Starts a rebuild from the pool on the runtime, unless one is under way or there is no
    /// runtime (then the next search asks again).
    fn rebuild_in_background(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut s = self.state();
            if s.rebuilding {
                return;
            }
            s.rebuilding = true;
        }
        let this = self.clone();
        rt.spawn(async move {
            let res = {
                let _one = this.inner.building.lock().await;
                this.rebuild(&this.inner.pool).await
            };
            this.state().rebuilding = false;
            if let Err(e) = res {
                tracing::warn!(error = %e, "profile search: rebuilding the typo index failed");
            }
        });
    }

    /// Reads the vocabulary and puts a new set in place. Call holding `building`.
    async fn rebuild<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        let started = Instant::now();
        let was_stale = std::mem::take(&mut self.state().stale);
        let built = match load_keys(conn).await {
            // NOTE: building takes a few hundred milliseconds at a million keys: off the
            // runtime's worker threads.
            Ok(keys) => tokio::task::spawn_blocking(move || build_set(keys))
                .await
                .unwrap_or_else(|e| Err(StorageError::corrupt("typo index build".into(), e))),
            Err(e) => Err(e),
        };
        let set = match built {
            Ok(set) => Arc::new(set),
            Err(e) => {
                self.state().stale |= was_stale;
                return Err(e);
            }
        };
        let mut s = self.state();
        s.added
            .retain(|k, at| !set.contains(k) && *at + GRACE > started);
        s.set = Some(set);
        s.built_at = Some(started);
        Ok(())
    }

    /// How many keys the set holds (none before the first build).
    pub(crate) fn keys(&self) -> usize {
        self.state().set.as_ref().map_or(0, |s| s.len())
    }
}

/// The automaton accepting the strings within `budget` edits of `query` (1 or 2; none for 0).
fn automaton(query: &str, budget: usize) -> Option<DFA> {
    static ONE: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    static TWO: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    let builder = match budget {
        0 => return None,
        1 => ONE.get_or_init(|| LevenshteinAutomatonBuilder::new(1, true)),
        _ => TWO.get_or_init(|| LevenshteinAutomatonBuilder::new(2, true)),
    };
    Some(builder.build_dfa(query))
}

/// The keys of `set` the automaton accepts.
fn search(set: &Set<Vec<u8>>, dfa: &DFA) -> Vec<String> {
    let mut keys = Vec::new();
    let mut stream = set.search(dfa).into_stream();
    while let Some(k) = stream.next() {
        if let Ok(k) = std::str::from_utf8(k) {
            keys.push(k.to_owned());
        }
    }
    keys
}

/// The keys of `set` within `budget` edits of `query`.
#[cfg(test)]
pub(super) fn within(set: &Set<Vec<u8>>, query: &str, budget: usize) -> Vec<String> {
    automaton(query, budget).map_or_else(Vec::new, |dfa| search(set, &dfa))
}

/// Every vocabulary key, in pages by key.
async fn load_keys<C: ConnectionTrait>(conn: &C) -> Result<Vec<String>> {
    let backend = conn.get_database_backend();
    let mut keys: Vec<String> = Vec::new();
    loop {
        let stmt = match (backend, keys.last()) {
            (_, None) => Statement::from_string(
                backend,
                format!("SELECT term FROM profile_search_vocab ORDER BY term LIMIT {LOAD_PAGE}"),
            ),
            (DbBackend::Postgres, Some(last)) => Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT term FROM profile_search_vocab WHERE term > $1 \
                     ORDER BY term LIMIT {LOAD_PAGE}"
                ),
                [last.clone().into()],
            ),
            (_, Some(last)) => Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT term FROM profile_search_vocab WHERE term > ? \
                     ORDER BY term LIMIT {LOAD_PAGE}"
                ),
                [last.clone().into()],
            ),
        };
        let rows = conn.query_all_raw(stmt).await?;
        let n = rows.len();
        for r in rows {
            keys.push(r.try_get("", "term")?);
        }
        if (n as u64) < LOAD_PAGE {
            return Ok(keys);
        }
    }
}

/// The set of `keys`, which come in the database's order: byte order on both backends (the
/// column is `COLLATE "C"` on PostgreSQL), sorted here anyway if not.
fn build_set(mut keys: Vec<String>) -> Result<Set<Vec<u8>>> {
    if !keys.is_sorted() {
        keys.sort_unstable();
    }
    keys.dedup();
    Set::from_iter(keys).map_err(|e| StorageError::corrupt("profile_search_vocab keys".into(), e))
}
