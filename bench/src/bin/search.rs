//! The profile search benchmark (docs/PERFORMANCE.md, "Profile search"). Generates profiles
//! (Russian and Latin names, nicknames built the ways people build them), loads them through
//! the storage repository (`ProfileSearch::bulk_load`, no registration, no argon2) into SQLite
//! (a file in a temp dir) and, when an admin URL is given, into a fresh PostgreSQL database,
//! then measures search latency for five query shapes at concurrency 1 and 8, each over many
//! distinct query strings.
//!
//!   cargo run --release -p keyward-bench --bin search -- --profiles 100000,1000000
//!   scripts/services.sh postgres -- cargo run --release -p keyward-bench --bin search -- …

#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keyward_messages::profiles::{Viewer, Visibility};
use keyward_messages::UserId;
use keyward_storage::search::{SearchEntry, SearchQuery};
use keyward_storage::Store;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database};

#[derive(Parser)]
#[command(about = "Profile search latency by index size, backend, query shape and concurrency")]
struct Args {
    /// Index sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    profiles: Vec<usize>,
    /// A PostgreSQL admin URL: each size gets a database of its own there, dropped after.
    #[arg(long, env = "KEYWARD_TEST_DATABASE_URL")]
    postgres: Option<String>,
    /// Leave SQLite out.
    #[arg(long)]
    no_sqlite: bool,
    /// Distinct query strings per shape.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Page size of every search.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep the SQLite file (in the temp dir) and the PostgreSQL database for a look at their
    /// query plans.
    #[arg(long)]
    keep: bool,
    /// Measure on a kept SQLite file (or PostgreSQL database) of the same size and seed
    /// instead of loading anew.
    #[arg(long)]
    reuse: bool,
    /// Measure only these shapes (by name, comma separated), e.g. for a profile of one.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Concurrencies to measure each shape at.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
}

const SHAPES: [&str; 5] = [
    "exact nickname",
    "3-letter prefix",
    "2 typos",
    "transliterated",
    "6-letter prefix",
];

impl Args {
    /// The warm-up's workers: the highest concurrency measured, so that every pooled
    /// connection has its statements prepared (and on PostgreSQL planned) before the clock.
    fn warm_concurrency(&self) -> usize {
        self.concurrency.iter().copied().max().unwrap_or(1).max(1)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 8)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("| backend | profiles | query | concurrency | p50 ms | p99 ms | max ms | queries/s | hits/query |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &args.profiles {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let people = generate(n, &mut rng);
        // The warm-up's own queries come after the measured ones, which stay those of the seed.
        let (queries, warmup) = (
            queries(&people, args.queries, &mut rng),
            queries(&people, 50 * args.warm_concurrency(), &mut rng),
        );
        let entries: Vec<SearchEntry> = people.iter().map(|p| p.entry.clone()).collect();
        if !args.no_sqlite {
            let dir = std::env::temp_dir().join(format!("keyward-search-bench-{n}"));
            let reuse = args.reuse && dir.join("search.db").exists();
            if !reuse {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
            }
            let url = format!("sqlite://{}/search.db?mode=rwc", dir.display());
            let store = Store::connect(&url).await?;
            store.migrate().await?;
            let load = if reuse {
                Duration::ZERO
            } else {
                load(&store, &entries).await?
            };
            let size = dir_size(&dir);
            eprintln!(
                "sqlite {n}: loaded in {load:.1?}, {:.0} MiB on disk",
                size as f64 / 1048576.0
            );
            measure(&store, "SQLite", n, &queries, &warmup, &args).await?;
            drop(store);
            if !args.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        if let Some(admin) = &args.postgres {
            let name = format!("kw_search_bench_{n}");
            let db = Database::connect(admin.clone()).await?;
            let reuse = args.reuse
                && db
                    .query_one_raw(sea_orm::Statement::from_sql_and_values(
                        sea_orm::DbBackend::Postgres,
                        "SELECT 1 AS n FROM pg_database WHERE datname = $1",
                        [name.clone().into()],
                    ))
                    .await?
                    .is_some();
            if !reuse {
                db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await?;
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
            }
            let (base, _) = admin
                .rsplit_once('/')
                .context("admin URL without a database")?;
            let url = format!("{base}/{name}");
            let store = Store::connect(&url).await?;
            store.migrate().await?;
            let load = if reuse {
                Duration::ZERO
            } else {
                load(&store, &entries).await?
            };
            // NOTE: autovacuum would analyse the new rows within a minute or so; do it now.
            let bench_db = Database::connect(url.clone()).await?;
            bench_db.execute_unprepared("VACUUM ANALYZE").await?;
            let size = bench_db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT pg_database_size('{name}') AS n"),
                ))
                .await?
                .map(|r| r.try_get::<i64>("", "n"))
                .transpose()?
                .unwrap_or(0);
            let _ = bench_db.close().await;
            eprintln!(
                "postgres {n}: loaded in {load:.1?}, {:.0} MiB",
                size as f64 / 1048576.0
            );
            measure(&store, "PostgreSQL", n, &queries, &warmup, &args).await?;
            drop(store);
            if !args.keep {
                db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
            }
        }
    }
    Ok(())
}

