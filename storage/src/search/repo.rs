//! [`ProfileSearch`]: writing the index and searching it (the module doc of `search` has the
//! design).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keyward_messages::profiles::{Viewer, Visibility};
use keyward_messages::UserId;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::key::{self, Term, KEY, SKEL, WHOLE};
use super::typo::{fewest_edits, TypoIndex};
use super::{SearchEntry, SearchError, SearchHit, SearchPage, SearchQuery};
use crate::Result;

/// The profile search index's repository, over the pool (`store.search_index()`) or a
/// transaction (`tx.search_index()`). Call the writes inside the transaction that changes the
/// profile: an upsert is several statements. Over the pool, `search` reads through the
/// store's search connections (read-only ones on a SQLite file, see `Store::connect`).
pub struct ProfileSearch<'a, C>(
    pub(crate) &'a C,
    pub(crate) &'a TypoIndex,
    pub(crate) Option<&'a DatabaseConnection>,
);

/// The tiers, best first (the module doc of `search` says what each matches).
const EXACT: u8 = 0;
const PREFIX: u8 = 1;
const TYPO: u8 = 2;
const TRANSLIT: u8 = 3;
/// The `tier` of the typo tier's second chunk of keys in a search's first statement, told
/// apart from its first chunk's rows there.
const TYPO_LATER: u8 = 4;

/// Above every character a key holds: `[q, q + TOP)` is the range of keys that start with q.
const TOP: char = '\u{10FFFF}';

/// Rows per multi-row insert (4 or 5 values each, far below both backends' limits).
const INSERT_CHUNK: usize = 500;

/// Matched keys per typo posting query.
const TYPO_CHUNK: usize = 64;

/// Joins the keys of a typo posting query on PostgreSQL: a control character, which folding
/// never leaves in a key.
const KEY_SEP: &str = "\u{1f}";

