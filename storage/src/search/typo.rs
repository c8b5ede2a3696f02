//! [`TypoIndex`]: the typo tier's candidate keys, found in memory. The distinct keys of
//! `profile_search_vocab` are held in an [`fst::Set`], and beside it a second set of the same
//! keys written backwards. A key within `k` edits of the query (a swap of neighbours counted
//! as one edit) shares its edits between the query's two halves, so [`Sets::within`] walks
//! the sets with automata that each allow edits in one half only, or one in each: all but one
//! start with a half matched exactly and visit few of the sets' states (Mihov and Schulz's
//! forward-backward method). One automaton for the whole query within two edits visits every
//! key prefix within two edits of a query prefix, three times the work at a million keys.
//!
//! Freshness. The set is built from the vocabulary table, read in key order, when the node
//! starts or at the first typo search (again when [`TypoIndex::invalidate`] asked for it). A
//! key this node writes after that goes into a small "added since build" list too, the moment
//! the upsert writes it, and searches scan that list linearly. Keys written by **another**
//! node or process join that list at the first catch-up after their commit: when a typo
//! search finds the last one older than [`REFRESH`], the node reads, in the background, the
//! keys added to the vocabulary since shortly before it (`added_at`, stamped by the writer),
//! so within `REFRESH` plus one catch-up. The set is rebuilt, through the store's search
//! connections, when the list passes [`ADDED_MAX`] keys or the set is older than
//! [`REBUILD`]. A catch-up reads what was added; a rebuild reads the whole vocabulary, a
//! million keys taking seconds at a million profiles, so it is not done every minute.
//! Exact, prefix and transliteration matches read the database and are always fresh.
//!
//! A key that left the vocabulary may linger in the set until the next rebuild: its
//! postings are gone, so reading them finds nothing, and it is harmless.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use fst::{Automaton, IntoStreamer, Set, Streamer};
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::{Result, StorageError};

/// The longest the index goes without a catch-up while typo searches come: the bound on how
/// late a key written by another node or process reaches the typo tier (plus one catch-up).
pub(crate) const REFRESH: Duration = Duration::from_secs(60);

/// The longest the set goes without a rebuild while typo searches come: the bound on how long
/// a key that left the vocabulary lingers in it.
pub(crate) const REBUILD: Duration = Duration::from_secs(3600);

/// Keys added since the build that start a rebuild (the list is scanned on each search: a
/// few thousand keys cost tens of microseconds).
pub(crate) const ADDED_MAX: usize = 4096;

/// How long an added key stays in the list after a rebuild that does not hold it: time for
/// the transaction that wrote it to commit (it then is in the next rebuild) or roll back.
/// Also how far before the last catch-up (or build) the next one reads: time for a key
/// stamped by its writer to commit, and for the writer's clock to differ from this node's.
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
    set: Option<Arc<Sets>>,
    /// When the read that built `set` started.
    built_at: Option<Instant>,
    /// When the last catch-up's read (or the build's) started.
    caught_up_at: Option<Instant>,
    /// The next catch-up reads the keys added at or after this (Unix milliseconds).
    since: i64,
    /// Rebuild before the next use (many keys were added at once).
    stale: bool,
    /// Keys written since the build (on this node, or found by a catch-up), and when.
    added: BTreeMap<String, Instant>,
    /// A background rebuild or catch-up is under way.
    rebuilding: bool,
    /// Builds so far (for tests).
    builds: u64,
}

/// What a typo search asks of the background, if anything.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Rebuild,
    CatchUp,
}

impl State {
    fn refresh(&self) -> Option<Refresh> {
        let older = |at: Option<Instant>, than| at.is_none_or(|t| t.elapsed() > than);
        if self.rebuilding {
            None
        } else if self.added.len() > ADDED_MAX || older(self.built_at, REBUILD) {
            Some(Refresh::Rebuild)
        } else if older(self.caught_up_at, REFRESH) {
            Some(Refresh::CatchUp)
        } else {
            None
        }
    }
}