async fn load(store: &Store, entries: &[SearchEntry]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for chunk in entries.chunks(5000) {
        let tx = store.begin().await?;
        tx.search_index().bulk_load(chunk).await?;
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn measure(
    store: &Store,
    backend: &str,
    n: usize,
    queries: &[Vec<String>; 5],
    warmup: &[Vec<String>; 5],
    args: &Args,
) -> anyhow::Result<()> {
    // The typo tier's in-memory index, built before the clock starts (a server builds it at
    // its first typo search).
    let t = Instant::now();
    let keys = store.search_index().load_typo_index().await?;
    eprintln!(
        "{backend} {n}: typo index of {keys} keys built in {:.1?}",
        t.elapsed()
    );
    // What a node does each minute instead (another node's keys): the keys added since
    // shortly before the build; on a database loaded in this run that is the load's keys, up
    // to the most a catch-up takes.
    for when in ["", " again"] {
        let t = Instant::now();
        let read = store.search_index().catch_up_typo_index().await?;
        eprintln!(
            "{backend} {n}: typo index caught up{when} in {:.1?} ({read} keys read)",
            t.elapsed()
        );
    }
    // The in-memory candidate lookup alone, per shape, one query after another.
    for (shape, qs) in SHAPES.iter().zip(queries) {
        let mut lat = Vec::with_capacity(qs.len());
        let mut keys = 0;
        for q in qs {
            let t = Instant::now();
            keys += store.search_index().typo_candidates(q).await?;
            lat.push(t.elapsed());
        }
        lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i].as_secs_f64() * 1e6
        };
        eprintln!(
            "{backend} {n}: typo candidates for {shape}: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs, {:.1} keys/query",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            keys as f64 / lat.len().max(1) as f64
        );
    }
    // Warm the caches with queries of each shape that are not measured, at the highest
    // concurrency measured: each pooled connection then has its statements prepared (and on
    // PostgreSQL planned), as on a node that has been serving.
    for qs in warmup {
        run(store, qs, args.warm_concurrency(), args.limit).await?;
    }
    let measured = |shape: &str| args.only.is_empty() || args.only.iter().any(|o| o == shape);
    for (shape, qs) in SHAPES.iter().zip(queries) {
        if !measured(shape) {
            continue;
        }
        for &concurrency in &args.concurrency {
            let started = Instant::now();
            let cpu_before = (process_cpu(), machine_busy());
            let all = run(store, qs, concurrency, args.limit).await?;
            let wall = started.elapsed();
            let per_search = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
                (Some(a), Some(b)) => format!(
                    "{:.2} ms",
                    b.saturating_sub(a).as_secs_f64() * 1000.0 / all.len().max(1) as f64
                ),
                _ => "unknown".to_owned(),
            };
            eprintln!(
                "{backend} {n}: {shape} at concurrency {concurrency}: CPU per search {} in this \
                 process, {} on the whole machine (the database server and anything else \
                 running included); load average {}",
                per_search(cpu_before.0, process_cpu()),
                per_search(cpu_before.1, machine_busy()),
                std::fs::read_to_string("/proc/loadavg")
                    .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
            );
            let hits: usize = all.iter().map(|(_, h)| h).sum();
            let mut lat: Vec<Duration> = all.into_iter().map(|(d, _)| d).collect();
            lat.sort_unstable();
            let pct = |p: f64| {
                let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
                lat[i].as_secs_f64() * 1000.0
            };
            println!(
                "| {backend} | {n} | {shape} | {concurrency} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} |",
                pct(0.50),
                pct(0.99),
                pct(1.0),
                lat.len() as f64 / wall.as_secs_f64(),
                hits as f64 / lat.len() as f64,
            );
        }
    }
    Ok(())
}

