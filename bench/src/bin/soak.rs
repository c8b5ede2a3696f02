//! The soak run (docs/PERFORMANCE.md, "Soak: 30 minutes of mixed traffic"): one embedded
//! `keyward serve` (SQLite, in-process bus, mail to files, production argon2id) under a
//! product's mixed traffic for `--minutes`, with its memory sampled every `--sample-secs`.
//!
//! `--concurrency` workers each send one request at a time, paced so that together they send
//! at most `--rate` requests per second. Each request is drawn from a fixed mix: new users
//! register (with a nickname) and confirm the link of their mail; users log in and open
//! sessions; sessions call forward-auth and `GET /v1/users/me`, search nicknames, look at
//! other users' profiles, edit their own, rotate their refresh token (always when their
//! access token nears its expiry) and log out. Users and live sessions grow over the run as
//! a product's do. Every answer is checked against the status the route promises; anything
//! else is an error (503 is counted apart, as shed).
//!
//! At every sample: the node's VmRSS, VmHWM, RssAnon and RssFile from /proc, its CPU time,
//! the CPU time of the harness and of everything else on the machine (the load the run
//! shares the cores with), the database's size, and the requests of the interval by kind.
//! Writes `{out}/{name}.json` and `{out}/{name}.md`; `bench/plot_soak.py` draws the chart.

#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "../seed.rs"]
#[allow(dead_code)]
mod seed;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Parser, Serialize, Clone)]
#[command(about = "Soak run: mixed traffic against one embedded node, its memory sampled")]
struct Args {
    /// The keyward binary (a release build).
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    /// How long the traffic runs.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between samples (one more is taken before the traffic starts).
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// Workers, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests per second of all workers together (each paced to its share); 0: as fast as
    /// the node answers.
    #[arg(long, default_value_t = 800.0)]
    rate: f64,
    /// The slope is fitted over the samples from this minute on.
    #[arg(long, default_value_t = 5.0)]
    warmup_minutes: f64,
    /// A session refreshes before any other request once its access token is this old (the
    /// node's access tokens live 900 s).
    #[arg(long, default_value_t = 720)]
    refresh_after_secs: u64,
    /// One more sample after the traffic stops and the node idles this long.
    #[arg(long, default_value_t = 30)]
    cooldown_secs: u64,
    /// An experiment: from this minute on, only requests that create nothing (forward-auth,
    /// me, search, profile views and edits of the users and sessions made so far; no
    /// registration, login, refresh or logout), to tell memory that follows the requests from
    /// memory that follows what they create. Keep the run within the access tokens' life.
    #[arg(long)]
    steady_after_minutes: Option<f64>,
    /// A setting for the node, `KEY=VALUE`, repeatable (e.g. `--node-env
    /// KEYWARD_CACHE__TOKENS=8192`); written into the results. Set after the harness's own.
    #[arg(long = "node-env", value_name = "KEY=VALUE", value_parser = key_value)]
    node_env: Vec<(String, String)>,
    /// Where `{name}.json` and `{name}.md` go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[arg(long, default_value = "soak-sqlite")]
    name: String,
}

fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

/// What a request does; the mix's weights are per mille of the drawn requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Register,
    VerifyEmail,
    Login,
    Refresh,
    Me,
    ForwardAuth,
    ProfileEdit,
    Search,
    ViewProfile,
    Logout,
}

const KINDS: [Kind; 10] = [
    Kind::Register,
    Kind::VerifyEmail,
    Kind::Login,
    Kind::Refresh,
    Kind::Me,
    Kind::ForwardAuth,
    Kind::ProfileEdit,
    Kind::Search,
    Kind::ViewProfile,
    Kind::Logout,
];

/// The drawn mix, per mille. Email verification is not drawn: a worker confirms a waiting
/// link before anything else, as a user clicks it soon after it arrives.
const MIX: [(Kind, u64); 9] = [
    (Kind::ForwardAuth, 520),
    (Kind::Me, 250),
    (Kind::Search, 70),
    (Kind::ViewProfile, 50),
    (Kind::ProfileEdit, 40),
    (Kind::Refresh, 30),
    (Kind::Login, 20),
    (Kind::Register, 10),
    (Kind::Logout, 10),
];

impl Kind {
    fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::VerifyEmail => "verify-email",
            Kind::Login => "login",
            Kind::Refresh => "refresh",
            Kind::Me => "me",
            Kind::ForwardAuth => "forward-auth",
            Kind::ProfileEdit => "profile edit",
            Kind::Search => "search",
            Kind::ViewProfile => "view profile",
            Kind::Logout => "logout",
        }
    }

    /// The status a well-formed request of this kind is promised.
    fn expected(self) -> u16 {
        match self {
            Kind::Register => 202,
            Kind::Logout => 204,
            _ => 200,
        }
    }
}

