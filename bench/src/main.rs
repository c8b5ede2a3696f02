//! The benchmark harness (docs/PERFORMANCE.md). Starts a Keyward node (and the better-auth
//! peer), drives HTTP load with bounded concurrency and duration, measures the hardware
//! limits in the same run (argon2id hash-only throughput, the HTTP floor), memory and cold
//! start, and writes bench/results/latest.{json,md}.
//!
//! Run it with `scripts/bench.sh`, which builds the release binaries, installs the peer and
//! draws the charts.

mod ceilings;
#[allow(dead_code)]
mod load;
#[allow(dead_code)]
mod procs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use load::{Outcome, Step};
use serde::Serialize;
use serde_json::json;

const PASSWORD: &str = "bench passphrase 7 correct horse";

#[derive(Parser)]
#[command(about = "Keyward's benchmark harness (docs/PERFORMANCE.md)")]
struct Args {
    /// The keyward binary (a release build).
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    /// The peer's directory (better-auth; set up by bench/peer/setup.sh).
    #[arg(long, default_value = "bench/peer")]
    peer_dir: PathBuf,
    /// Skip the peer.
    #[arg(long)]
    no_peer: bool,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where latest.json and latest.md go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[derive(Serialize, Default)]
struct Report {
    machine: BTreeMap<String, String>,
    seconds_per_scenario: u64,
    keyward: Side,
    /// Keyward on PostgreSQL and RabbitMQ, when their URLs are set.
    keyward_distributed: Option<Side>,
    peer: Option<Side>,
    /// Hash-only ceilings measured in the run: argon2id (Keyward's parameters), scrypt
    /// (better-auth's), hashes per second on all cores.
    argon2_hashes_per_sec: Vec<f64>,
    scrypt_hashes_per_sec: Vec<f64>,
    /// The storage ceilings measured in the run, per target, through Keyward's own store on
    /// the node's database.
    store: BTreeMap<String, StoreCeilings>,
    outcomes: Vec<Outcome>,
    ratios: BTreeMap<String, f64>,
    targets: Vec<Target>,
}

#[derive(Serialize, Default)]
struct Side {
    first_start_ms: f64,
    cold_start_ms: Vec<f64>,
    cold_start_median_ms: f64,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
}

/// One-statement reads and the smallest durable write (a one-statement transaction), per
/// second at concurrency 8.
#[derive(Serialize, Default, Clone, Copy)]
struct StoreCeilings {
    reads_per_sec: f64,
    write_transactions_per_sec: f64,
    /// The write side of a refresh done by group commit: one writer rotating
    /// [`ceilings::ROTATION_BATCH`] tokens per transaction with multi-row statements (mark rotated,
    /// insert successors, touch sessions). Rotations per second; reads not included.
    batched_rotations_per_sec: f64,
}

/// How the node under test runs.
struct Mode {
    /// The `target` column of its results.
    target: &'static str,
    /// Extra environment of `keyward serve` and `keyward admin`.
    env: Vec<(String, String)>,
    /// Its database; None: the data dir's SQLite file.
    database_url: Option<String>,
}

const EMBEDDED: &str = "keyward";
const DISTRIBUTED: &str = "keyward (distributed)";

#[derive(Serialize)]
struct Target {
    name: String,
    goal: String,
    measured: String,
    met: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// argon2id hash-only throughput with Keyward's default parameters on every core.
fn argon2_ceiling(seconds: f64) -> f64 {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let Ok(params) = Params::new(19456, 2, 1, None) else {
                    return;
                };
                let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").ok();
                while Instant::now() < deadline {
                    if let Some(s) = &salt {
                        let _ = a.hash_password(PASSWORD.as_bytes(), s);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// What Keyward's store does per second on the node's database file at concurrency 8, for
/// `seconds` each: `(one-statement reads, one-statement write transactions)`. Every request
/// that reads or changes state is bounded by these, whatever the layers above do.
async fn store_ceilings(url: &str, session: &str, seconds: f64) -> anyhow::Result<StoreCeilings> {
    use keyward_messages::SessionId;
    use keyward_storage::Store;
    let store = Store::connect(url).await?;
    let sid = SessionId::parse("session_id", session).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ends = store
        .sessions()
        .by_id(sid)
        .await?
        .context("the bench session is gone")?
        .idle_expires_at;
    let window = Duration::from_secs_f64(seconds);
    let count = |write: bool| {
        let store = store.clone();
        async move {
            let deadline = Instant::now() + window;
            let started = Instant::now();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            let ok = if write {
                                async {
                                    let tx = store.begin().await?;
                                    tx.sessions().touch(sid, chrono::Utc::now(), ends).await?;
                                    tx.commit().await
                                }
                                .await
                                .is_ok()
                            } else {
                                store.sessions().by_id(sid).await.is_ok()
                            };
                            n += u64::from(ok);
                        }
                        n
                    })
                })
                .collect();
            let mut n = 0;
            for t in tasks {
                n += t.await.unwrap_or(0);
            }
            n as f64 / started.elapsed().as_secs_f64()
        }
    };
    Ok(StoreCeilings {
        reads_per_sec: count(false).await,
        write_transactions_per_sec: count(true).await,
        batched_rotations_per_sec: ceilings::batched_rotations(
            url,
            window,
            ceilings::ROTATION_BATCH,
        )
        .await?,
    })
}