/// Clock ticks of /proc (USER_HZ, 100 on Linux whatever the kernel's own tick).
const TICK: Duration = Duration::from_millis(10);

/// CPU time this process has used, all its threads (Linux; None elsewhere).
fn process_cpu() -> Option<Duration> {
    procs::cpu_of("self")
}

/// CPU time every core of the machine has spent busy since boot (Linux; None elsewhere).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: all but idle and iowait.
    let idle = cpu.get(3)? + cpu.get(4)?;
    let busy = cpu.iter().take(8).sum::<u64>().checked_sub(idle)?;
    Some(TICK * u32::try_from(busy).ok()?)
}

/// Searches each of `qs` once, `concurrency` workers taking the next string from the list;
/// the latency and hits of each.
async fn run(
    store: &Store,
    qs: &[String],
    concurrency: usize,
    limit: u32,
) -> anyhow::Result<Vec<(Duration, usize)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let qs = Arc::new(qs.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, next, qs) = (store.clone(), next.clone(), qs.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(q) = qs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let t = Instant::now();
                let hits = search(&store, q, limit).await?;
                out.push((t.elapsed(), hits));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

async fn search(store: &Store, q: &str, limit: u32) -> anyhow::Result<usize> {
    let page = store
        .search_index()
        .search(&SearchQuery {
            q,
            viewer: Viewer::User(UserId::new()),
            limit,
            cursor: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("search {q:?}: {e:?}"))?;
    Ok(page.items.len())
}

/// One generated profile, with what the queries are made from.
struct Person {
    entry: SearchEntry,
    /// The name in Cyrillic, for a Russian person (first, last).
    cyrillic: Option<(String, String)>,
    /// The name in Latin letters as the display name shows it, if it does.
    latin_display: bool,
}

fn generate(n: usize, rng: &mut StdRng) -> Vec<Person> {
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let russian = rng.gen_bool(0.6);
        let (first, last, cyrillic) = if russian {
            let female = rng.gen_bool(0.5);
            let first = if female {
                pick(rng, RU_FEMALE)
            } else {
                pick(rng, RU_MALE)
            };
            let last = pick(rng, RU_SURNAMES);
            let last = if female {
                feminine(last)
            } else {
                last.to_owned()
            };
            let scheme = Scheme::random(rng);
            let (lf, ll) = (scheme.latin(first), scheme.latin(&last));
            (lf, ll, Some((first.to_owned(), last)))
        } else {
            (
                pick(rng, LATIN_FIRST).to_owned(),
                pick(rng, LATIN_LAST).to_owned(),
                None,
            )
        };
        let sep = *["_", ".", "", "-", "_"].choose(rng).unwrap_or(&"_");
        let (fl, ll) = (first.to_lowercase(), last.to_lowercase());
        let digits = |rng: &mut StdRng| {
            if rng.gen_bool(0.5) {
                format!("{}", rng.gen_range(1..100))
            } else {
                String::new()
            }
        };
        let mut username = match rng.gen_range(0..6) {
            0 => format!("{fl}{sep}{ll}{}", digits(rng)),
            1 => format!("{fl}{}", rng.gen_range(1965..2010)),
            2 => format!(
                "{}{sep}{}{}",
                pick(rng, ADJECTIVES),
                pick(rng, NOUNS),
                digits(rng)
            ),
            3 => format!("{}{ll}{}", fl.chars().next().unwrap_or('x'), digits(rng)),
            4 => format!("{ll}{sep}{}", fl.chars().next().unwrap_or('x')),
            _ => format!("{fl}{sep}{}{}", pick(rng, NOUNS), digits(rng)),
        };
        while !taken.insert(username.clone()) {
            username.push(char::from(b'0' + rng.gen_range(0..10u8)));
        }
        let latin_display = cyrillic.is_none() || rng.gen_bool(0.15);
        let display = match (&cyrillic, rng.gen_range(0..20)) {
            (_, 0) => None,
            (Some((cf, cl)), 1..=2) => Some(format!("{cl} {cf}")),
            (Some((cf, cl)), _) if !latin_display => Some(format!("{cf} {cl}")),
            _ => Some(format!("{first} {last}")),
        };
        let visibility = match rng.gen_range(0..20) {
            0 => Visibility::Private,
            1..=3 => Visibility::Users,
            _ => Visibility::Public,
        };
        let avatar = rng
            .gen_bool(0.5)
            .then(|| format!("https://cdn.example/a/{}.webp", rng.gen::<u64>()));
        out.push(Person {
            entry: SearchEntry {
                user_id: UserId(uuid::Uuid::new_v4()),
                username: rng.gen_bool(0.95).then_some(username),
                display_name: display,
                avatar,
                visibility,
            },
            cyrillic,
            latin_display,
        });
    }
    out
}

/// `count` distinct query strings of each shape (fewer where the data has fewer).
fn queries(people: &[Person], count: usize, rng: &mut StdRng) -> [Vec<String>; 5] {
    let mut shapes: [Vec<String>; 5] = Default::default();
    let mut seen: [HashSet<String>; 5] = Default::default();
    let mut push = |shape: usize, q: String, shapes: &mut [Vec<String>; 5]| {
        if shapes[shape].len() < count && seen[shape].insert(q.clone()) {
            shapes[shape].push(q);
        }
    };
    for _ in 0..count * 50 {
        let p = &people[rng.gen_range(0..people.len())];
        let e = &p.entry;
        if e.visibility == Visibility::Private {
            continue;
        }
        if let Some(u) = &e.username {
            push(0, u.clone(), &mut shapes);
        }
        let word = e
            .display_name
            .as_deref()
            .and_then(|d| d.split(' ').choose_one(rng))
            .or(e.username.as_deref());
        if let Some(w) = word {
            let prefix: String = w.chars().take(3).collect();
            if prefix.chars().count() == 3 {
                push(1, prefix, &mut shapes);
            }
            // Typed further: long enough for a typo, often with a page of prefix matches.
            let prefix: String = w.chars().take(6).collect();
            if prefix.chars().count() == 6 {
                push(4, prefix, &mut shapes);
            }
        }
        let long = [e.username.as_deref(), e.display_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| s.chars().count() >= 10)
            .choose_one(rng);
        if let Some(s) = long {
            push(2, two_typos(s, rng), &mut shapes);
        }
        if let Some((cf, cl)) = &p.cyrillic {
            let q = if p.latin_display {
                // Written in Latin letters: look for it in Cyrillic.
                format!("{cf} {cl}")
            } else {
                let scheme = Scheme::random(rng);
                format!("{} {}", scheme.latin(cf), scheme.latin(cl)).to_lowercase()
            };
            push(3, q, &mut shapes);
        }
        if shapes.iter().all(|s| s.len() >= count) {
            break;
        }
    }
    for s in &mut shapes {
        s.shuffle(rng);
    }
    shapes
}

/// Two random edits (substitution, deletion, insertion or a swap of neighbours), with
/// letters of the string's own script.
fn two_typos(s: &str, rng: &mut StdRng) -> String {
    let mut c: Vec<char> = s.to_lowercase().chars().collect();
    let cyrillic = c.iter().any(|ch| ('а'..='я').contains(ch));
    let letter = |rng: &mut StdRng| {
        if cyrillic {
            char::from_u32(0x430 + rng.gen_range(0..32)).unwrap_or('а')
        } else {
            char::from(b'a' + rng.gen_range(0..26u8))
        }
    };
    for _ in 0..2 {
        let i = rng.gen_range(0..c.len().saturating_sub(1).max(1));
        match rng.gen_range(0..4) {
            0 => c[i] = letter(rng),
            1 => {
                c.remove(i);
            }
            2 => c.insert(i, letter(rng)),
            _ => {
                let j = (i + 1).min(c.len() - 1);
                c.swap(i, j);
            }
        }
    }
    c.into_iter().collect()
}

trait ChooseOne<T> {
    fn choose_one(self, rng: &mut StdRng) -> Option<T>;
}

impl<T, I: Iterator<Item = T>> ChooseOne<T> for I {
    fn choose_one(self, rng: &mut StdRng) -> Option<T> {
        let v: Vec<T> = self.collect();
        if v.is_empty() {
            return None;
        }
        let i = rng.gen_range(0..v.len());
        v.into_iter().nth(i)
    }
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or("x")
}

fn feminine(last: &str) -> String {
    if let Some(stem) = last.strip_suffix("ий") {
        format!("{stem}ая")
    } else if ["ов", "ев", "ёв", "ин", "ын"]
        .iter()
        .any(|s| last.ends_with(s))
    {
        format!("{last}а")
    } else {
        last.to_owned()
    }
}

/// One way of writing Russian in Latin letters (people pick theirs: yo or e, y or i, kh or h).
struct Scheme {
    yo: &'static str,
    short_i: &'static str,
    kh: &'static str,
    ts: &'static str,
    shch: &'static str,
    yu: &'static str,
    ya: &'static str,
}

impl Scheme {
    fn random(rng: &mut StdRng) -> Self {
        let mut one = |a: &'static str, b: &'static str| if rng.gen_bool(0.6) { a } else { b };
        Self {
            yo: one("e", "yo"),
            short_i: one("y", "i"),
            kh: one("kh", "h"),
            ts: one("ts", "c"),
            shch: one("shch", "sch"),
            yu: one("yu", "iu"),
            ya: one("ya", "ia"),
        }
    }

    fn latin(&self, cyrillic: &str) -> String {
        let mut out = String::new();
        for (i, c) in cyrillic.chars().enumerate() {
            let lower: char = c.to_lowercase().next().unwrap_or(c);
            let s = match lower {
                'а' => "a",
                'б' => "b",
                'в' => "v",
                'г' => "g",
                'д' => "d",
                'е' | 'э' => "e",
                'ё' => self.yo,
                'ж' => "zh",
                'з' => "z",
                'и' => "i",
                'й' => self.short_i,
                'к' => "k",
                'л' => "l",
                'м' => "m",
                'н' => "n",
                'о' => "o",
                'п' => "p",
                'р' => "r",
                'с' => "s",
                'т' => "t",
                'у' => "u",
                'ф' => "f",
                'х' => self.kh,
                'ц' => self.ts,
                'ч' => "ch",
                'ш' => "sh",
                'щ' => self.shch,
                'ъ' | 'ь' => "",
                'ы' => "y",
                'ю' => self.yu,
                'я' => self.ya,
                _ => "",
            };
            if i == 0 {
                let mut cs = s.chars();
                if let Some(f) = cs.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(cs.as_str());
                }
            } else {
                out.push_str(s);
            }
        }
        out
    }
}