/// Nicknames are one of these and a number; the Cyrillic ones are found by transliteration.
const NAMES: [&str; 36] = [
    "alice",
    "boris",
    "carol",
    "dmitry",
    "elena",
    "fatima",
    "george",
    "hana",
    "ivan",
    "julia",
    "kenji",
    "liam",
    "maria",
    "nikita",
    "olga",
    "pavel",
    "rosa",
    "sergey",
    "tanya",
    "umar",
    "vera",
    "wei",
    "xenia",
    "yuri",
    "zoe",
    "amir",
    "пётр",
    "алёна",
    "ольга",
    "дмитрий",
    "наталья",
    "сергей",
    "юлия",
    "артём",
    "фёдор",
    "ксения",
];
/// Latin spellings of the Cyrillic names above, as users type them.
const TRANSLIT: [&str; 10] = [
    "petr", "alena", "olga", "dmitrii", "natalya", "sergei", "yulia", "artem", "fedor", "ksenia",
];
const ZONES: [&str; 5] = [
    "Europe/Moscow",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Asia/Yekaterinburg",
];
const COUNTRIES: [&str; 5] = ["RU", "DE", "US", "JP", "KZ"];

/// SplitMix64, one stream per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

struct Account {
    email: String,
    username: String,
    id: String,
}

struct Session {
    access: String,
    refresh: String,
    issued: Instant,
}

/// Counts and latencies by kind; the sampler takes the latencies and errors of each interval.
struct Tally {
    ok: [AtomicU64; 10],
    shed: [AtomicU64; 10],
    errors: Mutex<BTreeMap<(usize, u16), u64>>,
    latencies: [Mutex<Vec<u32>>; 10],
}

impl Tally {
    fn new() -> Self {
        Tally {
            ok: std::array::from_fn(|_| AtomicU64::new(0)),
            shed: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: Mutex::new(BTreeMap::new()),
            latencies: std::array::from_fn(|_| Mutex::new(Vec::new())),
        }
    }

    /// Records one answer (`None`: none came); whether it was the promised one.
    fn record(&self, kind: Kind, status: Option<u16>, started: Instant) -> bool {
        let k = kind.index();
        let status = status.unwrap_or(0);
        if status == kind.expected() {
            self.ok[k].fetch_add(1, Ordering::Relaxed);
            let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
            if let Ok(mut l) = self.latencies[k].lock() {
                l.push(us);
            }
            return true;
        }
        if status == 503 {
            self.shed[k].fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut e) = self.errors.lock() {
            *e.entry((k, status)).or_default() += 1;
        }
        false
    }
}