impl<C: ConnectionTrait> ProfileSearch<'_, C> {
    /// Puts a profile in the index, or brings its entry up to date.
    pub async fn upsert(&self, e: &SearchEntry) -> Result<()> {
        let user = e.user_id.0;
        let vis = vis_code(e.visibility);
        let old = self.terms_of(user).await?;
        let new = key::profile_terms(e.username.as_deref(), e.display_name.as_deref());

        let mut sql = self.sql(
            "INSERT INTO profile_search (user_id, username, display_name, avatar, visibility) \
             VALUES ",
        );
        sql.row([
            user.into(),
            e.username.clone().into(),
            e.display_name.clone().into(),
            e.avatar.clone().into(),
            e.visibility.as_str().into(),
        ]);
        sql.push(
            " ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, \
             display_name = excluded.display_name, avatar = excluded.avatar, \
             visibility = excluded.visibility",
        );
        self.exec(sql).await?;

        if old == new {
            let mut sql = self.sql("UPDATE profile_search_terms SET vis = ");
            sql.bind(vis).push(" WHERE user_id = ").bind(user);
            return self.exec(sql).await;
        }
        let mut sql = self.sql("DELETE FROM profile_search_terms WHERE user_id = ");
        sql.bind(user);
        self.exec(sql).await?;
        self.insert_terms(new.iter().map(|t| (t, user, vis)))
            .await?;

        let keys = |terms: &[Term]| -> BTreeSet<String> {
            terms
                .iter()
                .filter(|t| t.flags & KEY != 0)
                .map(|t| t.text.clone())
                .collect()
        };
        let (old_keys, new_keys) = (keys(&old), keys(&new));
        self.1.note_added(new_keys.difference(&old_keys));
        let mut delta: BTreeMap<String, i64> = BTreeMap::new();
        for k in old_keys.difference(&new_keys) {
            delta.insert(k.clone(), -1);
        }
        for k in new_keys.difference(&old_keys) {
            delta.insert(k.clone(), 1);
        }
        self.count_keys(&delta).await
    }

    /// Whether no profile is indexed (a database from before the index, or a restored one).
    pub async fn is_empty(&self) -> Result<bool> {
        let sql = self.sql("SELECT user_id FROM profile_search LIMIT 1");
        Ok(self.0.query_all_raw(sql.build()).await?.is_empty())
    }

    /// Takes a profile out of the index (blocked, deleted). Nothing happens when it is not in.
    pub async fn remove(&self, user: UserId) -> Result<()> {
        let old = self.terms_of(user.0).await?;
        let mut sql = self.sql("DELETE FROM profile_search_terms WHERE user_id = ");
        sql.bind(user.0);
        self.exec(sql).await?;
        let mut sql = self.sql("DELETE FROM profile_search WHERE user_id = ");
        sql.bind(user.0);
        self.exec(sql).await?;
        let delta = old
            .into_iter()
            .filter(|t| t.flags & KEY != 0)
            .map(|t| (t.text, -1))
            .collect();
        self.count_keys(&delta).await
    }

    /// Adds many profiles that are not in the index yet, with multi-row inserts (for filling
    /// an index, e.g. the benchmark's). One already in is a `Conflict`.
    pub async fn bulk_load(&self, entries: &[SearchEntry]) -> Result<()> {
        for chunk in entries.chunks(INSERT_CHUNK) {
            let mut sql = self.sql(
                "INSERT INTO profile_search (user_id, username, display_name, avatar, \
                 visibility) VALUES ",
            );
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.row([
                    e.user_id.0.into(),
                    e.username.clone().into(),
                    e.display_name.clone().into(),
                    e.avatar.clone().into(),
                    e.visibility.as_str().into(),
                ]);
            }
            self.exec(sql).await?;

            let terms: Vec<(Vec<Term>, Uuid, i16)> = chunk
                .iter()
                .map(|e| {
                    let t = key::profile_terms(e.username.as_deref(), e.display_name.as_deref());
                    (t, e.user_id.0, vis_code(e.visibility))
                })
                .collect();
            self.insert_terms(
                terms
                    .iter()
                    .flat_map(|(ts, user, vis)| ts.iter().map(move |t| (t, *user, *vis))),
            )
            .await?;
            let mut delta: BTreeMap<String, i64> = BTreeMap::new();
            for t in terms.iter().flat_map(|(ts, _, _)| ts) {
                if t.flags & KEY != 0 {
                    *delta.entry(t.text.clone()).or_insert(0) += 1;
                }
            }
            self.count_keys(&delta).await?;
            self.1.invalidate();
        }
        Ok(())
    }

    /// Builds the typo tier's in-memory index now, unless it is built (the first search that
    /// reaches the typo tier does it otherwise); returns how many keys it holds.
    pub async fn load_typo_index(&self) -> Result<usize> {
        self.ensure_typo_index().await?;
        Ok(self.1.keys())
    }

    /// Catches the typo tier's in-memory index up with the keys other nodes added (as a node
    /// does in the background a minute after the last time), building it first if it is not
    /// built; returns how many keys the catch-up read. For measuring it.
    pub async fn catch_up_typo_index(&self) -> Result<usize> {
        match self.2 {
            Some(reads) => self.1.catch_up_now(reads).await,
            None => self.1.catch_up_now(self.0).await,
        }
    }

    /// How many keys the typo tier would read for `q` (1 to its budget edits away), found as
    /// a search finds them: for measuring the in-memory lookup alone.
    pub async fn typo_candidates(&self, q: &str) -> Result<usize> {
        let plan = Plan::new(q);
        if plan.budget == 0 {
            return Ok(0);
        }
        Ok(self.typo_keys(&plan).await?.len())
    }

    /// One page of the profiles `q.viewer` may see that match `q.q`, best first.
    pub async fn search(&self, q: &SearchQuery<'_>) -> Result<SearchPage, SearchError> {
        let plan = Plan::new(q.q);
        let after = q.cursor.map(|c| decode_cursor(c, &plan)).transpose()?;
        let limit = q.limit.clamp(1, 50) as usize;
        let batch = 2 * (limit + 1) + 8;
        // NOTE: the typo tier's second chunk in the first statement serves only a page that
        // its first chunk did not fill: it needs at most the page's rows, and a few for
        // profiles found twice. Each row is a join, so it reads fewer than a batch.
        let later_batch = limit + 1 + 8;
        let wanted = |tier: u8| plan.has(tier) && after.as_ref().is_none_or(|a| a.tier <= tier);
        let from_of = |tier: u8| after.clone().filter(|a| a.tier == tier);

        // NOTE: each statement costs a round trip (on SQLite two thread hand-offs), so the
        // first rows of the B-tree tiers come in one statement, and more only when a tier
        // runs past its batch. The typo tier's first rows come in it too, its keys worked
        // out in memory first, unless the page is likely to end before it: when a page's
        // worth of keys start with the query, prefix matches fill it (visibility aside), and
        // the keys are worked out only if the page gets there.
        let mut typo_keys: Option<Vec<(u8, String)>> = None;
        if wanted(TYPO) {
            self.ensure_typo_index().await?;
            if !self.1.prefixed(&plan.qkey, limit + 1) {
                typo_keys = Some(self.typo_keys(&plan).await?);
            }
        }
        let early_typo = typo_keys
            .as_deref()
            .is_some_and(|keys| !typo_rest(keys, from_of(TYPO).as_ref()).is_empty());
        let direct: Vec<u8> = [EXACT, PREFIX, TYPO, TRANSLIT]
            .into_iter()
            .filter(|&t| if t == TYPO { early_typo } else { wanted(t) })
            .collect();
        // NOTE: the transliteration tier comes last and is rarely reached when the earlier
        // tiers filled a batch, so on PostgreSQL its rows are read only when they did not: a
        // condition on the count of those rows, tested once before the tier is read (a
        // one-time filter), which spares the joins of a batch no page uses. SQLite tests such
        // a condition row by row, and its joins cost less than the condition: it reads all.
        let gated = self.0.get_database_backend() == DbBackend::Postgres
            && direct.len() > 1
            && direct.last() == Some(&TRANSLIT);
        let mut first = if direct.is_empty() {
            BTreeMap::new()
        } else {
            let mut sql = self.sql("");
            let mut chunk: Option<TypoChunk> = None;
            let mut later: Option<TypoChunk> = None;
            let mut union = |sql: &mut Sql, tiers: &[u8]| {
                for (i, &tier) in tiers.iter().enumerate() {
                    if i > 0 {
                        sql.push(" UNION ALL ");
                    }
                    sql.push("SELECT * FROM (");
                    let from = from_of(tier);
                    match (tier, typo_keys.as_deref()) {
                        (TYPO, Some(keys)) => {
                            let first =
                                self.typo_select(sql, keys, from.as_ref(), q.viewer, batch, TYPO);
                            // NOTE: the keys of the next chunk (more edits, mostly) are read
                            // in the same statement: a page that gets past the first chunk's
                            // rows saves a statement, one that does not reads at most a
                            // batch of rows more.
                            if let Some(next) = first.as_ref().and_then(|c| c.next.clone()) {
                                sql.push(") AS t2 UNION ALL SELECT * FROM (");
                                later = self.typo_select(
                                    sql,
                                    keys,
                                    Some(&next),
                                    q.viewer,
                                    later_batch,
                                    TYPO_LATER,
                                );
                            }
                            chunk = first;
                        }
                        _ => self.tier_select(sql, &plan, tier, from.as_ref(), q.viewer, batch),
                    }
                    sql.push(&format!(") AS t{tier}"));
                }
            };
            if gated {
                let (earlier, last) = direct.split_at(direct.len() - 1);
                sql.push("WITH earlier AS (");
                union(&mut sql, earlier);
                sql.push(") SELECT * FROM earlier UNION ALL ");
                union(&mut sql, last);
                sql.push(&format!(" WHERE (SELECT count(*) FROM earlier) < {batch}"));
            } else {
                union(&mut sql, &direct);
            }
            let mut by_tier: BTreeMap<u8, Vec<Row>> = BTreeMap::new();
            for row in self.read_rows(sql).await? {
                by_tier.entry(row.tier).or_default().push(row);
            }
            for rows in by_tier.values_mut() {
                rows.sort_by(|a, b| (&a.term, a.user).cmp(&(&b.term, b.user)));
            }
            let earlier_rows: usize = by_tier
                .iter()
                .filter(|(&t, _)| t != TRANSLIT)
                .map(|(_, rows)| rows.len())
                .sum();
            let mut first = BTreeMap::new();
            for &t in &direct {
                // Not read: the loop below reads it if the page gets there.
                if gated && t == TRANSLIT && earlier_rows >= batch {
                    continue;
                }
                let rows = by_tier.remove(&t).unwrap_or_default();
                let typo = if t == TYPO { chunk.take() } else { None };
                let fetched = match typo {
                    Some(typo) => {
                        // The second chunk's rows follow only when the first's are all here.
                        let whole = rows.len() < batch;
                        let mut fetched = typo.fetched(rows, batch);
                        let later_rows = by_tier.remove(&TYPO_LATER).unwrap_or_default();
                        if let Some(later) = later.take().filter(|_| whole) {
                            let more = later.fetched(later_rows, later_batch);
                            fetched.rows.extend(more.rows);
                            fetched.resume = more.resume;
                        }
                        fetched
                    }
                    None => Fetched::of(t, 0, rows, batch),
                };
                first.insert(t, fetched);
            }
            first
        };

        let mut found: Vec<(Place, SearchHit)> = Vec::new();
        let mut seen: HashSet<Uuid> = HashSet::new();
        'tiers: for tier in [EXACT, PREFIX, TYPO, TRANSLIT] {
            if !wanted(tier) {
                continue;
            }
            let mut from = from_of(tier);
            let mut next = first.remove(&tier);
            loop {
                let fetched = match next.take() {
                    Some(f) => f,
                    None if tier == TYPO => {
                        let keys = match &typo_keys {
                            Some(keys) => keys,
                            None => typo_keys.insert(self.typo_keys(&plan).await?),
                        };
                        self.typo_rows(keys, from.as_ref(), q.viewer, batch).await?
                    }
                    None => {
                        let mut sql = self.sql("");
                        self.tier_select(&mut sql, &plan, tier, from.as_ref(), q.viewer, batch);
                        Fetched::of(tier, 0, self.read_rows(sql).await?, batch)
                    }
                };
                for (place, row) in fetched.rows {
                    // A profile comes once per term it matches by, in several tiers, and the
                    // rows come in rank order: its first row here is its best place from the
                    // cursor on. After a cursor, that place may not be its best, which then
                    // came on an earlier page.
                    if !seen.insert(row.user) {
                        continue;
                    }
                    if after.is_some() {
                        let best = plan.best(row.username.as_deref(), row.display_name.as_deref());
                        if best
                            .is_none_or(|b| (b.0, b.1, &b.2) != (place.tier, place.d, &place.term))
                        {
                            continue;
                        }
                    }
                    found.push((place, row.hit()));
                    if found.len() > limit {
                        break 'tiers;
                    }
                }
                match fetched.resume {
                    Some(p) => from = Some(p),
                    None => break,
                }
            }
        }

        let mut next_cursor = None;
        if found.len() > limit {
            found.truncate(limit);
            next_cursor = found.last().map(|(p, _)| encode_cursor(p, &plan));
        }
        Ok(SearchPage {
            items: found.into_iter().map(|(_, h)| h).collect(),
            next_cursor,
        })
    }

    /// Writes the query for the next `batch` rows of one B-tree tier after `from`.
    fn tier_select(
        &self,
        sql: &mut Sql,
        plan: &Plan,
        tier: u8,
        from: Option<&Place>,
        viewer: Viewer,
        batch: usize,
    ) {
        sql.push(&format!("SELECT {tier} AS tier, {ROWS}"));
        match tier {
            EXACT => {
                sql.push("p.term = ").bind(plan.qkey.clone());
                sql.push(&format!(" AND (p.flags & {WHOLE}) <> 0"));
            }
            _ => {
                let (prefix, flag) = if tier == PREFIX {
                    (&plan.qkey, KEY)
                } else {
                    (&plan.qskel, SKEL)
                };
                sql.push("p.term >= ").bind(prefix.clone());
                sql.push(" AND p.term < ").bind(format!("{prefix}{TOP}"));
                sql.push(&format!(" AND (p.flags & {flag}) <> 0"));
            }
        }
        finish_rows(sql, from, viewer, batch);
    }

    /// The typo tier's rows after `from`: the postings of the matched keys, fewer edits first,
    /// then by key, in chunks of keys.
    async fn typo_rows(
        &self,
        keys: &[(u8, String)],
        from: Option<&Place>,
        viewer: Viewer,
        batch: usize,
    ) -> Result<Fetched> {
        let mut sql = self.sql("");
        let Some(chunk) = self.typo_select(&mut sql, keys, from, viewer, batch, TYPO) else {
            return Ok(Fetched::default());
        };
        Ok(chunk.fetched(self.read_rows(sql).await?, batch))
    }

    /// Writes the query for the typo tier's next chunk of keys after `from` (None: no key is
    /// left), its rows' `tier` written as `arm`.
    fn typo_select(
        &self,
        sql: &mut Sql,
        keys: &[(u8, String)],
        from: Option<&Place>,
        viewer: Viewer,
        batch: usize,
        arm: u8,
    ) -> Option<TypoChunk> {
        let rest = typo_rest(keys, from);
        let &&(d, _) = rest.first()?;
        let chunk: Vec<&String> = rest
            .iter()
            .take_while(|(kd, _)| *kd == d)
            .take(TYPO_CHUNK)
            .map(|(_, k)| k)
            .collect();
        sql.push(&format!("SELECT {arm} AS tier, {ROWS}"));
        if sql.backend == DbBackend::Postgres && chunk.iter().all(|k| !k.contains(KEY_SEP)) {
            // NOTE: one statement text whatever the number of keys, so that PostgreSQL plans
            // it once per connection (an IN list of n keys is a statement of its own).
            let joined: Vec<&str> = chunk.iter().map(|k| k.as_str()).collect();
            sql.push("p.term = ANY(string_to_array(")
                .bind(joined.join(KEY_SEP))
                .push(", chr(31)))");
        } else {
            sql.push("p.term IN ")
                .texts(chunk.iter().map(|k| (*k).clone()));
        }
        sql.push(&format!(" AND (p.flags & {KEY}) <> 0"));
        finish_rows(sql, from.filter(|f| f.d == d), viewer, batch);
        Some(TypoChunk {
            d,
            // On at the first user of the next key, if any.
            next: rest.get(chunk.len()).map(|(d, k)| Place {
                tier: TYPO,
                d: *d,
                term: k.clone(),
                user: Uuid::nil(),
            }),
        })
    }

    /// The distinct keys 1 to `budget` edits from the query, as (edits, key), sorted: the
    /// in-memory index's candidates ([`TypoIndex`]).
    async fn typo_keys(&self, plan: &Plan) -> Result<Vec<(u8, String)>> {
        self.ensure_typo_index().await?;
        let mut keys = fewest_edits(self.1.candidates(&plan.qkey, plan.budget));
        keys.retain(|(d, _)| (1..=plan.budget).contains(&usize::from(*d)));
        Ok(keys)
    }

    /// The terms a profile is indexed under now, sorted by text.
    async fn terms_of(&self, user: Uuid) -> Result<Vec<Term>> {
        let mut sql = self.sql("SELECT term, flags FROM profile_search_terms WHERE user_id = ");
        sql.bind(user).push(" ORDER BY term");
        let rows = self.0.query_all_raw(sql.build()).await?;
        let mut terms = Vec::with_capacity(rows.len());
        for r in rows {
            terms.push(Term {
                text: r.try_get("", "term")?,
                flags: r.try_get("", "flags")?,
            });
        }
        Ok(terms)
    }

    async fn insert_terms<'t>(
        &self,
        rows: impl Iterator<Item = (&'t Term, Uuid, i16)>,
    ) -> Result<()> {
        let rows: Vec<_> = rows.collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut sql = self.sql("INSERT INTO profile_search_terms (term, user_id, flags, vis) ");
            if sql.backend == DbBackend::Sqlite {
                sql.push("SELECT value ->> 0, unhex(value ->> 1), value ->> 2, value ->> 3 FROM ")
                    .json_each(chunk.iter().map(|(t, user, vis)| {
                        serde_json::json!([t.text, user.simple().to_string(), t.flags, vis])
                    }));
            } else {
                sql.push("VALUES ");
                for (i, (t, user, vis)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.row([
                        t.text.clone().into(),
                        (*user).into(),
                        t.flags.into(),
                        (*vis).into(),
                    ]);
                }
            }
            self.exec(sql).await?;
        }
        Ok(())
    }

    /// Adds `delta` to each key's count of postings; a key no posting uses any more leaves
    /// the vocabulary. One statement in key order, so concurrent
    /// writers lock the keys they share in the same order.
    async fn count_keys(&self, delta: &BTreeMap<String, i64>) -> Result<()> {
        let entries: Vec<(&String, &i64)> = delta.iter().collect();
        for chunk in entries.chunks(INSERT_CHUNK) {
            // NOTE: a key new to the vocabulary is stamped with the time it was added, for
            // other nodes' typo indexes to catch up with (see `typo`); a key already in it
            // keeps its stamp.
            let mut sql =
                self.sql("INSERT INTO profile_search_vocab (term, rterm, len, refs, added_at) ");
            let rterm = |k: &str| k.chars().rev().collect::<String>();
            let len = |k: &str| i32::try_from(k.chars().count()).unwrap_or(i32::MAX);
            let added = super::typo::now_ms();
            if sql.backend == DbBackend::Sqlite {
                // NOTE: `WHERE true` keeps SQLite from reading the ON of the upsert as a join's.
                sql.push(
                    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM ",
                )
                .json_each(
                    chunk
                        .iter()
                        .map(|(k, n)| serde_json::json!([k, rterm(k), len(k), n, added])),
                )
                .push(" WHERE true");
            } else {
                sql.push("VALUES ");
                for (i, (k, n)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.row([
                        (*k).clone().into(),
                        rterm(k).into(),
                        len(k).into(),
                        (**n).into(),
                        added.into(),
                    ]);
                }
            }
            sql.push(
                " ON CONFLICT (term) DO UPDATE SET refs = profile_search_vocab.refs + excluded.refs",
            );
            self.exec(sql).await?;
            let gone: Vec<String> = chunk
                .iter()
                .filter(|(_, n)| **n < 0)
                .map(|(k, _)| (*k).clone())
                .collect();
            if !gone.is_empty() {
                let mut sql =
                    self.sql("DELETE FROM profile_search_vocab WHERE refs <= 0 AND term IN ");
                sql.texts(gone);
                self.exec(sql).await?;
            }
        }
        Ok(())
    }

    /// Runs one of `search`'s reads, on the search connections when there are.
    async fn read(&self, sql: Sql) -> Result<Vec<QueryResult>> {
        Ok(match self.2 {
            Some(reads) => reads.query_all_raw(sql.build()).await?,
            None => self.0.query_all_raw(sql.build()).await?,
        })
    }

    /// The [`ROWS`] of a query, each tier's in order by term and user.
    async fn read_rows(&self, mut sql: Sql) -> Result<Vec<Row>> {
        if sql.backend != DbBackend::Sqlite {
            let rows = self.read(sql).await?;
            return rows.iter().map(Row::read).collect();
        }
        // NOTE: sqlx hands each row from SQLite's thread to the reader's on its own, often
        // with a wake-up of the reader's thread; as one JSON array they cross once.
        sql.text = format!(
            "SELECT json_group_array(json_array(tier, term, hex(user_id), username, \
             display_name, avatar)) AS rows FROM ({})",
            sql.text
        );
        let read = self.read(sql).await?;
        let json: String = match read.first() {
            Some(r) => r.try_get("", "rows")?,
            None => return Ok(Vec::new()),
        };
        type Json = (
            u8,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let corrupt = |e: Box<dyn std::error::Error + Send + Sync>| {
            crate::StorageError::corrupt("profile search rows".into(), e)
        };
        let rows: Vec<Json> = serde_json::from_str(&json).map_err(|e| corrupt(e.into()))?;
        let mut rows = rows
            .into_iter()
            .map(|(tier, term, user, username, display_name, avatar)| {
                Ok(Row {
                    tier,
                    term,
                    user: Uuid::try_parse(&user).map_err(|e| corrupt(e.into()))?,
                    username,
                    display_name,
                    avatar,
                })
            })
            .collect::<Result<Vec<Row>>>()?;
        // The aggregate keeps the order its query read in, but SQL does not promise it.
        rows.sort_by(|a, b| (a.tier, &a.term, a.user).cmp(&(b.tier, &b.term, b.user)));
        Ok(rows)
    }

    /// Builds the typo index unless it is built, reading where `search` reads.
    async fn ensure_typo_index(&self) -> Result<()> {
        match self.2 {
            Some(reads) => self.1.ensure_built(reads).await,
            None => self.1.ensure_built(self.0).await,
        }
    }

    fn sql(&self, start: &str) -> Sql {
        Sql {
            backend: self.0.get_database_backend(),
            text: start.to_owned(),
            values: Vec::new(),
        }
    }

    async fn exec(&self, sql: Sql) -> Result<()> {
        self.0.execute_raw(sql.build()).await?;
        Ok(())
    }
}