const RU_MALE: &[&str] = &[
    "Александр",
    "Алексей",
    "Андрей",
    "Антон",
    "Артём",
    "Борис",
    "Вадим",
    "Валерий",
    "Василий",
    "Виктор",
    "Виталий",
    "Владимир",
    "Владислав",
    "Вячеслав",
    "Геннадий",
    "Георгий",
    "Глеб",
    "Григорий",
    "Даниил",
    "Денис",
    "Дмитрий",
    "Евгений",
    "Егор",
    "Иван",
    "Игорь",
    "Илья",
    "Кирилл",
    "Константин",
    "Лев",
    "Леонид",
    "Максим",
    "Марк",
    "Матвей",
    "Михаил",
    "Никита",
    "Николай",
    "Олег",
    "Павел",
    "Пётр",
    "Роман",
    "Руслан",
    "Семён",
    "Сергей",
    "Станислав",
    "Степан",
    "Тимофей",
    "Фёдор",
    "Юрий",
    "Ярослав",
    "Эдуард",
    "Захар",
    "Тимур",
    "Арсений",
];

const RU_FEMALE: &[&str] = &[
    "Александра",
    "Алина",
    "Алла",
    "Анастасия",
    "Ангелина",
    "Анна",
    "Валентина",
    "Валерия",
    "Вера",
    "Вероника",
    "Виктория",
    "Галина",
    "Дарья",
    "Диана",
    "Екатерина",
    "Елена",
    "Елизавета",
    "Жанна",
    "Зоя",
    "Инна",
    "Ирина",
    "Карина",
    "Кира",
    "Ксения",
    "Лариса",
    "Лидия",
    "Любовь",
    "Людмила",
    "Маргарита",
    "Марина",
    "Мария",
    "Милана",
    "Надежда",
    "Наталья",
    "Нина",
    "Оксана",
    "Ольга",
    "Полина",
    "Раиса",
    "Светлана",
    "София",
    "Тамара",
    "Татьяна",
    "Ульяна",
    "Юлия",
    "Яна",
    "Василиса",
    "Алёна",
    "Варвара",
    "Таисия",
    "Ева",
    "Злата",
];