/// Everything the workers share: the users and sessions so far, the links waiting in the
/// mail drop, and the tallies.
struct World {
    c: reqwest::Client,
    base: String,
    users: Mutex<Vec<Arc<Account>>>,
    /// Registered, their link not confirmed yet: email → nickname.
    pending: Mutex<HashMap<String, String>>,
    /// Links read from the mail drop: (email, token).
    links: Mutex<VecDeque<(String, String)>>,
    /// Live sessions not in use by a worker at this moment.
    sessions: Mutex<Vec<Session>>,
    next_user: AtomicU64,
    tally: Tally,
    refresh_after: Duration,
    /// From then on, only requests that create nothing (`--steady-after-minutes`).
    steady_at: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl World {
    fn users(&self) -> usize {
        lock(&self.users).len()
    }

    fn live_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn random_user(&self, rng: &mut Rng) -> Option<Arc<Account>> {
        let users = lock(&self.users);
        if users.is_empty() {
            return None;
        }
        Some(users[rng.below(users.len())].clone())
    }

    fn take_session(&self, rng: &mut Rng) -> Option<Session> {
        let mut s = lock(&self.sessions);
        if s.is_empty() {
            return None;
        }
        let i = rng.below(s.len());
        Some(s.swap_remove(i))
    }

    fn put_session(&self, s: Session) {
        lock(&self.sessions).push(s);
    }

    /// One request of the mix.
    async fn step(&self, rng: &mut Rng) {
        let link = lock(&self.links).pop_front();
        if let Some((email, token)) = link {
            return self.verify_email(&email, &token).await;
        }
        let steady = self.steady_at.is_some_and(|t| Instant::now() >= t);
        let kind = loop {
            let mut draw = rng.below(1000) as u64;
            let mut kind = Kind::ForwardAuth;
            for (k, w) in MIX {
                if draw < w {
                    kind = k;
                    break;
                }
                draw -= w;
            }
            let creates = matches!(
                kind,
                Kind::Register | Kind::Login | Kind::Refresh | Kind::Logout
            );
            if !(steady && creates) {
                break kind;
            }
        };
        match kind {
            Kind::Register => self.register(rng).await,
            Kind::Login => self.login(rng).await,
            _ => match self.take_session(rng) {
                // No session yet (the first seconds): open one, or make its user first.
                None => self.login(rng).await,
                Some(s) if s.issued.elapsed() >= self.refresh_after => self.refresh(s).await,
                Some(s) => self.with_session(kind, s, rng).await,
            },
        }
    }

    async fn register(&self, rng: &mut Rng) {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let username = format!("{}{n}", rng.pick(&NAMES));
        let email = format!("soak{n}@soak.test");
        lock(&self.pending).insert(email.clone(), username.clone());
        let t = Instant::now();
        let r = self
            .c
            .post(format!("{}/v1/auth/register", self.base))
            .json(&json!({"email": email, "password": seed::PASSWORD, "username": username}))
            .send()
            .await;
        let status = r.ok().map(|r| r.status().as_u16());
        if !self.tally.record(Kind::Register, status, t) {
            lock(&self.pending).remove(&email);
        }
    }

    async fn verify_email(&self, email: &str, token: &str) {
        let t = Instant::now();
        let r = self
            .c
            .post(format!("{}/v1/auth/verify-email", self.base))
            .json(&json!({ "token": token }))
            .send()
            .await;
        let (status, body) = answer(r).await;
        let username = lock(&self.pending).remove(email);
        if self.tally.record(Kind::VerifyEmail, status, t) {
            let id = body["user_id"].as_str().unwrap_or_default().to_owned();
            lock(&self.users).push(Arc::new(Account {
                email: email.to_owned(),
                username: username.unwrap_or_default(),
                id,
            }));
        }
    }

    async fn login(&self, rng: &mut Rng) {
        let Some(user) = self.random_user(rng) else {
            return self.register(rng).await;
        };
        let t = Instant::now();
        let r = self
            .c
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"login": user.email, "password": seed::PASSWORD}))
            .send()
            .await;
        let (status, body) = answer(r).await;
        if self.tally.record(Kind::Login, status, t) {
            if let (Some(a), Some(r)) = (
                body["access_token"].as_str(),
                body["refresh_token"].as_str(),
            ) {
                self.put_session(Session {
                    access: a.to_owned(),
                    refresh: r.to_owned(),
                    issued: Instant::now(),
                });
            }
        }
    }

    async fn refresh(&self, mut s: Session) {
        let t = Instant::now();
        let r = self
            .c
            .post(format!("{}/v1/auth/refresh", self.base))
            .json(&json!({"refresh_token": s.refresh}))
            .send()
            .await;
        let (status, body) = answer(r).await;
        let ok = self.tally.record(Kind::Refresh, status, t);
        if let (true, Some(a), Some(r)) = (
            ok,
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        ) {
            s.access = a.to_owned();
            s.refresh = r.to_owned();
            s.issued = Instant::now();
            self.put_session(s);
        } else if status == Some(503) {
            // Shed: the client keeps its tokens and tries later.
            self.put_session(s);
        }
    }

    async fn with_session(&self, kind: Kind, s: Session, rng: &mut Rng) {
        let b = &self.base;
        let c = &self.c;
        let req = match kind {
            Kind::Refresh => return self.refresh(s).await,
            Kind::Me => c.get(format!("{b}/v1/users/me")),
            Kind::ForwardAuth => c.get(format!("{b}/v1/auth/verify")),
            Kind::ProfileEdit => c
                .patch(format!("{b}/v1/users/me"))
                .header("content-type", "application/merge-patch+json")
                .body(profile_edit(rng).to_string()),
            Kind::Search => {
                let q = self.search_query(rng);
                c.get(format!("{b}/v1/users/search"))
                    .query(&[("q", q.as_str()), ("limit", "10")])
            }
            Kind::ViewProfile => match self.random_user(rng) {
                Some(u) if !u.id.is_empty() => c.get(format!("{b}/v1/users/{}", u.id)),
                _ => c.get(format!("{b}/v1/users/me")),
            },
            Kind::Logout => c.post(format!("{b}/v1/auth/logout")),
            Kind::Register | Kind::VerifyEmail | Kind::Login => {
                self.put_session(s);
                return;
            }
        };
        let t = Instant::now();
        let r = req.bearer_auth(&s.access).send().await;
        let status = match r {
            Ok(r) => {
                let s = r.status().as_u16();
                // Read the body, as a client does, so the connection is reused.
                let _ = r.bytes().await;
                Some(s)
            }
            Err(_) => None,
        };
        let ok = self.tally.record(kind, status, t);
        // A logged-out session is gone; one refused (401) is dropped as a client drops it.
        if (kind != Kind::Logout || !ok) && status != Some(401) {
            self.put_session(s);
        }
    }

    /// What a user types into the nickname search: a beginning, a whole nickname, a typo or
    /// a Latin spelling of a Cyrillic name.
    fn search_query(&self, rng: &mut Rng) -> String {
        match rng.below(4) {
            0 => rng.pick(&NAMES).chars().take(3 + rng.below(2)).collect(),
            1 => self
                .random_user(rng)
                .map(|u| u.username.clone())
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "alice".to_owned()),
            2 => {
                let name: Vec<char> = rng.pick(&NAMES[..26]).chars().collect();
                let i = rng.below(name.len());
                let mut typo = name.clone();
                typo[i] = if name[i] == 'e' { 'a' } else { 'e' };
                typo.into_iter().collect()
            }
            _ => rng.pick(&TRANSLIT).to_owned(),
        }
    }
}