impl fmt::Debug for TypoIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("TypoIndex")
            .field("keys", &s.set.as_ref().map(|s| s.forward.len()))
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
            self.in_background(Refresh::Rebuild);
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

    /// The keys within `budget` edits of `query` (the query itself included when it is a
    /// key), with their edits, unsorted, possibly repeated (then the fewest edits is the
    /// key's), possibly with keys no longer in use. `ensure_built` first.
    pub(crate) fn candidates(&self, query: &str, budget: usize) -> Vec<(u8, String)> {
        if budget == 0 {
            return Vec::new();
        }
        let (set, mut keys, refresh) = {
            let s = self.state();
            let dfa = (!s.added.is_empty())
                .then(|| automaton(query, budget))
                .flatten();
            let keys: Vec<(u8, String)> = dfa.map_or_else(Vec::new, |dfa| {
                s.added
                    .keys()
                    .filter(|k| matches!(dfa.eval(k), Distance::Exact(_)))
                    .map(|k| (edits(query, k), k.clone()))
                    .collect()
            });
            (s.set.clone(), keys, s.refresh())
        };
        if let Some(refresh) = refresh {
            self.in_background(refresh);
        }
        if let Some(set) = set {
            set.within(query, budget, &mut keys);
        }
        keys
    }

    /// Starts a rebuild or a catch-up from the pool on the runtime, unless one is under way
    /// or there is no runtime (then the next search asks again).
    fn in_background(&self, refresh: Refresh) {
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
                match refresh {
                    Refresh::Rebuild => this.rebuild(&this.inner.pool).await,
                    Refresh::CatchUp => this.catch_up(&this.inner.pool).await.map(drop),
                }
            };
            this.state().rebuilding = false;
            if let Err(e) = res {
                tracing::warn!(error = %e, "profile search: refreshing the typo index failed");
            }
        });
    }

    /// Catches up now (see [`Self::catch_up`]), once the set is built: how many keys it read.
    pub(crate) async fn catch_up_now<C: ConnectionTrait>(&self, conn: &C) -> Result<usize> {
        self.ensure_built(conn).await?;
        let _one = self.inner.building.lock().await;
        self.catch_up(conn).await
    }

    /// Adds the keys added to the vocabulary since shortly before the last catch-up (or
    /// build) and not in the set yet; with too many of them, the next typo search rebuilds
    /// instead. How many keys it read. Call holding `building`.
    async fn catch_up<C: ConnectionTrait>(&self, conn: &C) -> Result<usize> {
        let started = Instant::now();
        let started_ms = now_ms();
        let (since, set) = {
            let s = self.state();
            (s.since, s.set.clone())
        };
        let Some(set) = set else {
            return Ok(0);
        };
        // NOTE: most keys added since are in the set already (those of a bulk load just
        // before the build, this node's own): read on, page by page, until the new ones are
        // more than the list takes.
        let (mut read, mut new, mut after) = (0, Vec::new(), None);
        loop {
            let page = added_keys(conn, since, after.as_ref(), LOAD_PAGE).await?;
            read += page.len();
            let full = page.len() as u64 == LOAD_PAGE;
            let last = page.last().cloned();
            new.extend(
                page.into_iter()
                    .map(|(_, k)| k)
                    .filter(|k| !set.forward.contains(k)),
            );
            match last {
                Some(last) if full && new.len() <= ADDED_MAX => after = Some(last),
                _ => break,
            }
        }
        let mut s = self.state();
        if new.len() > ADDED_MAX {
            // More than the list takes (a bulk load elsewhere): the next typo search rebuilds.
            s.built_at = None;
            return Ok(read);
        }
        for k in new {
            s.added.entry(k).or_insert(started);
        }
        s.caught_up_at = Some(started);
        s.since = since.max(started_ms - GRACE_MS);
        Ok(read)
    }

    /// Reads the vocabulary and puts a new set in place. Call holding `building`.
    async fn rebuild<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        let started = Instant::now();
        let started_ms = now_ms();
        let was_stale = std::mem::take(&mut self.state().stale);
        let built = match load_keys(conn).await {
            // NOTE: building takes a few hundred milliseconds at a million keys: off the
            // runtime's worker threads.
            Ok(keys) => tokio::task::spawn_blocking(move || Sets::build(keys))
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
            .retain(|k, at| !set.forward.contains(k) && *at + GRACE > started);
        s.set = Some(set);
        s.built_at = Some(started);
        s.caught_up_at = Some(started);
        s.since = started_ms - GRACE_MS;
        s.builds += 1;
        Ok(())
    }

    /// Moves the last build and catch-up `by` into the past, as if that much time had gone.
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        let mut s = self.state();
        let back = |t: Option<Instant>| t.and_then(|t| t.checked_sub(by));
        s.built_at = back(s.built_at);
        s.caught_up_at = back(s.caught_up_at);
    }

    /// How many times the set was built.
    #[cfg(test)]
    pub(crate) fn builds(&self) -> u64 {
        self.state().builds
    }

    /// Whether at least `n` keys of the set start with `prefix` (none before the first build).
    pub(crate) fn prefixed(&self, prefix: &str, n: usize) -> bool {
        let Some(set) = self.state().set.clone() else {
            return false;
        };
        let mut stream = set
            .forward
            .search(fst::automaton::Str::new(prefix).starts_with())
            .into_stream();
        let mut seen = 0;
        while seen < n && stream.next().is_some() {
            seen += 1;
        }
        seen >= n
    }

    /// How many keys the set holds (none before the first build).
    pub(crate) fn keys(&self) -> usize {
        self.state().set.as_ref().map_or(0, |s| s.forward.len())
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

/// Every vocabulary key, in pages by key.
/// [`GRACE`] in milliseconds.
const GRACE_MS: i64 = GRACE.as_millis() as i64;

/// The time as the vocabulary's `added_at` stamps it: Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Up to `limit` keys added to the vocabulary at or after `since` (Unix milliseconds), with
/// their stamps, in order of stamp and key, after `after` if given.
async fn added_keys<C: ConnectionTrait>(
    conn: &C,
    since: i64,
    after: Option<&(i64, String)>,
    limit: u64,
) -> Result<Vec<(i64, String)>> {
    // NOTE: numbered parameters read the same on both backends.
    let (condition, values): (&str, Vec<sea_orm::Value>) = match after {
        None => ("added_at >= $1", vec![since.into()]),
        Some((at, key)) => (
            "(added_at, term) > ($1, $2)",
            vec![(*at).into(), key.clone().into()],
        ),
    };
    let stmt = Statement::from_sql_and_values(
        conn.get_database_backend(),
        format!(
            "SELECT added_at, term FROM profile_search_vocab WHERE {condition} \
             ORDER BY added_at, term LIMIT {limit}"
        ),
        values,
    );
    conn.query_all_raw(stmt)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("", "added_at")?, r.try_get("", "term")?)))
        .collect()
}