const RU_SURNAMES: &[&str] = &[
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
    "Романов",
    "Воробьёв",
    "Сергеев",
    "Кузьмин",
    "Фролов",
    "Александров",
    "Дмитриев",
    "Королёв",
    "Гусев",
    "Киселёв",
    "Ильин",
    "Максимов",
    "Поляков",
    "Сорокин",
    "Виноградов",
    "Ковалёв",
    "Белов",
    "Медведев",
    "Антонов",
    "Тарасов",
    "Жуков",
    "Баранов",
    "Филиппов",
    "Комаров",
    "Давыдов",
    "Беляев",
    "Герасимов",
    "Богданов",
    "Осипов",
    "Сидоров",
    "Матвеев",
    "Титов",
    "Марков",
    "Миронов",
    "Крылов",
    "Куликов",
    "Карпов",
    "Власов",
    "Мельников",
    "Денисов",
    "Гаврилов",
    "Тихонов",
    "Казаков",
    "Афанасьев",
    "Данилов",
    "Савельев",
    "Тимофеев",
    "Фомин",
    "Чернов",
    "Абрамов",
    "Мартынов",
    "Ефимов",
    "Федотов",
    "Щербаков",
    "Назаров",
    "Калинин",
    "Исаев",
    "Чернышёв",
    "Быков",
    "Маслов",
    "Родионов",
    "Коновалов",
    "Лазарев",
    "Воронин",
    "Климов",
    "Филатов",
    "Пономарёв",
    "Голубев",
    "Кудрявцев",
    "Прохоров",
    "Наумов",
    "Потапов",
    "Журавлёв",
    "Овчинников",
    "Трофимов",
    "Леонов",
    "Соболев",
    "Ермаков",
    "Колесников",
    "Гончаров",
    "Емельянов",
    "Никифоров",
    "Грачёв",
    "Котов",
    "Гришин",
    "Ефремов",
    "Архипов",
    "Громов",
    "Кириллов",
    "Малышев",
    "Панов",
    "Моисеев",
    "Румянцев",
    "Акимов",
    "Кондратьев",
    "Бирюков",
    "Горбунов",
    "Анисимов",
    "Ерёмин",
    "Тихомиров",
    "Галкин",
    "Лукьянов",
    "Михеев",
    "Скворцов",
    "Юдин",
    "Белоусов",
    "Нестеров",
    "Симонов",
    "Прокофьев",
    "Харитонов",
    "Князев",
    "Цветков",
    "Левин",
    "Митрофанов",
    "Воронов",
    "Аксёнов",
    "Мальцев",
    "Логинов",
    "Горшков",
    "Савин",
    "Краснов",
    "Майоров",
    "Демидов",
    "Елисеев",
    "Рыбаков",
    "Сафонов",
    "Плотников",
    "Хохлов",
    "Жданов",
    "Шубин",
    "Шестаков",
    "Хабибуллин",
    "Цой",
    "Ким",
    "Шевченко",
    "Бондаренко",
    "Коваленко",
    "Кравченко",
    "Ткаченко",
    "Лысенко",
    "Мельник",
    "Вишневский",
    "Высоцкий",
    "Островский",
    "Завьялов",
    "Ёлкин",
    "Щукин",
    "Юсупов",
    "Яшин",
    "Чайковский",
    "Хворостовский",
];