/// A merge patch of one to three of the fields a user edits.
fn profile_edit(rng: &mut Rng) -> Value {
    let mut patch = serde_json::Map::new();
    for _ in 0..=rng.below(3) {
        let n = rng.next() % 100_000;
        let (k, v) = match rng.below(6) {
            0 => (
                "display_name",
                json!(format!("{} {n}", capitalised(rng.pick(&NAMES)))),
            ),
            1 => (
                "bio",
                json!(format!(
                    "Soak user {n}. {}",
                    "Likes long walks and short queues. ".repeat(1 + rng.below(6))
                )),
            ),
            2 => ("timezone", json!(rng.pick(&ZONES))),
            3 => ("locale", json!(if rng.below(2) == 0 { "en" } else { "ru" })),
            4 => (
                "visibility",
                json!(if rng.below(3) == 0 { "public" } else { "users" }),
            ),
            _ => ("country", json!(rng.pick(&COUNTRIES))),
        };
        patch.insert(k.to_owned(), v);
    }
    Value::Object(patch)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The status and JSON body of an answer (`Null` when it has none).
async fn answer(r: Result<reqwest::Response, reqwest::Error>) -> (Option<u16>, Value) {
    match r {
        Ok(r) => {
            let s = r.status().as_u16();
            (Some(s), r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (None, Value::Null),
    }
}

/// Reads the node's mail drop as the users' mail clients would: every verification link goes
/// to the queue the workers confirm first; each mail is removed once read (other mails,
/// when they are whole).
async fn read_mail(world: Arc<World>, dir: PathBuf, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let path = e.path();
                let age = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .unwrap_or_default();
                let link = if path.extension().is_some_and(|x| x == "eml") {
                    std::fs::read(&path).ok().and_then(|raw| verification(&raw))
                } else {
                    None
                };
                if let Some(link) = link {
                    lock(&world.links).push_back(link);
                    let _ = std::fs::remove_file(&path);
                } else if age > Duration::from_secs(5) {
                    // Not a verification mail (or its envelope), and surely whole by now.
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The recipient and token of a verification mail.
fn verification(raw: &[u8]) -> Option<(String, String)> {
    let mail = mailparse::parse_mail(raw).ok()?;
    let to = mail
        .headers
        .iter()
        .find(|h| h.get_key().eq_ignore_ascii_case("to"))?
        .get_value();
    let to = match (to.find('<'), to.rfind('>')) {
        (Some(a), Some(b)) if a < b => to[a + 1..b].to_owned(),
        _ => to.trim().to_owned(),
    };
    for part in mail.parts() {
        if part.ctype.mimetype != "text/plain" {
            continue;
        }
        let text = part.get_body().ok()?;
        let marker = "verify-email?token=";
        if let Some(i) = text.find(marker) {
            let token: String = text[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !token.is_empty() {
                return Some((to.to_lowercase(), token));
            }
        }
    }
    None
}

/// CPU time in seconds: (a process's utime + stime) from /proc/<pid>/stat.
fn process_cpu(pid: &str, tick: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(t / tick)
}

/// The machine's busy CPU time in seconds (every core), from /proc/stat.
fn machine_cpu(tick: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    // idle and iowait are the 4th and 5th columns.
    Some((total - v.get(3)? - v.get(4)?) / tick)
}

fn clock_tick() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields of /proc/<pid>/status in KiB.
fn status_kib(pid: &str) -> BTreeMap<&'static str, u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for name in [
        "VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads",
    ] {
        let v = status
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(v) = v {
            out.insert(name, v);
        }
    }
    out
}

fn file_mib(paths: &[PathBuf]) -> f64 {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1024.0 * 1024.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Serialize, Clone, Default)]
struct Sample {
    /// Minutes since the traffic started (0: before it; past the end: the idle one).
    minute: f64,
    rss_mib: f64,
    hwm_mib: f64,
    rss_anon_mib: f64,
    rss_file_mib: f64,
    threads: u64,
    /// keyward.db with its WAL.
    db_mib: f64,
    users: usize,
    live_sessions: usize,
    /// 2xx answers of the interval by kind.
    requests: BTreeMap<String, u64>,
    shed: u64,
    /// Unexpected answers of the interval, "kind status" → count (status 0: no answer).
    errors: BTreeMap<String, u64>,
    /// Latency of the interval's forward-auth and me answers.
    reads_p50_ms: f64,
    reads_p99_ms: f64,
    /// p99 of each kind in the interval.
    p99_ms: BTreeMap<String, f64>,
    /// Cores busy over the interval: the node, the harness, everything else.
    cpu_node: f64,
    cpu_harness: f64,
    cpu_other: f64,
}

impl Sample {
    fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

/// Takes samples: each one's counts are those since the previous.
struct Sampler {
    pid: String,
    self_pid: String,
    tick: f64,
    started: Instant,
    db: Vec<PathBuf>,
    last_ok: [u64; 10],
    last_shed: u64,
    last_cpu: (f64, f64, f64, Instant),
}

impl Sampler {
    fn new(pid: u32, data: &Path, started: Instant) -> Self {
        let tick = clock_tick();
        let pid = pid.to_string();
        let self_pid = std::process::id().to_string();
        let last_cpu = (
            process_cpu(&pid, tick).unwrap_or(0.0),
            process_cpu(&self_pid, tick).unwrap_or(0.0),
            machine_cpu(tick).unwrap_or(0.0),
            Instant::now(),
        );
        Sampler {
            pid,
            self_pid,
            tick,
            started,
            db: ["keyward.db", "keyward.db-wal"]
                .iter()
                .map(|f| data.join(f))
                .collect(),
            last_ok: [0; 10],
            last_shed: 0,
            last_cpu,
        }
    }

    fn take(&mut self, world: &World) -> Sample {
        let mem = status_kib(&self.pid);
        let get = |k: &str| mem.get(k).copied().unwrap_or(0);
        let mut s = Sample {
            minute: self.started.elapsed().as_secs_f64() / 60.0,
            rss_mib: mib(get("VmRSS")),
            hwm_mib: mib(get("VmHWM")),
            rss_anon_mib: mib(get("RssAnon")),
            rss_file_mib: mib(get("RssFile")),
            threads: get("Threads"),
            db_mib: file_mib(&self.db),
            users: world.users(),
            live_sessions: world.live_sessions(),
            ..Sample::default()
        };
        let t = &world.tally;
        let mut shed = 0;
        let mut reads = Vec::new();
        for (k, kind) in KINDS.iter().enumerate() {
            let ok = t.ok[k].load(Ordering::Relaxed);
            s.requests
                .insert(kind.name().to_owned(), ok - self.last_ok[k]);
            self.last_ok[k] = ok;
            shed += t.shed[k].load(Ordering::Relaxed);
            let mut lat = std::mem::take(&mut *lock(&t.latencies[k]));
            lat.sort_unstable();
            if !lat.is_empty() {
                s.p99_ms
                    .insert(kind.name().to_owned(), percentile(&lat, 99.0));
            }
            if matches!(kind, Kind::ForwardAuth | Kind::Me) {
                reads.extend(lat);
            }
        }
        reads.sort_unstable();
        s.reads_p50_ms = percentile(&reads, 50.0);
        s.reads_p99_ms = percentile(&reads, 99.0);
        s.shed = shed - self.last_shed;
        self.last_shed = shed;
        for ((k, status), n) in std::mem::take(&mut *lock(&t.errors)) {
            s.errors.insert(format!("{} {status}", KINDS[k].name()), n);
        }
        let now = (
            process_cpu(&self.pid, self.tick).unwrap_or(self.last_cpu.0),
            process_cpu(&self.self_pid, self.tick).unwrap_or(self.last_cpu.1),
            machine_cpu(self.tick).unwrap_or(self.last_cpu.2),
            Instant::now(),
        );
        let secs = now
            .3
            .duration_since(self.last_cpu.3)
            .as_secs_f64()
            .max(1e-3);
        s.cpu_node = (now.0 - self.last_cpu.0) / secs;
        s.cpu_harness = (now.1 - self.last_cpu.1) / secs;
        s.cpu_other = ((now.2 - self.last_cpu.2) / secs - s.cpu_node - s.cpu_harness).max(0.0);
        self.last_cpu = now;
        s
    }
}

/// Least squares of RSS on time over `samples`: (MiB per hour, R², samples used).
fn slope(samples: &[&Sample], value: impl Fn(&Sample) -> f64) -> (f64, f64, usize) {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return (0.0, 0.0, samples.len());
    }
    let mx = samples.iter().map(|s| s.minute).sum::<f64>() / n;
    let my = samples.iter().map(|s| value(s)).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for s in samples {
        let (dx, dy) = (s.minute - mx, value(s) - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let r2 = if sxx > 0.0 && syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        0.0
    };
    (b * 60.0, r2, samples.len())
}

#[derive(Serialize)]
struct Fit {
    from_minute: f64,
    samples: usize,
    rss_mib_per_hour: f64,
    rss_r2: f64,
    rss_anon_mib_per_hour: f64,
    /// The fitted RSS at the first and last sample of the window.
    fitted_start_mib: f64,
    fitted_end_mib: f64,
}

#[derive(Serialize)]
struct Report {
    args: Args,
    machine: BTreeMap<String, String>,
    mix_per_mille: BTreeMap<String, u64>,
    samples: Vec<Sample>,
    /// The sample after the traffic stopped and the node idled `cooldown_secs`.
    idle_after: Option<Sample>,
    fit: Fit,
    totals: BTreeMap<String, u64>,
    total_requests: u64,
    total_shed: u64,
    total_errors: u64,
    errors: BTreeMap<String, u64>,
    users_at_end: usize,
    live_sessions_at_end: usize,
    registrations_started: u64,
}

fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
    {
        m.insert("cpu".to_owned(), model.trim().to_owned());
    }
    m.insert(
        "cores".to_owned(),
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
    );
    // The node inherits the harness's environment: a KEYWARD_PASSWORDS__* there changes it.
    let argon2 = ["MEMORY_KIB", "ITERATIONS", "PARALLELISM"]
        .iter()
        .filter_map(|k| {
            let v = std::env::var(format!("KEYWARD_PASSWORDS__ARGON2_{k}")).ok()?;
            Some(format!("{} {v}", k.to_lowercase()))
        })
        .collect::<Vec<_>>();
    m.insert(
        "argon2".to_owned(),
        if argon2.is_empty() {
            "argon2id at its defaults, m=19456 KiB, t=2, p=1".to_owned()
        } else {
            format!("argon2id from the environment: {}", argon2.join(", "))
        },
    );
    m.insert(
        "date".to_owned(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    );
    m
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.minutes > 0, "--minutes must be at least 1");
    anyhow::ensure!(args.sample_secs > 0, "--sample-secs must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be 0 or more"
    );
    let data = procs::temp_dir("soak")?;
    let env: Vec<(String, String)> = [
        ("KEYWARD_ACCESS__PRESET", "events"),
        ("KEYWARD_ACCESS__DEFAULT_ROLES", "attendee"),
        // Registrations all come from 127.0.0.1: mail requests are budgeted per client IP.
        ("KEYWARD_THROTTLE__MAIL_PER_IP_PER_HOUR", "100000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(
        seed::cheap_env(None, None)
            .into_iter()
            .filter(|(k, _)| k == "KEYWARD_MASTER_KEY"),
    )
    .chain(args.node_env.iter().cloned())
    .collect();
    let (node, ready) = procs::start_keyward(&args.keyward, &data, &env).await?;
    let pid = node.pid().context("the node's pid")?;
    eprintln!(
        "node {pid} ready in {:.0} ms at {}; data in {}",
        ready.as_secs_f64() * 1000.0,
        node.base,
        data.display()
    );
    // Let the node settle after start; the first sample, before any traffic, follows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let world = Arc::new(World {
        c: seed::client(),
        base: node.base.clone(),
        users: Mutex::new(Vec::new()),
        pending: Mutex::new(HashMap::new()),
        links: Mutex::new(VecDeque::new()),
        sessions: Mutex::new(Vec::new()),
        next_user: AtomicU64::new(0),
        tally: Tally::new(),
        refresh_after: Duration::from_secs(args.refresh_after_secs),
        steady_at: args
            .steady_after_minutes
            .map(|m| started + Duration::from_secs_f64(m.max(0.0) * 60.0)),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mail = tokio::spawn(read_mail(world.clone(), data.join("mail"), stop.clone()));

    let mut sampler = Sampler::new(pid, &data, started);
    let mut samples = vec![sampler.take(&world)];
    let duration = Duration::from_secs(args.minutes * 60);
    let deadline = started + duration;
    let pace =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.concurrency as f64 / args.rate));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let world = world.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0x5EED_0000 + w as u64);
                let mut ticks = pace.map(|p| {
                    let mut i = tokio::time::interval(p);
                    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    i
                });
                while Instant::now() < deadline {
                    if let Some(t) = ticks.as_mut() {
                        t.tick().await;
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                    world.step(&mut rng).await;
                }
            })
        })
        .collect();
    let every = Duration::from_secs(args.sample_secs);
    let mut k = 1u32;
    while started + every * k < deadline {
        tokio::time::sleep_until((started + every * k).into()).await;
        let s = sampler.take(&world);
        eprintln!("{}", progress(&s));
        samples.push(s);
        k += 1;
    }
    for w in workers {
        let _ = w.await;
    }
    let last = sampler.take(&world);
    eprintln!("{}", progress(&last));
    samples.push(last);
    stop.store(true, Ordering::Relaxed);
    let _ = mail.await;
    let idle_after = if args.cooldown_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.cooldown_secs)).await;
        let s = sampler.take(&world);
        eprintln!("idle {} s after: {}", args.cooldown_secs, progress(&s));
        Some(s)
    } else {
        None
    };
    node.stop().await;
    let _ = std::fs::remove_dir_all(&data);

    let report = report(&args, &world, samples, idle_after);
    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join(format!("{}.json", args.name));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let md_path = args.out.join(format!("{}.md", args.name));
    std::fs::write(&md_path, markdown(&report))?;
    println!("{}", markdown(&report));
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn progress(s: &Sample) -> String {
    format!(
        "minute {:.1}: RSS {:.1} MiB (peak {:.1}, anon {:.1}), {} requests, {} shed, {} errors, {} users, {} live sessions, reads p99 {:.2} ms, CPU node {:.2} other {:.2}",
        s.minute,
        s.rss_mib,
        s.hwm_mib,
        s.rss_anon_mib,
        s.total(),
        s.shed,
        s.error_count(),
        s.users,
        s.live_sessions,
        s.reads_p99_ms,
        s.cpu_node,
        s.cpu_other
    )
}