async fn load_keys<C: ConnectionTrait>(conn: &C) -> Result<Vec<String>> {
    let backend = conn.get_database_backend();
    let mut keys: Vec<String> = Vec::new();
    loop {
        let stmt = match keys.last() {
            None => Statement::from_string(
                backend,
                format!("SELECT term FROM profile_search_vocab ORDER BY term LIMIT {LOAD_PAGE}"),
            ),
            // NOTE: a numbered parameter reads the same on both backends.
            Some(last) => Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT term FROM profile_search_vocab WHERE term > $1 \
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

/// The keys, forwards and backwards.
struct Sets {
    forward: Set<Vec<u8>>,
    /// Each key with its characters in reverse order.
    backward: Set<Vec<u8>>,
}

impl Sets {
    /// The sets of `keys`, which come in the database's order: byte order on both backends
    /// (the column is `COLLATE "C"` on PostgreSQL), sorted here anyway if not.
    fn build(mut keys: Vec<String>) -> Result<Self> {
        let corrupt = |e| StorageError::corrupt("profile_search_vocab keys".into(), e);
        if !keys.is_sorted() {
            keys.sort_unstable();
        }
        keys.dedup();
        let mut reversed: Vec<String> = keys.iter().map(|k| k.chars().rev().collect()).collect();
        let forward = Set::from_iter(keys).map_err(corrupt)?;
        reversed.sort_unstable();
        reversed.dedup();
        let backward = Set::from_iter(reversed).map_err(corrupt)?;
        Ok(Self { forward, backward })
    }

    /// Adds to `out` every key within `budget` (1 or 2) edits of `query`, some more than once.
    ///
    /// Cut the query in halves `a·b`: a key within `budget` edits of it is some `x·y` with
    /// the edits shared between `x` against `a` and `y` against `b` (an edit belongs to one
    /// half). A walk that allows no edit in `a` starts narrow, forwards; one that allows none
    /// in `b` too, backwards. With two edits, one in each half is left: a walk forwards that
    /// lets the first edit fall in `a` and the second in `b`, the one walk that starts wide.
    /// The one alignment that does not cut so is a swap of the two characters either side of
    /// the cut (one edit, but one in each half): such a key is within `budget - 1` edits of
    /// the query with those two swapped, with no other edit touching them, walked the same
    /// way. Every key added is within `budget` edits; the fewest edits any walk found for it
    /// are its edits (the walk that allows its best alignment finds those).
    fn within(&self, query: &str, budget: usize, out: &mut Vec<(u8, String)>) {
        let mut q: Vec<char> = query.chars().collect();
        let n = q.len();
        let m = n / 2;
        if !(1..=2).contains(&budget) || m == 0 || n > Near::LONGEST {
            // Too short to cut, or longer than a walk takes: one automaton for the query.
            let from = out.len();
            if let Some(dfa) = automaton(query, budget) {
                collect(&self.forward, &dfa, out);
            } else if self.forward.contains(query) {
                out.push((0, query.to_owned()));
            }
            for (d, k) in &mut out[from..] {
                *d = edits(query, k);
            }
            return;
        }
        let (a, b) = (span(0, m), span(m, n));
        if budget == 1 {
            self.walk(&q, [b, 0], false, out);
            self.walk(&q, [a, 0], true, out);
            q.swap(m - 1, m);
            let swapped: String = q.iter().collect();
            if self.forward.contains(&swapped) {
                out.push((1, swapped));
            }
            return;
        }
        self.walk(&q, [b, b], false, out);
        self.walk(&q, [a, a], true, out);
        self.walk(&q, [a, b], false, out);
        q.swap(m - 1, m);
        let from = out.len();
        self.walk(&q, [b, 0], false, out);
        self.walk(&q, [a, 0], true, out);
        // NOTE: the walks around the swap also let an edit fall between the two swapped
        // characters, which is no swap (three edits in all): counted out here.
        let mut i = from;
        while i < out.len() {
            out[i].0 = edits(query, &out[i].1);
            if usize::from(out[i].0) <= budget {
                i += 1;
            } else {
                out.swap_remove(i);
            }
        }
    }

    /// Adds the keys within as many edits of `q` as `gates` has levels, where `gates[e - 1]`
    /// holds the positions of `q` where the `e`th edit may fall; backwards when `backwards`
    /// (the gates as for `q` forwards).
    fn walk(&self, q: &[char], gates: [u64; 2], backwards: bool, out: &mut Vec<(u8, String)>) {
        let budget = gates.iter().filter(|&&g| g != 0).count();
        let near = if backwards {
            let n = q.len();
            let rq: Vec<char> = q.iter().rev().copied().collect();
            Near::new(rq, budget, gates.map(|g| mirror(g, n)))
        } else {
            Near::new(q.to_vec(), budget, gates)
        };
        let set = if backwards {
            &self.backward
        } else {
            &self.forward
        };
        let fst = set.as_fst();
        let mut walker = Walker {
            fst,
            near: &near,
            key: Vec::with_capacity(4 * q.len() + 8),
            reversed: backwards,
            out,
        };
        walker.descend(fst.root(), near.start());
    }
}

/// A depth-first walk of a set with a [`Near`], in place of `fst`'s stream: that one decodes
/// the node behind every transition and copies its stack frames (state and node) twice per
/// transition; here a node is decoded only when the walk can go on in it, and where no edit
/// may fall, only the pattern's next characters are looked up instead of every transition
/// tried.
struct Walker<'a, 'f> {
    fst: &'f fst::raw::Fst<Vec<u8>>,
    near: &'a Near,
    /// The bytes read from the root to the node.
    key: Vec<u8>,
    reversed: bool,
    out: &'a mut Vec<(u8, String)>,
}

impl Walker<'_, '_> {
    fn descend(&mut self, node: fst::raw::Node<'_>, walk: Walk) {
        if node.is_final() && self.near.is_match(&walk) {
            if let Ok(k) = std::str::from_utf8(&self.key) {
                let k = if self.reversed {
                    k.chars().rev().collect()
                } else {
                    k.to_owned()
                };
                self.out.push((self.near.edits(&walk), k));
            }
        }
        if let Some(next) = self.near.exact_only(&walk) {
            for c in next.into_iter().flatten() {
                let mut buf = [0u8; 4];
                self.follow(node, walk, c.encode_utf8(&mut buf).as_bytes());
            }
            return;
        }
        for t in node.transitions() {
            let next = self.near.accept(&walk, t.inp);
            if self.near.can_match(&next) {
                self.key.push(t.inp);
                self.descend(self.fst.node(t.addr), next);
                self.key.pop();
            }
        }
    }

    /// Descends along `bytes` from `node`, if the set has them.
    fn follow(&mut self, node: fst::raw::Node<'_>, walk: Walk, bytes: &[u8]) {
        let Some((&b, rest)) = bytes.split_first() else {
            return self.descend(node, walk);
        };
        let Some(i) = node.find_input(b) else {
            return;
        };
        let next = self.near.accept(&walk, b);
        if !rest.is_empty() || self.near.can_match(&next) {
            self.key.push(b);
            self.follow(self.fst.node(node.transition_addr(i)), next, rest);
            self.key.pop();
        }
    }
}

/// Positions `lo` to `hi` of a query as bits: edits there are the characters `lo` to `hi - 1`,
/// and insertions before each and after the last.
fn span(lo: usize, hi: usize) -> u64 {
    (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1)
}

/// `mask`'s positions in a query of `n` characters, for the query backwards.
fn mirror(mask: u64, n: usize) -> u64 {
    mask.reverse_bits() >> (63 - n)
}

/// The keys of `set` that `dfa` accepts, their edits left at 0 for the caller to count.
fn collect(set: &Set<Vec<u8>>, dfa: &DFA, out: &mut Vec<(u8, String)>) {
    let mut stream = set.search(dfa).into_stream();
    while let Some(k) = stream.next() {
        if let Ok(k) = std::str::from_utf8(k) {
            out.push((0, k.to_owned()));
        }
    }
}

/// Edits between `query` and `key`, as [`super::key::distance`] counts them.
fn edits(query: &str, key: &str) -> u8 {
    u8::try_from(super::key::distance(query, key)).unwrap_or(u8::MAX)
}

/// The keys of `set` within `budget` edits of `query` with their edits, each once, as the
/// typo tier finds them.
#[cfg(test)]
pub(super) fn within(set: &Set<Vec<u8>>, query: &str, budget: usize) -> Vec<(u8, String)> {
    let keys: Vec<String> = set.stream().into_strs().unwrap_or_default();
    let Ok(sets) = Sets::build(keys) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    sets.within(query, budget, &mut out);
    fewest_edits(out)
}

/// Each key once, with its fewest edits, sorted by edits and key.
pub(crate) fn fewest_edits(mut keys: Vec<(u8, String)>) -> Vec<(u8, String)> {
    keys.sort_unstable_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    keys.dedup_by(|later, first| later.1 == first.1);
    keys.sort_unstable();
    keys
}

/// The strings within `budget` (0 to 2) edits of `pattern`, as [`key::distance`] counts
/// them (insertions, deletions, substitutions, swaps of neighbours, in characters), where the
/// `e`th edit may fall only at the positions of `gates[e - 1]`: the bit-parallel simulation
/// of the Levenshtein NFA (Wu and Manber; Baeza-Yates and Navarro), with Hyyrö's term for
/// swaps. Bit `j` of a state's `d[e]` is set when the first `j` characters of the pattern are
/// within `e` edits of what was read.
///
/// NOTE: not `levenshtein_automata`'s DFAs: building one costs more than walking with it (a
/// table of 256 transitions for each state), and a query takes up to five walks.
///
/// [`key::distance`]: super::key::distance
struct Near {
    pattern: Vec<char>,
    budget: usize,
    gates: [u64; 2],
    /// Bits 0 to the pattern's length.
    full: u64,
    /// Where the pattern holds each ASCII character (most keys are ASCII).
    ascii: [u64; 128],
}

/// A [`Near`]'s state: `d` as above; `before`, `d` before the last character; `last`, the
/// positions where the pattern holds the last character; and the bytes of a character read
/// so far (its bits, and how many bytes are still to come).
#[derive(Clone, Copy, Default)]
struct Walk {
    d: [u64; 3],
    before: [u64; 2],
    last: u64,
    partial: u32,
    pending: u8,
}

impl Near {
    /// The longest pattern: its positions are the bits of a `u64`.
    const LONGEST: usize = 63;

    fn new(pattern: Vec<char>, budget: usize, gates: [u64; 2]) -> Self {
        let full = u64::MAX >> (Self::LONGEST - pattern.len().min(Self::LONGEST));
        let mut ascii = [0u64; 128];
        for (j, &c) in pattern.iter().enumerate().take(Self::LONGEST) {
            if let Some(at) = ascii.get_mut(c as usize) {
                *at |= 1 << j;
            }
        }
        Self {
            pattern,
            budget: budget.min(2),
            gates,
            full,
            ascii,
        }
    }

    /// The fewest edits with which `walk` matches the whole pattern (its budget if none).
    fn edits(&self, walk: &Walk) -> u8 {
        let end = 1u64 << self.pattern.len();
        let e = (0..self.budget).find(|&e| walk.d[e] & end != 0);
        u8::try_from(e.unwrap_or(self.budget)).unwrap_or(u8::MAX)
    }

    /// The characters after which `walk` can go on, when it is between characters and no
    /// edit may fall at any of its positions (then only the pattern's character at each of
    /// them matches; at most three, one per edit level); None when an edit may fall, and
    /// every character may go on.
    fn exact_only(&self, walk: &Walk) -> Option<[Option<char>; 3]> {
        if walk.pending != 0 {
            return None;
        }
        for e in 1..=self.budget {
            let g = self.gates[e - 1];
            if (walk.d[e - 1] | walk.before[e - 1]) & g != 0 {
                return None;
            }
        }
        let mut next = [None; 3];
        let mut at = walk.d[self.budget] & self.full & !(1 << self.pattern.len());
        let mut i = 0;
        while at != 0 {
            let j = at.trailing_zeros() as usize;
            at &= at - 1;
            let c = self.pattern.get(j).copied();
            if !next.contains(&c) {
                match next.get_mut(i) {
                    Some(slot) => *slot = c,
                    // More positions than levels: cannot be, but every character may go on.
                    None => return None,
                }
                i += 1;
            }
        }
        Some(next)
    }

    /// `walk` after the character `c`.
    fn step(&self, walk: &mut Walk, c: char) {
        let at = match self.ascii.get(c as usize) {
            Some(&at) => at,
            None => self
                .pattern
                .iter()
                .enumerate()
                .filter(|(_, &p)| p == c)
                .fold(0u64, |m, (j, _)| m | (1 << j)),
        };
        let s = *walk;
        walk.before = [s.d[0], s.d[1]];
        walk.last = at;
        walk.d[0] = ((s.d[0] & at) << 1) & self.full;
        for e in 1..=self.budget {
            let g = self.gates[e - 1];
            // A match; with one edit more where the gate allows: a substitution, an insertion
            // (the pattern stays put), a deletion (after this character), a swap of this
            // character and the last.
            walk.d[e] = (((s.d[e] & at) << 1)
                | walk.d[e - 1]
                | ((s.d[e - 1] & g) << 1)
                | (s.d[e - 1] & g)
                | ((walk.d[e - 1] & g) << 1)
                | ((s.before[e - 1] & g & at & (s.last >> 1)) << 2))
                & self.full;
        }
    }
}

impl Automaton for Near {
    type State = Walk;

    /// Nothing read: the first characters may be deleted where the gates allow.
    fn start(&self) -> Walk {
        let mut walk = Walk::default();
        walk.d[0] = 1;
        for e in 1..=self.budget {
            walk.d[e] = (walk.d[e - 1] | ((walk.d[e - 1] & self.gates[e - 1]) << 1)) & self.full;
        }
        walk
    }

    fn is_match(&self, walk: &Walk) -> bool {
        walk.pending == 0 && walk.d[self.budget] & (1 << self.pattern.len()) != 0
    }

    fn can_match(&self, walk: &Walk) -> bool {
        walk.d[self.budget] != 0
    }

    fn accept(&self, walk: &Walk, byte: u8) -> Walk {
        let mut next = *walk;
        // The keys are UTF-8 (they come from `String`s): no byte sequence is checked here.
        let (bits, pending) = match (walk.pending, byte) {
            (0, 0x00..=0x7f) => (u32::from(byte), 0),
            (0, 0xc0..=0xdf) => (u32::from(byte & 0x1f), 1),
            (0, 0xe0..=0xef) => (u32::from(byte & 0x0f), 2),
            (0, _) => (u32::from(byte & 0x07), 3),
            (n, _) => ((walk.partial << 6) | u32::from(byte & 0x3f), n - 1),
        };
        next.partial = bits;
        next.pending = pending;
        if pending == 0 {
            self.step(
                &mut next,
                char::from_u32(bits).unwrap_or(char::REPLACEMENT_CHARACTER),
            );
        }
        next
    }
}