/// Every tier's rows (after `SELECT <tier> AS tier, `): a posting joined to its profile, so
/// that the profile's best place can be worked out and its hit shown. The match condition
/// follows, then [`finish_rows`].
const ROWS: &str = "p.term, p.user_id, s.username, s.display_name, s.avatar \
     FROM profile_search_terms p JOIN profile_search s ON s.user_id = p.user_id WHERE ";

/// Ends a [`ROWS`] query: visibility, the place to start after, order and limit.
fn finish_rows(sql: &mut Sql, from: Option<&Place>, viewer: Viewer, batch: usize) {
    match viewer {
        Viewer::Anonymous => sql.push(" AND p.vis = 0"),
        Viewer::User(me) => sql
            .push(" AND (p.vis <= 1 OR p.user_id = ")
            .bind(me.0)
            .push(")"),
    };
    if let Some(f) = from {
        sql.push(" AND (p.term, p.user_id) > (")
            .bind(f.term.clone())
            .push(", ")
            .bind(f.user)
            .push(")");
    }
    sql.push(&format!(" ORDER BY p.term, p.user_id LIMIT {batch}"));
}

/// Who may see a row: 0 anyone, 1 signed-in users, 2 only the owner.
fn vis_code(v: Visibility) -> i16 {
    match v {
        Visibility::Public => 0,
        Visibility::Users => 1,
        Visibility::Private => 2,
    }
}