fn report(args: &Args, world: &World, samples: Vec<Sample>, idle_after: Option<Sample>) -> Report {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.minute + 1e-6 >= args.warmup_minutes)
        .collect();
    let (rss_slope, r2, n) = slope(&window, |s| s.rss_mib);
    let (anon_slope, _, _) = slope(&window, |s| s.rss_anon_mib);
    let mean = |f: fn(&Sample) -> f64| {
        window.iter().map(|s| f(s)).sum::<f64>() / (window.len().max(1) as f64)
    };
    let (mx, my) = (mean(|s| s.minute), mean(|s| s.rss_mib));
    let at = |m: f64| my + rss_slope / 60.0 * (m - mx);
    let fit = Fit {
        from_minute: args.warmup_minutes,
        samples: n,
        rss_mib_per_hour: rss_slope,
        rss_r2: r2,
        rss_anon_mib_per_hour: anon_slope,
        fitted_start_mib: window.first().map_or(0.0, |s| at(s.minute)),
        fitted_end_mib: window.last().map_or(0.0, |s| at(s.minute)),
    };
    let mut totals = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for s in &samples {
        for (k, v) in &s.requests {
            *totals.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_insert(0) += v;
        }
    }
    Report {
        args: args.clone(),
        machine: machine(),
        mix_per_mille: MIX.iter().map(|(k, w)| (k.name().to_owned(), *w)).collect(),
        total_requests: totals.values().sum(),
        total_shed: samples.iter().map(|s| s.shed).sum(),
        total_errors: errors.values().sum(),
        users_at_end: world.users(),
        live_sessions_at_end: world.live_sessions(),
        registrations_started: world.next_user.load(Ordering::Relaxed),
        samples,
        idle_after,
        fit,
        totals,
        errors,
    }
}