/// better-auth's own hashPassword on libuv's pool, measured by bench/peer/hash-ceiling.mjs.
async fn scrypt_ceiling(peer_dir: &std::path::Path, seconds: f64) -> anyhow::Result<f64> {
    let out = tokio::process::Command::new("node")
        .arg("hash-ceiling.mjs")
        .arg(format!("{seconds}"))
        .current_dir(peer_dir)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "hash-ceiling.mjs failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The status of an answer. A 503 with `Retry-After` is honoured as a well-behaved client
/// would: the worker waits that long (at most 5 s) before its next request, so overload
/// scenarios measure shedding, not a retry storm on the same two cores.
async fn status_of(r: Result<reqwest::Response, reqwest::Error>) -> Option<u16> {
    let r = r.ok()?;
    let status = r.status().as_u16();
    if status == 503 {
        let wait = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(secs) = wait {
            load::back_off(Duration::from_secs(secs.min(5))).await;
        }
    }
    Some(status)
}

/// A step that POSTs the JSON `body(worker, iteration)` to `url`.
fn post_step(
    c: &reqwest::Client,
    url: String,
    body: impl Fn(usize, u64) -> serde_json::Value + Send + Sync + 'static,
) -> Arc<dyn Fn(usize, u64) -> Step + Send + Sync> {
    let (c, url) = (c.clone(), Arc::new(url));
    Arc::new(move |w, i| {
        let request = c.post(url.as_str()).json(&body(w, i));
        Box::pin(async move { status_of(request.send().await).await })
    })
}

async fn login(c: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<serde_json::Value> {
    let r = c
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"login": email, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "login: {}", r.status());
    Ok(r.json().await?)
}

async fn keyward_side(args: &Args, report: &mut Report, mode: &Mode) -> anyhow::Result<Side> {
    let secs = Duration::from_secs(args.seconds);
    let dir = procs::temp_dir("keyward")?;
    let env = &mode.env;
    let mut side = Side::default();

    // Cold start: the first start migrates and makes a key; then restarts of a ready data dir.
    let (node, first) = procs::start_keyward(&args.keyward, &dir, env).await?;
    side.first_start_ms = ms(first);
    node.stop().await;
    let emails: Vec<String> = (0..8).map(|i| format!("bench{i}@example.com")).collect();
    procs::create_users(&args.keyward, &dir, env, &emails, PASSWORD).await?;
    let mut starts = Vec::new();
    for _ in 0..5 {
        let (node, t) = procs::start_keyward(&args.keyward, &dir, env).await?;
        starts.push(ms(t));
        node.stop().await;
    }
    side.cold_start_ms = starts.clone();
    side.cold_start_median_ms = median(&mut starts);

    let (node, _) = procs::start_keyward(&args.keyward, &dir, env).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    side.idle_rss_mib = node.memory_kib().map_or(0.0, |(rss, _)| mib(rss));
    let base = Arc::new(node.base.clone());
    let c = client();

    // Tokens: one session per worker (64 covers every concurrency used).
    let mut pairs = Vec::new();
    for w in 0..64 {
        pairs.push(login(&c, &base, &emails[w % emails.len()]).await?);
    }
    let access: Arc<Vec<String>> = Arc::new(
        pairs
            .iter()
            .map(|p| p["access_token"].as_str().unwrap_or_default().to_owned())
            .collect(),
    );
    let refresh: Arc<Vec<tokio::sync::Mutex<String>>> = Arc::new(
        pairs
            .iter()
            .map(|p| {
                tokio::sync::Mutex::new(p["refresh_token"].as_str().unwrap_or_default().to_owned())
            })
            .collect(),
    );

    let k = mode.target;
    let floor = load::floor(&c, &base);
    report
        .outcomes
        .push(load::run("http floor", k, 8, secs, floor).await);

    for (name, path) in [("verify", "/v1/auth/verify"), ("me", "/v1/users/me")] {
        let (cc, b, a) = (c.clone(), base.clone(), access.clone());
        let step: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = Arc::new(move |w, _| {
            let (c, b, a) = (cc.clone(), b.clone(), a.clone());
            Box::pin(async move {
                status_of(c.get(format!("{b}{path}")).bearer_auth(&a[w]).send().await).await
            })
        });
        report
            .outcomes
            .push(load::run(name, k, 8, secs, step).await);
    }

    let step = load::refresh(&c, &base, refresh.clone(), |w, _| w);
    report
        .outcomes
        .push(load::run("refresh", k, 8, secs, step).await);

    // The storage ceilings, on the same database while the node idles.
    let sid = pairs[0]["session_id"].as_str().unwrap_or_default();
    let url = mode
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/keyward.db", dir.display()));
    let ceilings = store_ceilings(&url, sid, args.seconds as f64 / 2.0).await?;
    report.store.insert(k.to_owned(), ceilings);

    // Login against the hash-only ceiling, measured just before and just after (embedded mode:
    // the target is stated for it).
    let half = args.seconds as f64 / 2.0;
    let ceiling_here = k == EMBEDDED;
    if ceiling_here {
        report.argon2_hashes_per_sec.push(argon2_ceiling(half));
    }
    for conc in [8, 2, 64] {
        let e = emails.clone();
        let step = post_step(
            &c,
            format!("{base}/v1/auth/login"),
            move |w, _| json!({"login": e[w % e.len()], "password": PASSWORD}),
        );
        report
            .outcomes
            .push(load::run("login", k, conc, secs, step).await);
        if conc == 8 && ceiling_here {
            report.argon2_hashes_per_sec.push(argon2_ceiling(half));
        }
    }

    let counter = AtomicU64::new(0);
    let step = post_step(&c, format!("{base}/v1/auth/register"), move |_, _| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        json!({"email": format!("new{n}@example.com"), "password": PASSWORD})
    });
    report
        .outcomes
        .push(load::run("register", k, 8, secs, step).await);

    side.peak_rss_mib = node.memory_kib().map_or(0.0, |(_, peak)| mib(peak));
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(side)
}