/// A statement under construction, with its placeholders written for its backend.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        match self.backend {
            DbBackend::Postgres => {
                let _ = write!(self.text, "${}", self.values.len());
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// `(v1, v2, …)`; an empty list is `(NULL)`, which matches nothing.
    fn list<V: Into<Value>>(&mut self, items: impl IntoIterator<Item = V>) -> &mut Self {
        self.text.push('(');
        let mut empty = true;
        for v in items {
            if !empty {
                self.text.push_str(", ");
            }
            self.bind(v);
            empty = false;
        }
        if empty {
            self.text.push_str("NULL");
        }
        self.text.push(')');
        self
    }

    /// `(SELECT value FROM json_each(?))` on SQLite, one JSON array bound, so that the statement
    /// is the same whatever the number of items (each IN list length is a statement of its own,
    /// prepared again and cached apart on every connection); `(v1, v2, …)` elsewhere.
    fn texts(&mut self, items: impl IntoIterator<Item = String>) -> &mut Self {
        if self.backend != DbBackend::Sqlite {
            return self.list(items);
        }
        self.push("(SELECT value FROM ")
            .json_each(items.into_iter().map(serde_json::Value::String))
            .push(")")
    }

    /// `json_each(?)` over the items as one JSON array (SQLite's table of them, one row each
    /// in order, the item in `value`).
    fn json_each(&mut self, items: impl IntoIterator<Item = serde_json::Value>) -> &mut Self {
        let array = serde_json::Value::Array(items.into_iter().collect()).to_string();
        self.push("json_each(").bind(array).push(")")
    }

    fn row<const N: usize>(&mut self, values: [Value; N]) -> &mut Self {
        self.list(values)
    }

    fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// A posting as a tier reads it.
struct Row {
    tier: u8,
    term: String,
    user: Uuid,
    username: Option<String>,
    display_name: Option<String>,
    avatar: Option<String>,
}

impl Row {
    fn read(r: &QueryResult) -> Result<Self> {
        let tier: i32 = r.try_get("", "tier")?;
        Ok(Self {
            tier: u8::try_from(tier).unwrap_or(u8::MAX),
            term: r.try_get("", "term")?,
            user: r.try_get("", "user_id")?,
            username: r.try_get("", "username")?,
            display_name: r.try_get("", "display_name")?,
            avatar: r.try_get("", "avatar")?,
        })
    }

    fn hit(self) -> SearchHit {
        SearchHit {
            user_id: UserId(self.user),
            username: self.username,
            display_name: self.display_name,
            avatar: self.avatar,
        }
    }
}

/// The typo tier's keys from `from` on (all of them without it).
fn typo_rest<'k>(keys: &'k [(u8, String)], from: Option<&Place>) -> Vec<&'k (u8, String)> {
    keys.iter()
        .filter(|(d, k)| from.is_none_or(|f| (*d, k.as_str()) >= (f.d, f.term.as_str())))
        .collect()
}