const LATIN_FIRST: &[&str] = &[
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kevin",
    "Brian",
    "George",
    "Edward",
    "Ryan",
    "Jacob",
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Lisa",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Emily",
    "Kate",
    "Olivia",
    "Sophie",
    "Emma",
    "Chloe",
    "Hannah",
    "Laura",
    "Anna",
    "Lucas",
    "Leon",
    "Noah",
    "Elias",
    "Felix",
    "Jonas",
    "Mia",
    "Lena",
    "Marie",
    "Julia",
    "Luca",
    "Marco",
    "Giulia",
    "Pierre",
    "Camille",
    "José",
];

const LATIN_LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Kowalski",
    "Nowak",
    "Wiśniewski",
    "Dubois",
    "Moreau",
    "Laurent",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
];

const ADJECTIVES: &[&str] = &[
    "dark", "silent", "happy", "crazy", "little", "big", "red", "blue", "black", "white", "lucky",
    "fast", "wild", "cool", "lazy", "sunny", "night", "shadow", "iron", "golden", "sweet", "angry",
    "brave", "frozen", "mad", "old", "young", "pretty", "secret", "electric",
];

const NOUNS: &[&str] = &[
    "wolf", "fox", "cat", "tiger", "bear", "dragon", "hunter", "rider", "gamer", "coder", "ninja",
    "pilot", "storm", "star", "ghost", "knight", "hawk", "panda", "owl", "raven", "kitty", "bunny",
    "angel", "devil", "boss", "master", "queen", "king", "witch", "pirate",
];