fn markdown(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let a = &r.args;
    let _ = writeln!(
        md,
        "# Soak: {} minutes of mixed traffic, embedded (SQLite)\n",
        a.minutes
    );
    let _ = writeln!(
        md,
        "{} ({} cores), {}. One `keyward serve` ({}; {}), {} workers paced to {} requests/s in all, memory sampled every {} s. Made by `keyward-bench`'s `soak` binary (docs/PERFORMANCE.md).\n",
        r.machine.get("cpu").map_or("?", String::as_str),
        r.machine.get("cores").map_or("?", String::as_str),
        r.machine.get("date").map_or("?", String::as_str),
        a.keyward.display(),
        r.machine.get("argon2").map_or("?", String::as_str),
        a.concurrency,
        if a.rate > 0.0 { format!("{:.0}", a.rate) } else { "as many".to_owned() },
        a.sample_secs
    );
    if !a.node_env.is_empty() {
        let _ = writeln!(
            md,
            "The node's settings beyond the harness's (`--node-env`): {}.\n",
            a.node_env
                .iter()
                .map(|(k, v)| format!("`{k}={v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(m) = a.steady_after_minutes {
        let _ = writeln!(
            md,
            "From minute {m} on, only requests that create nothing (`--steady-after-minutes`): forward-auth, me, search, profile views and edits of the users and sessions made before; no registration, login, refresh or logout.\n"
        );
    }
    let f = &r.fit;
    let first = r.samples.first();
    let last = r.samples.last();
    let peak = r.samples.iter().map(|s| s.hwm_mib).fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "- RSS: {:.1} MiB before the traffic, {:.1} MiB at the end, peak (VmHWM) {:.1} MiB.",
        first.map_or(0.0, |s| s.rss_mib),
        last.map_or(0.0, |s| s.rss_mib),
        peak
    );
    if f.samples < 2 {
        let _ = writeln!(
            md,
            "- Slope: fewer than 2 samples from minute {} on, no fit (the run is shorter than its warm-up).",
            f.from_minute
        );
    } else {
        let _ = writeln!(
            md,
            "- Slope (least squares over the {} samples from minute {}): **{:+.2} MiB per hour** (R² {:.2}); fitted {:.1} → {:.1} MiB. RssAnon: {:+.2} MiB per hour.",
            f.samples, f.from_minute, f.rss_mib_per_hour, f.rss_r2, f.fitted_start_mib, f.fitted_end_mib, f.rss_anon_mib_per_hour
        );
    }
    let _ = writeln!(
        md,
        "- Requests answered as promised: {}; shed (503): {}; errors: {}{}.",
        r.total_requests,
        r.total_shed,
        r.total_errors,
        if r.errors.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                r.errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        md,
        "- At the end: {} verified users ({} registrations sent), {} live sessions held by the clients.",
        r.users_at_end, r.registrations_started, r.live_sessions_at_end
    );
    if let Some(s) = &r.idle_after {
        let _ = writeln!(
            md,
            "- {} s after the traffic stopped: RSS {:.1} MiB.",
            a.cooldown_secs, s.rss_mib
        );
    }
    let _ = writeln!(
        md,
        "- Totals by kind: {}.\n",
        r.totals
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let kinds: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
    let _ = writeln!(
        md,
        "| minute | RSS MiB | VmHWM MiB | RssAnon MiB | {} | total | shed | errors | users | live sessions | reads p99 ms | db MiB | CPU node | CPU other |",
        kinds.join(" | ")
    );
    let _ = writeln!(md, "|{}", "---|".repeat(13 + kinds.len()));
    for s in r.samples.iter().chain(r.idle_after.iter()) {
        let _ = writeln!(
            md,
            "| {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} |",
            s.minute,
            s.rss_mib,
            s.hwm_mib,
            s.rss_anon_mib,
            kinds
                .iter()
                .map(|k| s.requests.get(*k).copied().unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join(" | "),
            s.total(),
            s.shed,
            s.error_count(),
            s.users,
            s.live_sessions,
            s.reads_p99_ms,
            s.db_mib,
            s.cpu_node,
            s.cpu_other
        );
    }
    let _ = writeln!(
        md,
        "\nEach row's requests are those answered since the row before. The last row is the idle sample, {} s after the traffic stopped. CPU is in cores busy over the interval: the node, and everything on the machine but the node and the harness (the other work sharing the 2 cores).",
        a.cooldown_secs
    );
    md
}