/// A chunk of typo keys written into a statement: their edits, and where the tier goes on
/// when their rows do not fill a batch.
struct TypoChunk {
    d: u8,
    next: Option<Place>,
}

impl TypoChunk {
    fn fetched(self, rows: Vec<Row>, batch: usize) -> Fetched {
        let mut fetched = Fetched::of(TYPO, self.d, rows, batch);
        if fetched.resume.is_none() {
            fetched.resume = self.next;
        }
        fetched
    }
}

/// What one read of a tier brought, and where to go on reading it (None: the tier is done).
#[derive(Default)]
struct Fetched {
    rows: Vec<(Place, Row)>,
    resume: Option<Place>,
}

impl Fetched {
    /// Rows of one tier in order; a full batch may have more behind it.
    fn of(tier: u8, d: u8, rows: Vec<Row>, batch: usize) -> Self {
        let resume = (rows.len() == batch)
            .then(|| rows.last().map(|r| Place::new(tier, d, r)))
            .flatten();
        Self {
            rows: rows
                .into_iter()
                .map(|r| (Place::new(tier, d, &r), r))
                .collect(),
            resume,
        }
    }
}

/// A place in the ranking: tier, edits (typo tier), term, user. Field order is rank order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    tier: u8,
    d: u8,
    term: String,
    user: Uuid,
}

