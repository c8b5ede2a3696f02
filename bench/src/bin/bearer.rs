//! The bearer benchmark (docs/PERFORMANCE.md, "Bearer requests at scale"): forward-auth,
//! `GET /v1/users/me` and the check API over 10,000 and 100,000 distinct live sessions, each
//! request carrying another session's token (uniform and Zipf-distributed use), beside the
//! repeated-token rows and the HTTP floor of the same run; the node's RSS at each size; and,
//! with PostgreSQL and RabbitMQ, how long a session revoked on node A is still accepted by a
//! node B that hears `keyward.broadcast` and by one that lost it.
//!
//! Each size gets a fresh node. Users are written straight to its database (two sessions
//! each, as a phone and a laptop would hold); the sessions are opened by logging in through
//! HTTP.

#[path = "../ceilings.rs"]
#[allow(dead_code)]
mod ceilings;
#[path = "../load.rs"]
#[allow(dead_code)]
mod load;
#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "../seed.rs"]
#[allow(dead_code)]
mod seed;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keyward_storage::Store;
use load::{Outcome, Step};
use seed::{client, load_users, status, sub_of, tokens};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Bearer benchmark: many live sessions, forward-auth, me and the check API")]
struct Args {
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    /// Live sessions per run, one fresh node each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sessions: Vec<usize>,
    /// Sessions each user holds.
    #[arg(long, default_value_t = 2)]
    sessions_per_user: usize,
    /// Seconds per scenario, over all rounds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The steady-state scenarios (the floor, own tokens, the check API, repeated tokens) run
    /// in this many interleaved rounds, so the machine's drift over a run reaches the floor
    /// and the scenarios alike.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Clients of the second refresh scenario: every client at once, after a deploy.
    #[arg(long, default_value_t = 64)]
    stampede: usize,
    /// The Zipf exponent of the skewed scenarios.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// PostgreSQL instead of SQLite: a URL that may create databases (each size gets one).
    #[arg(long)]
    database_url: Option<String>,
    /// With --database-url: RabbitMQ (distributed mode), and the revocation timing.
    #[arg(long)]
    amqp_url: Option<String>,
    /// A rabbitmqctl for the broker of --amqp-url, to make node B's user unable to read
    /// keyward.broadcast (scripts/services.sh exports it).
    #[arg(long, env = "KEYWARD_TEST_RABBITMQCTL")]
    rabbitmqctl: Option<String>,
    /// Revocations timed across the nodes.
    #[arg(long, default_value_t = 30)]
    revocations: usize,
    /// Only these groups of scenarios (the floor always runs): floors (the unknown path's
    /// floor of earlier runs beside it), passes, bearer, check, repeated, refresh. All when
    /// not given.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Args {
    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// SplitMix64: a well-spread 64-bit value from a seed, so each (worker, iteration) draws its
/// own without shared state.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(w: usize, i: u64) -> f64 {
    (mix(((w as u64) << 48) ^ i) >> 11) as f64 / (1u64 << 53) as f64
}

/// How requests pick among `n` sessions or users.
#[derive(Clone)]
enum Pick {
    /// Request `i` draws rank `i`: every one once in a pass of `n`.
    Every(usize),
    Uniform(usize),
    /// Cumulative weights of ranks 1..=n under Zipf(s), normalised to 1.
    Zipf(Arc<Vec<f64>>),
}

impl Pick {
    fn zipf(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self::Zipf(Arc::new(cdf))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Every(_) => "each once",
            Self::Uniform(_) => "uniform",
            Self::Zipf(_) => "Zipf",
        }
    }

    fn index(&self, w: usize, i: u64) -> usize {
        let u = unit(w, i);
        let (rank, n) = match self {
            Self::Every(n) => (i as usize % n, *n),
            Self::Uniform(n) => (((u * *n as f64) as usize).min(n - 1), *n),
            Self::Zipf(cdf) => (
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1),
                cdf.len(),
            ),
        };
        // Ranks spread over the sessions, so the popular ones are not one user's.
        (rank * 7919) % n
    }
}