/// Distributed mode, when `KEYWARD_BENCH_DATABASE_URL` (PostgreSQL, a URL allowed to create
/// databases) and `KEYWARD_BENCH_AMQP_URL` are set: a database of its own, created here and
/// dropped after the run, and a random master key.
async fn distributed_side(args: &Args, report: &mut Report) -> anyhow::Result<Option<Side>> {
    let (Ok(admin), Ok(amqp)) = (
        std::env::var("KEYWARD_BENCH_DATABASE_URL"),
        std::env::var("KEYWARD_BENCH_AMQP_URL"),
    ) else {
        return Ok(None);
    };
    use sea_orm::{ConnectionTrait, Database};
    let name = format!("keyward_bench_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(&admin).context("KEYWARD_BENCH_DATABASE_URL")?;
    let server = Database::connect(&admin).await?;
    server
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    url.set_path(&format!("/{name}"));
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let mode = Mode {
        target: DISTRIBUTED,
        env: vec![
            ("KEYWARD_DATABASE_URL".into(), url.to_string()),
            ("KEYWARD_AMQP_URL".into(), amqp),
            (
                "KEYWARD_MASTER_KEY".into(),
                base64::engine::general_purpose::STANDARD.encode(key),
            ),
        ],
        database_url: Some(url.to_string()),
    };
    let side = keyward_side(args, report, &mode).await;
    let _ = server
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    side.map(Some)
}

async fn peer_side(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let secs = Duration::from_secs(args.seconds);
    let dir = procs::temp_dir("peer")?;
    let (peer, first) = procs::start_peer(&args.peer_dir, &dir).await?;
    let mut side = Side {
        first_start_ms: ms(first),
        ..Side::default()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    side.idle_rss_mib = peer.memory_kib().map_or(0.0, |(rss, _)| mib(rss));
    let base = Arc::new(peer.base.clone());
    let c = client();
    let p = "better-auth";

    // Sessions to check: one user, one sign-in per worker.
    let email = "peer@example.com";
    let r = c
        .post(format!("{base}/api/auth/sign-up/email"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Peer"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "peer sign-up: {}", r.status());
    let mut tokens = Vec::new();
    for _ in 0..8 {
        let r = c
            .post(format!("{base}/api/auth/sign-in/email"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        let token = r
            .headers()
            .get("set-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let token = token
            .or_else(|| body["token"].as_str().map(str::to_owned))
            .context("no session token in the peer's sign-in reply")?;
        tokens.push(token);
    }
    let tokens = Arc::new(tokens);

    let (cc, b, t) = (c.clone(), base.clone(), tokens.clone());
    let step: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = Arc::new(move |w, _| {
        let (c, b, t) = (cc.clone(), b.clone(), t.clone());
        Box::pin(async move {
            let r = c
                .get(format!("{b}/api/auth/get-session"))
                .bearer_auth(&t[w % t.len()])
                .send()
                .await
                .ok()?;
            let status = r.status().as_u16();
            // A 200 with `null` means no session: count it as a failure.
            let body = r.text().await.unwrap_or_default();
            Some(if status == 200 && body.trim() == "null" {
                401
            } else {
                status
            })
        })
    });
    report
        .outcomes
        .push(load::run("session check", p, 8, secs, step).await);

    let step = post_step(
        &c,
        format!("{base}/api/auth/sign-in/email"),
        |_, _| json!({"email": "peer@example.com", "password": PASSWORD}),
    );
    let half = args.seconds as f64 / 2.0;
    report
        .scrypt_hashes_per_sec
        .push(scrypt_ceiling(&args.peer_dir, half).await?);
    for conc in [8, 2, 64] {
        report
            .outcomes
            .push(load::run("login", p, conc, secs, step.clone()).await);
        if conc == 8 {
            report
                .scrypt_hashes_per_sec
                .push(scrypt_ceiling(&args.peer_dir, half).await?);
        }
    }

    let counter = AtomicU64::new(0);
    let step = post_step(&c, format!("{base}/api/auth/sign-up/email"), move |_, _| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        json!({"email": format!("new{n}@example.com"), "password": PASSWORD, "name": "N"})
    });
    report
        .outcomes
        .push(load::run("register", p, 8, secs, step).await);
    side.peak_rss_mib = peer.memory_kib().map_or(0.0, |(_, peak)| mib(peak));
    report.peer = Some(side);
    peer.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn find<'a>(r: &'a Report, scenario: &str, target: &str, conc: usize) -> Option<&'a Outcome> {
    r.outcomes
        .iter()
        .find(|o| o.scenario == scenario && o.target == target && o.concurrency == conc)
}

fn judge(r: &mut Report) {
    let k = "keyward";
    let tput =
        |r: &Report, s: &str, t: &str, c: usize| find(r, s, t, c).map_or(0.0, |o| o.throughput);
    let ceiling = if r.argon2_hashes_per_sec.is_empty() {
        0.0
    } else {
        r.argon2_hashes_per_sec.iter().sum::<f64>() / r.argon2_hashes_per_sec.len() as f64
    };
    let login8 = tput(r, "login", k, 8);
    let mut ratios = BTreeMap::new();
    ratios.insert(
        "login / argon2 ceiling".to_owned(),
        login8 / ceiling.max(1e-9),
    );
    ratios.insert(
        "verify / http floor".to_owned(),
        tput(r, "verify", k, 8) / tput(r, "http floor", k, 8).max(1e-9),
    );
    let p99 = |r: &Report, c: usize| find(r, "login", k, c).map_or(0.0, |o| o.p99_ms);
    ratios.insert(
        "login p99 c64 / c2".to_owned(),
        p99(r, 64) / p99(r, 2).max(1e-9),
    );
    for (target, prefix) in [(EMBEDDED, ""), (DISTRIBUTED, "distributed: ")] {
        if let Some(c) = r
            .store
            .get(target)
            .filter(|c| c.write_transactions_per_sec > 0.0)
        {
            ratios.insert(
                format!("{prefix}refresh / store write-transaction ceiling"),
                tput(r, "refresh", target, 8) / c.write_transactions_per_sec,
            );
        }
    }
    if r.keyward_distributed.is_some() {
        ratios.insert(
            "distributed: verify / http floor".to_owned(),
            tput(r, "verify", DISTRIBUTED, 8) / tput(r, "http floor", DISTRIBUTED, 8).max(1e-9),
        );
    }
    let embedded_store = r.store.get(EMBEDDED).copied().unwrap_or_default();
    let peer_session = tput(r, "session check", "better-auth", 8);
    if peer_session > 0.0 {
        for s in ["refresh", "me", "verify"] {
            ratios.insert(
                format!("{s} / better-auth session check"),
                tput(r, s, k, 8) / peer_session,
            );
        }
        for s in ["login", "register"] {
            let peer = tput(r, s, "better-auth", 8);
            if peer > 0.0 {
                ratios.insert(format!("{s} / better-auth"), tput(r, s, k, 8) / peer);
            }
        }
        // Each login against its own hash's ceiling: how much of its hashing capacity each
        // server turns into logins.
        let scrypt = r.scrypt_hashes_per_sec.iter().sum::<f64>()
            / (r.scrypt_hashes_per_sec.len().max(1)) as f64;
        let peer_login = tput(r, "login", "better-auth", 8);
        if scrypt > 0.0 && peer_login > 0.0 {
            ratios.insert(
                "login / better-auth, each normalised by its hash ceiling".to_owned(),
                (login8 / ceiling.max(1e-9)) / (peer_login / scrypt),
            );
            ratios.insert(
                "better-auth login / scrypt ceiling".to_owned(),
                peer_login / scrypt,
            );
        }
    }
    let login_errors = find(r, "login", k, 8).map_or(0, |o| o.error_count() + o.shed);
    let shed64 = find(r, "login", k, 64).map_or(0, |o| o.shed);
    let get = |name: &str| ratios.get(name).copied().unwrap_or(0.0);
    let mut t = vec![
        Target {
            name: "login at concurrency 8".into(),
            goal: "≥ 0.90 of the hash-only ceiling, 0 errors".into(),
            measured: format!(
                "{:.2}, {login_errors} errors",
                get("login / argon2 ceiling")
            ),
            met: get("login / argon2 ceiling") >= 0.90 && login_errors == 0,
        },
        Target {
            name: "overload is shed".into(),
            goal: "p99 at c64 ≤ 4× p99 at c2, the rest 503".into(),
            measured: format!("{:.2}×, {shed64} shed", get("login p99 c64 / c2")),
            met: get("login p99 c64 / c2") <= 4.0,
        },
        Target {
            name: "verify".into(),
            goal: "≥ 0.70 of the HTTP floor".into(),
            measured: format!("{:.2}", get("verify / http floor")),
            met: get("verify / http floor") >= 0.70,
        },
    ];
    if peer_session > 0.0 {
        for s in ["refresh", "me"] {
            let v = get(&format!("{s} / better-auth session check"));
            // A refresh is a durable write: the store's write ceiling bounds it.
            let bound = if s == "refresh" && embedded_store.write_transactions_per_sec > 0.0 {
                format!(
                    " (the store's write-transaction ceiling: {:.1}×; group commit's writes alone: {:.1}×)",
                    embedded_store.write_transactions_per_sec / peer_session,
                    embedded_store.batched_rotations_per_sec / peer_session
                )
            } else {
                String::new()
            };
            t.push(Target {
                name: format!("{s} vs better-auth session check"),
                goal: "≥ 20×".into(),
                measured: format!("{v:.1}×{bound}"),
                met: v >= 20.0,
            });
        }
    }
    t.push(Target {
        name: "idle RSS".into(),
        goal: "≤ 30 MB".into(),
        measured: format!("{:.1} MiB", r.keyward.idle_rss_mib),
        met: r.keyward.idle_rss_mib * 1.048_576 <= 30.0,
    });
    t.push(Target {
        name: "peak RSS under load".into(),
        goal: "≤ 150 MB".into(),
        measured: format!("{:.1} MiB", r.keyward.peak_rss_mib),
        met: r.keyward.peak_rss_mib * 1.048_576 <= 150.0,
    });
    t.push(Target {
        name: "cold start to ready (median of 5)".into(),
        goal: "≤ 300 ms".into(),
        measured: format!("{:.0} ms", r.keyward.cold_start_median_ms),
        met: r.keyward.cold_start_median_ms <= 300.0,
    });
    r.ratios = ratios;
    r.targets = t;
}

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("| scenario | target | concurrency | req/s | p50 ms | p95 ms | p99 ms | 503 shed | errors |\n|---|---|---|---|---|---|---|---|---|\n");
    for o in &r.outcomes {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            o.scenario,
            o.target,
            o.concurrency,
            o.throughput,
            o.p50_ms,
            o.p95_ms,
            o.p99_ms,
            o.shed,
            o.error_count()
        ));
    }
    s.push_str("\n| ratio | value |\n|---|---|\n");
    for (k, v) in &r.ratios {
        s.push_str(&format!("| {k} | {v:.2} |\n"));
    }
    s.push_str(&format!(
        "\nargon2id hash-only ceiling (m=19456 KiB, t=2, p=1, all cores): {} hashes/s\n",
        r.argon2_hashes_per_sec
            .iter()
            .map(|h| format!("{h:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    ));
    for (target, c) in &r.store {
        s.push_str(&format!(
            "store ceilings of {target} (Keyward's store on the node's database, concurrency 8): {:.0} one-statement reads/s, {:.0} one-statement write transactions/s; group commit of refresh's writes, {} per transaction: {:.0} rotations/s\n",
            c.reads_per_sec,
            c.write_transactions_per_sec,
            ceilings::ROTATION_BATCH,
            c.batched_rotations_per_sec
        ));
    }
    if !r.scrypt_hashes_per_sec.is_empty() {
        s.push_str(&format!(
            "scrypt hash-only ceiling (better-auth's hashPassword: N=16384, r=16, p=1, libuv pool): {} hashes/s\n",
            r.scrypt_hashes_per_sec
                .iter()
                .map(|h| format!("{h:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    s.push_str("\n| | Keyward | Keyward (distributed) | better-auth |\n|---|---|---|---|\n");
    let (dist, peer) = (r.keyward_distributed.as_ref(), r.peer.as_ref());
    let cell =
        |v: Option<f64>, unit: &str| v.map_or("–".to_owned(), |v| format!("{v:.1} {unit}"));
    type Row = (&'static str, fn(&Side) -> f64, &'static str);
    let rows: [Row; 4] = [
        ("idle RSS", |x| x.idle_rss_mib, "MiB"),
        ("peak RSS", |x| x.peak_rss_mib, "MiB"),
        ("first start to ready", |x| x.first_start_ms, "ms"),
        (
            "cold start to ready (median of 5)",
            |x| x.cold_start_median_ms,
            "ms",
        ),
    ];
    for (name, get, unit) in rows {
        // The peer is started once: it has no median of several starts.
        let p = peer.filter(|_| !name.starts_with("cold")).map(get);
        s.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            cell(Some(get(&r.keyward)), unit),
            cell(dist.map(get), unit),
            cell(p, unit)
        ));
    }
    s.push_str("\n| target | goal | measured | met |\n|---|---|---|---|\n");
    for t in &r.targets {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.name,
            t.goal,
            t.measured,
            if t.met { "yes" } else { "**no**" }
        ));
    }
    s
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut report = Report {
        seconds_per_scenario: args.seconds,
        ..Report::default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    report.machine.insert("cpu".into(), cpu);
    report.machine.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
    );
    let embedded = Mode {
        target: EMBEDDED,
        env: Vec::new(),
        database_url: None,
    };
    report.keyward = keyward_side(&args, &mut report, &embedded).await?;
    report.keyward_distributed = distributed_side(&args, &mut report).await?;
    if !args.no_peer {
        if let Err(e) = peer_side(&args, &mut report).await {
            eprintln!("peer: {e:#}");
            report.machine.insert("peer_error".into(), format!("{e:#}"));
        }
    }
    judge(&mut report);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("latest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(args.out.join("latest.md"), &md)?;
    println!("{md}");
    Ok(())
}