impl Place {
    fn new(tier: u8, d: u8, r: &Row) -> Self {
        Self {
            tier,
            d,
            term: r.term.clone(),
            user: r.user,
        }
    }
}

/// A query, folded, and what each tier compares.
struct Plan {
    qkey: String,
    qskel: String,
    /// The folded query's length in characters.
    qlen: usize,
    budget: usize,
}

impl Plan {
    fn new(q: &str) -> Self {
        let qkey = key::fold(q);
        let qskel = key::skeleton(&qkey);
        let qlen = qkey.chars().count();
        Self {
            budget: key::typo_budget(qlen),
            qkey,
            qskel,
            qlen,
        }
    }

    /// Whether the tier can match anything for this query.
    fn has(&self, tier: u8) -> bool {
        match tier {
            TYPO => self.budget > 0,
            TRANSLIT => !self.qskel.is_empty(),
            _ => !self.qkey.is_empty(),
        }
    }

    /// The best place a profile with these names takes (without its user id), if it matches:
    /// the same rules the tiers' queries apply, worked out from the names, so that a profile
    /// met at a worse place is skipped there.
    fn best(&self, username: Option<&str>, display_name: Option<&str>) -> Option<(u8, u8, String)> {
        fn consider(best: &mut Option<(u8, u8, String)>, tier: u8, d: u8, text: &str) {
            if best
                .as_ref()
                .is_none_or(|b| (tier, d, text) < (b.0, b.1, b.2.as_str()))
            {
                *best = Some((tier, d, text.to_owned()));
            }
        }
        let mut best = None;
        let keys = key::profile_keys(username, display_name);
        for (text, &flags) in &keys {
            if flags & WHOLE != 0 && *text == self.qkey {
                consider(&mut best, EXACT, 0, text);
            }
            if text.starts_with(&self.qkey) {
                consider(&mut best, PREFIX, 0, text);
            }
            if self.budget > 0 && text.chars().count().abs_diff(self.qlen) <= self.budget {
                let d = key::distance(&self.qkey, text);
                if (1..=self.budget).contains(&d) {
                    consider(&mut best, TYPO, u8::try_from(d).unwrap_or(u8::MAX), text);
                }
            }
        }
        // NOTE: every key place ranks before every transliteration: the skeletons (the costly
        // part of a profile's terms) are worked out only for a profile with none.
        if best.is_none() && !self.qskel.is_empty() {
            for k in keys.keys() {
                let skel = key::skeleton(k);
                if !skel.is_empty() && skel.starts_with(&self.qskel) {
                    consider(&mut best, TRANSLIT, 0, &skel);
                }
            }
        }
        best
    }

    /// The fingerprint a cursor carries: FNV-1a of the folded query.
    fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.qkey.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// A cursor as it travels: base64url of this JSON.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// Format version.
    v: u8,
    /// The query's fingerprint.
    f: String,
    t: u8,
    d: u8,
    k: String,
    u: Uuid,
}

fn encode_cursor(p: &Place, plan: &Plan) -> String {
    let wire = Wire {
        v: 1,
        f: plan.fingerprint(),
        t: p.tier,
        d: p.d,
        k: p.term.clone(),
        u: p.user,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

/// The place a cursor of this query holds; `BadCursor` for anything else.
fn decode_cursor(c: &str, plan: &Plan) -> Result<Place, SearchError> {
    if c.len() > 1024 {
        return Err(SearchError::BadCursor);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| SearchError::BadCursor)?;
    let w: Wire = serde_json::from_slice(&bytes).map_err(|_| SearchError::BadCursor)?;
    if w.v != 1 || w.f != plan.fingerprint() || w.t > TRANSLIT || usize::from(w.d) > plan.budget {
        return Err(SearchError::BadCursor);
    }
    Ok(Place {
        tier: w.t,
        d: w.d,
        term: w.k,
        user: w.u,
    })
}