struct Sized {
    sessions: usize,
    outcomes: Vec<Outcome>,
    rss_mib: (f64, f64),
    /// Per refresh scenario: its clients, rotations per second, and group commit alone on
    /// the node's database with as many rotations per transaction.
    refreshes: Vec<(usize, f64, f64)>,
}

/// Sends `step(_, i)` once for each `i` below `n` (with [`Pick::Every`], every session or
/// user once): throughput and latency of a pass over everything.
async fn once(
    scenario: &str,
    n: usize,
    concurrency: usize,
    step: Arc<dyn Fn(usize, u64) -> Step + Send + Sync>,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (step, next) = (step.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n {
                        return (lat, statuses);
                    }
                    let t = Instant::now();
                    let s = step(usize::MAX, k as u64).await.unwrap_or(0);
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    *statuses.entry(s).or_default() += 1;
                }
            })
        })
        .collect();
    let (mut lat, mut statuses) = (Vec::new(), std::collections::BTreeMap::<u16, u64>::new());
    for task in tasks {
        if let Ok((l, s)) = task.await {
            lat.extend(l);
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let at = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let ok = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    Outcome {
        scenario: scenario.to_owned(),
        target: "keyward".to_owned(),
        concurrency,
        seconds,
        ok,
        shed: statuses.get(&503).copied().unwrap_or(0),
        errors: statuses
            .into_iter()
            .filter(|(s, _)| !(200..300).contains(s) && *s != 503)
            .collect(),
        throughput: ok as f64 / seconds,
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode = if args.amqp_url.is_some() {
        "distributed (PostgreSQL, RabbitMQ)"
    } else if args.database_url.is_some() {
        "embedded on PostgreSQL"
    } else {
        "embedded (SQLite)"
    };
    let mut runs = Vec::new();
    for &n in &args.sessions {
        runs.push(run_size(&args, n).await?);
    }
    println!(
        "\nmode: {mode}; concurrency {}; {} s per scenario\n",
        args.concurrency, args.seconds
    );
    println!("| sessions | scenario | req/s | of floor | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    for r in &runs {
        let floor = r
            .outcomes
            .iter()
            .find(|o| o.scenario == "http floor")
            .map_or(1.0, |f| f.throughput.max(1e-9));
        for o in &r.outcomes {
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                r.sessions,
                o.scenario,
                o.throughput,
                o.throughput / floor,
                o.p50_ms,
                o.p99_ms,
                o.error_count() + o.shed
            );
        }
    }
    for r in &runs {
        println!(
            "RSS with {} live sessions, after every bearer scenario: {:.0} MiB (peak {:.0} MiB)",
            r.sessions, r.rss_mib.0, r.rss_mib.1
        );
        for (clients, rate, bound) in &r.refreshes {
            println!(
                "refresh with {} sessions, {clients} clients: {rate:.0} rotations/s; group commit of refresh's writes alone ({clients} per transaction) on the same database: {bound:.0}/s; ratio {:.2}",
                r.sessions,
                rate / bound.max(1e-9)
            );
        }
    }
    Ok(())
}

/// A new database on the server of `admin` (a URL that may create databases), so each size
/// starts from nothing; its URL.
async fn fresh_database(admin: &str) -> anyhow::Result<String> {
    use sea_orm::{ConnectionTrait, Database};
    let name = format!("keyward_bearer_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(admin).context("--database-url")?;
    Database::connect(admin)
        .await?
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

async fn run_size(args: &Args, n: usize) -> anyhow::Result<Sized> {
    let data = procs::temp_dir("keyward-bearer-bench")?;
    let database_url = match &args.database_url {
        Some(admin) => Some(fresh_database(admin).await?),
        None => None,
    };
    let env = seed::cheap_env(database_url.as_deref(), args.amqp_url.as_deref());
    let (node, _) = procs::start_keyward(&args.keyward, &data, &env).await?;
    let base = node.base.clone();
    let url = database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/keyward.db?mode=rwc", data.display()));
    let store = Store::connect(&url).await?;
    let users = n.div_ceil(args.sessions_per_user.max(1));
    let t = Instant::now();
    let emails = load_users(&store, users).await?;
    eprintln!(
        "{users} users written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let logins: Vec<String> = (0..n).map(|i| emails[i % users].clone()).collect();
    let c = client();
    let t = Instant::now();
    let (toks, refresh): (Vec<String>, Vec<String>) =
        tokens(&c, &base, &logins, 16).await?.into_iter().unzip();
    let toks = Arc::new(toks);
    let refresh: Arc<Vec<tokio::sync::Mutex<String>>> =
        Arc::new(refresh.into_iter().map(tokio::sync::Mutex::new).collect());
    eprintln!("{n} sessions opened in {:.1} s", t.elapsed().as_secs_f64());
    let mut ids: Vec<String> = toks.iter().take(users).map(|t| sub_of(t)).collect();
    ids.dedup();
    let ids = Arc::new(ids);
    // NOTE: a client's token lives 5 minutes; each sample below starts with a fresh one, so a
    // long run does not measure 401s.
    let (client_id, client_secret) =
        seed::create_client(&args.keyward, &data, &env, "access:check").await?;
    // NOTE: a service keeps its token's header and writes a small body; the harness makes
    // each once (per token, per user), so a check's sample pays for the request, not for the
    // harness building JSON.
    let bearer_header = |token: &str| -> anyhow::Result<reqwest::header::HeaderValue> {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
        v.set_sensitive(true);
        Ok(v)
    };
    // The relay publishes the setup's login events (one per session) after the logins
    // returned; the scenarios start once it is done, so none of them measures that catch-up.
    let drained = seed::outbox_drained(&store, Duration::from_secs(600)).await?;
    eprintln!(
        "waited {:.1} s more for the relay to publish the setup's events",
        drained.as_secs_f64()
    );
    let client_token = Arc::new(std::sync::RwLock::new(bearer_header(
        &seed::token_of_client(&c, &base, &client_id, &client_secret).await?,
    )?));
    let check_bodies = seed::check_bodies(&ids);

    let secs = Duration::from_secs(args.seconds);
    let conc = args.concurrency;
    let mut outcomes = Vec::new();

    let bearer =
        |path: &'static str, pick: Pick| -> Arc<dyn Fn(usize, u64) -> Step + Send + Sync> {
            let (c, b, toks) = (c.clone(), base.clone(), toks.clone());
            Arc::new(move |w, i| {
                let (c, b, toks) = (c.clone(), b.clone(), toks.clone());
                let k = pick.index(w, i);
                Box::pin(async move {
                    status(
                        c.get(format!("{b}{path}"))
                            .bearer_auth(&toks[k])
                            .send()
                            .await,
                    )
                    .await
                })
            })
        };
    let check = |pick: Pick| -> Arc<dyn Fn(usize, u64) -> Step + Send + Sync> {
        let (c, b, bodies, tok) = (
            c.clone(),
            base.clone(),
            check_bodies.clone(),
            client_token.clone(),
        );
        Arc::new(move |w, i| {
            let (c, b) = (c.clone(), b.clone());
            let body = bodies[pick.index(w, i)].clone();
            let auth = tok.read().map(|t| t.clone()).ok();
            Box::pin(async move {
                status(
                    c.post(format!("{b}/v1/access/check"))
                        .header(reqwest::header::AUTHORIZATION, auth?)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await,
                )
                .await
            })
        })
    };
    // Every token (and every user) once, in order: what a node that just started pays, and
    // the steady state the scenarios after it measure.
    let mut first_passes = Vec::new();
    if args.runs("passes") {
        for (name, path) in [("forward-auth", "/v1/auth/verify"), ("me", "/v1/users/me")] {
            let scenario = format!("{name}, first request of each of {n} tokens");
            first_passes.push(once(&scenario, n, conc, bearer(path, Pick::Every(n))).await);
        }
        let scenario = format!("check API, first request about each of {} users", ids.len());
        first_passes.push(once(&scenario, ids.len(), conc, check(Pick::Every(ids.len()))).await);
    }

    let mut steady: Vec<(String, load::StepFn)> =
        vec![("http floor".to_owned(), load::floor(&c, &base))];
    if args.runs("floors") {
        let scenario = "http floor before session 23: an unknown path (404)".to_owned();
        steady.push((scenario, load::unknown_path_floor(&c, &base)));
    }
    for pick in [Pick::Uniform(n), Pick::zipf(n, args.zipf)] {
        let d = pick.name();
        for (name, path) in [("forward-auth", "/v1/auth/verify"), ("me", "/v1/users/me")] {
            if args.runs("bearer") {
                let scenario = format!("{name}, {n} sessions' own tokens, {d}");
                steady.push((scenario, bearer(path, pick.clone())));
            }
        }
        let users_pick = match pick {
            Pick::Zipf(_) => Pick::zipf(ids.len(), args.zipf),
            _ => Pick::Uniform(ids.len()),
        };
        if args.runs("check") {
            let scenario = format!("check API, a client asks about {} users, {d}", ids.len());
            steady.push((scenario, check(users_pick)));
        }
    }
    for (name, path) in [("forward-auth", "/v1/auth/verify"), ("me", "/v1/users/me")] {
        if args.runs("repeated") {
            let scenario = format!("{name}, one repeated token (the cache's best case)");
            steady.push((scenario, bearer(path, Pick::Uniform(1))));
        }
    }
    let rounds = args.rounds.max(1);
    let mut samples: Vec<load::Samples> = steady.iter().map(|_| Default::default()).collect();
    for round in 1..=rounds {
        for ((name, step), seen) in steady.iter().zip(&mut samples) {
            eprintln!("round {round}/{rounds}: {name}");
            let fresh = seed::token_of_client(&c, &base, &client_id, &client_secret).await?;
            let fresh = bearer_header(&fresh)?;
            if let Ok(mut t) = client_token.write() {
                *t = fresh;
            }
            seen.add(load::sample(conc, secs / rounds, step.clone()).await);
        }
    }
    let mut measured = steady
        .iter()
        .zip(samples)
        .map(|((name, _), seen)| seen.outcome(name, "keyward", conc));
    // The floor first, then the first passes, then the rest in their order.
    outcomes.extend(measured.next());
    outcomes.extend(first_passes);
    outcomes.extend(measured);
    let (rss, peak) = node.memory_kib().unwrap_or((0, 0));

    // Every client refreshing at once (after a deploy or an outage): each request rotates
    // another session's refresh token and keeps its successor for that session's next turn.
    // At the harness's concurrency, then with a stampede of clients; each against group
    // commit alone with as many rotations per transaction as clients, measured after both
    // (it rotates tokens the clients still hold).
    let mut refreshes = Vec::new();
    if args.runs("refresh") {
        for clients in [conc, args.stampede] {
            let pick = Pick::Uniform(n);
            let rotate = load::refresh(&c, &base, refresh.clone(), move |w, i| pick.index(w, i));
            let scenario = format!(
                "refresh, {n} sessions rotating their own tokens, uniform, {clients} clients"
            );
            let o = load::run(&scenario, "keyward", clients, secs, rotate).await;
            if o.error_count() + o.shed > 0 {
                eprintln!("{scenario}: errors {:?}, shed {}", o.errors, o.shed);
            }
            refreshes.push((clients, o.throughput, 0.0));
            outcomes.push(o);
        }
        for (clients, _, bound) in &mut refreshes {
            *bound = ceilings::batched_rotations(&url, Duration::from_secs(5), *clients).await?;
        }
    }

    if let (Some(amqp), Some(ctl)) = (&args.amqp_url, &args.rabbitmqctl) {
        if Some(&n) == args.sessions.last() {
            revocations(args, &data, &env, &base, &c, &logins, amqp, ctl).await?;
        }
    }
    node.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(Sized {
        sessions: n,
        outcomes,
        rss_mib: (rss as f64 / 1024.0, peak as f64 / 1024.0),
        refreshes,
    })
}

/// Starts node B twice (same database and broker, A's issuer): once as usual, once as a
/// broker user that may not read `keyward.broadcast` (its consumer never binds, as with a
/// lost link). Each revocation opens a session on A, has both B nodes accept it, logs it out
/// on A, and times how long each B still accepts it, polling every 2 ms.
#[allow(clippy::too_many_arguments)]
async fn revocations(
    args: &Args,
    data: &std::path::Path,
    env: &[(String, String)],
    base_a: &str,
    c: &reqwest::Client,
    logins: &[String],
    amqp: &str,
    ctl: &str,
) -> anyhow::Result<()> {
    let (scheme, rest) = amqp.split_once("://").context("AMQP URL has a scheme")?;
    let (host, vhost) = rest
        .rsplit_once('@')
        .map_or(rest, |(_, h)| h)
        .split_once('/')
        .context("AMQP URL has a vhost")?;
    let vhost_name = url::form_urlencoded::parse(format!("v={vhost}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let user = format!("kw_bench_deaf_{}", uuid::Uuid::new_v4().simple());
    for cmd in [
        vec!["-q", "add_user", &user, "deaf"],
        vec![
            "-q",
            "set_permissions",
            "-p",
            &vhost_name,
            &user,
            ".*",
            ".*",
            "^(?!keyward\\.broadcast$).*",
        ],
    ] {
        let out = tokio::process::Command::new(ctl)
            .args(&cmd)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "rabbitmqctl {cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut env_b = env.to_vec();
    env_b.push(("KEYWARD_PUBLIC_URL".to_owned(), base_a.to_owned()));
    let (hearing, _) = procs::start_keyward(&args.keyward, data, &env_b).await?;
    env_b.retain(|(k, _)| k != "KEYWARD_AMQP_URL");
    env_b.push((
        "KEYWARD_AMQP_URL".to_owned(),
        format!("{scheme}://{user}:deaf@{host}/{vhost}"),
    ));
    let (deaf, _) = procs::start_keyward(&args.keyward, data, &env_b).await?;
    let accepted = |b: String, token: String, want: u16| {
        let c = c.clone();
        async move {
            let t = Instant::now();
            loop {
                let s = c
                    .get(format!("{b}/v1/auth/verify"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if s == want || t.elapsed() > Duration::from_secs(10) {
                    return (s == want, t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..args.revocations {
        let login = &logins[r % logins.len()];
        let pair: serde_json::Value = c
            .post(format!("{base_a}/v1/auth/login"))
            .json(&json!({"login": login, "password": seed::PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let token = pair["access_token"].as_str().context("login")?.to_owned();
        for b in [&hearing.base, &deaf.base] {
            let (ok, _) = accepted(b.clone(), token.clone(), 200).await;
            anyhow::ensure!(ok, "node B refused a live session");
        }
        let out = c
            .post(format!("{base_a}/v1/auth/logout"))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(out.status().as_u16() == 204, "logout: {}", out.status());
        let (h, d) = tokio::join!(
            accepted(hearing.base.clone(), token.clone(), 401),
            accepted(deaf.base.clone(), token.clone(), 401)
        );
        anyhow::ensure!(h.0 && d.0, "a node B never refused the revoked session");
        with.push(h.1.as_secs_f64() * 1000.0);
        without.push(d.1.as_secs_f64() * 1000.0);
    }
    for (name, v) in [
        ("hears keyward.broadcast", &mut with),
        ("lost keyward.broadcast", &mut without),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "logout on A still accepted by a node B that {name}: {} runs, p50 {:.1} ms, max {:.1} ms",
            v.len(),
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    hearing.stop().await;
    deaf.stop().await;
    Ok(())
}
