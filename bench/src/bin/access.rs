//! The access benchmark (docs/PERFORMANCE.md, "Access"): forward-auth with `?permission=` and
//! the check API, over many distinct users and tokens, against the HTTP floor of the same run;
//! and, with PostgreSQL and RabbitMQ, the time from a revoke on node A to a refusal on node B.
//!
//! Users are written straight to the node's database (verified, with roles; their password
//! hash uses cheap argon2 parameters, which the node is told too, so the logins that fetch
//! their tokens do not dominate the setup). Every request then goes through HTTP.

#[path = "../load.rs"]
#[allow(dead_code)]
mod load;
#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "../seed.rs"]
mod seed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keyward_storage::Store;
use load::{Outcome, Step};
use seed::{client, load_users, status, sub_of, tokens, PASSWORD};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Access benchmark: forward-auth ?permission= and the check API")]
struct Args {
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    /// Distinct users, each with a token of their own.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Seconds per scenario and concurrency, over all rounds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The scenarios run in this many interleaved rounds (floor, forward-auth, …, floor, …),
    /// so the machine's drift over a run reaches the floor and the scenarios alike.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
    /// PostgreSQL instead of SQLite (a database URL the node may use).
    #[arg(long)]
    database_url: Option<String>,
    /// With --database-url: RabbitMQ, for the revocation timing across two nodes.
    #[arg(long)]
    amqp_url: Option<String>,
    /// Revocations timed across the two nodes.
    #[arg(long, default_value_t = 30)]
    revocations: usize,
}

/// A spread of `n` indexes: each worker walks its own stride, so consecutive requests carry
/// other users' tokens.
fn pick(n: usize, w: usize, i: u64) -> usize {
    ((i as usize).wrapping_mul(7919).wrapping_add(w * 104_729)) % n
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = procs::temp_dir("keyward-access-bench")?;
    let env = seed::cheap_env(args.database_url.as_deref(), args.amqp_url.as_deref());
    let (node, _) = procs::start_keyward(&args.keyward, &data, &env).await?;
    let base = node.base.clone();
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/keyward.db?mode=rwc", data.display()));
    let store = Store::connect(&url).await?;
    let t = Instant::now();
    let emails = load_users(&store, args.users).await?;
    eprintln!(
        "{} users written in {:.1} s",
        emails.len(),
        t.elapsed().as_secs_f64()
    );
    let c = client();
    let t = Instant::now();
    let toks: Vec<String> = tokens(&c, &base, &emails, 8)
        .await?
        .into_iter()
        .map(|(access, _)| access)
        .collect();
    let toks = Arc::new(toks);
    let ids: Arc<Vec<String>> = Arc::new(toks.iter().map(|t| sub_of(t)).collect());
    eprintln!(
        "{} logins in {:.1} s",
        toks.len(),
        t.elapsed().as_secs_f64()
    );

    // A service client with access:check, as a product's service would have.
    let client_token =
        Arc::new(seed::client_token(&args.keyward, &data, &env, &c, &base, "access:check").await?);
    // The relay publishes the logins' events after they returned: the scenarios start once
    // it is done, so none of them shares the node with that catch-up.
    let drained = seed::outbox_drained(&store, Duration::from_secs(600)).await?;
    eprintln!(
        "waited {:.1} s more for the relay to publish the setup's events",
        drained.as_secs_f64()
    );

    let n = toks.len();
    let secs = Duration::from_secs(args.seconds);
    let mut outcomes: Vec<Outcome> = Vec::new();
    // The node's and the harness's own CPU per answered request, per outcome: on 2 shared
    // cores the "of floor" share also carries the harness's cost of each request.
    let mut cpu_per_request: Vec<(f64, f64)> = Vec::new();
    // One unmeasured pass over every token: the node verifies each signature once and reads
    // each user's grants once, as it would over a day. (Before session 32 the pass asked no
    // permission, so the first measured round of forward-auth read 10,000 users' grants.)
    let warm: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = {
        let (c, b, toks) = (c.clone(), base.clone(), toks.clone());
        Arc::new(move |w, i| {
            let (c, b, toks) = (c.clone(), b.clone(), toks.clone());
            Box::pin(async move {
                let k = (w + 8 * i as usize) % toks.len();
                let s = status(
                    c.get(format!("{b}/v1/auth/verify?permission=events:write"))
                        .bearer_auth(&toks[k])
                        .send()
                        .await,
                )
                .await;
                s.map(|s| if s == 403 && k % 2 == 1 { 200 } else { s })
            })
        })
    };
    load::run(
        "warm-up",
        "keyward",
        8,
        Duration::from_secs(((n / 2000) as u64).max(2)),
        warm,
    )
    .await;

    for &conc in &args.concurrency {
        let mut scenarios: Vec<(String, load::StepFn)> =
            vec![("http floor".to_owned(), load::floor(&c, &base))];

        let fa: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = {
            let (c, b, toks) = (c.clone(), base.clone(), toks.clone());
            Arc::new(move |w, i| {
                let (c, b, toks) = (c.clone(), b.clone(), toks.clone());
                Box::pin(async move {
                    let k = pick(toks.len(), w, i);
                    // Even users hold organizer: both answers are measured, 200 and 403.
                    let s = status(
                        c.get(format!("{b}/v1/auth/verify?permission=events:write"))
                            .bearer_auth(&toks[k])
                            .send()
                            .await,
                    )
                    .await;
                    s.map(|s| if s == 403 && k % 2 == 1 { 200 } else { s })
                })
            })
        };
        scenarios.push((
            format!("forward-auth ?permission ({n} users, own tokens)"),
            fa,
        ));

        let one: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = {
            let (c, b, toks) = (c.clone(), base.clone(), toks.clone());
            Arc::new(move |_, _| {
                let (c, b, toks) = (c.clone(), b.clone(), toks.clone());
                Box::pin(async move {
                    status(
                        c.get(format!("{b}/v1/auth/verify?permission=events:write"))
                            .bearer_auth(&toks[0])
                            .send()
                            .await,
                    )
                    .await
                })
            })
        };
        scenarios.push((
            "forward-auth ?permission (one repeated token: cache best case)".to_owned(),
            one,
        ));

        let bodies = seed::check_bodies(&ids);
        let check: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = {
            let (c, b, bodies, tok) = (c.clone(), base.clone(), bodies, client_token.clone());
            Arc::new(move |w, i| {
                let (c, b, bodies, tok) = (c.clone(), b.clone(), bodies.clone(), tok.clone());
                Box::pin(async move {
                    let k = pick(bodies.len(), w, i);
                    status(
                        c.post(format!("{b}/v1/access/check"))
                            .bearer_auth(tok.as_str())
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(bodies[k].clone())
                            .send()
                            .await,
                    )
                    .await
                })
            })
        };
        scenarios.push((format!("check API, a client asks about {n} users"), check));
        let rounds = args.rounds.max(1);
        let mut samples: Vec<load::Samples> =
            scenarios.iter().map(|_| Default::default()).collect();
        let mut node_cpu = vec![Duration::ZERO; scenarios.len()];
        let mut own_cpu = vec![Duration::ZERO; scenarios.len()];
        for round in 1..=rounds {
            for (i, (name, step)) in scenarios.iter().enumerate() {
                // A line per scenario, so a profiler beside the run can cut its record there.
                eprintln!("round {round}/{rounds}: {name}, concurrency {conc}");
                let (before, own) = (node.cpu(), procs::cpu_of("self"));
                samples[i].add(load::sample(conc, secs / rounds, step.clone()).await);
                if let (Some(a), Some(b)) = (before, node.cpu()) {
                    node_cpu[i] += b.saturating_sub(a);
                }
                if let (Some(a), Some(b)) = (own, procs::cpu_of("self")) {
                    own_cpu[i] += b.saturating_sub(a);
                }
            }
        }
        for ((((name, _), seen), cpu), own) in
            scenarios.iter().zip(samples).zip(node_cpu).zip(own_cpu)
        {
            let o = seen.outcome(name, "keyward", conc);
            let answered = o.ok + o.shed + o.error_count();
            let per = |d: Duration| d.as_secs_f64() * 1e6 / answered.max(1) as f64;
            cpu_per_request.push((per(cpu), per(own)));
            outcomes.push(o);
        }
    }

    let mut md = String::from("| scenario | concurrency | req/s | of floor | p50 ms | p99 ms | errors | node CPU µs/request | harness CPU µs/request |\n|---|---|---|---|---|---|---|---|---|\n");
    for (o, (cpu, own)) in outcomes.iter().zip(&cpu_per_request) {
        let floor = outcomes
            .iter()
            .find(|f| f.scenario == "http floor" && f.concurrency == o.concurrency)
            .map_or(1.0, |f| f.throughput.max(1e-9));
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} |\n",
            o.scenario,
            o.concurrency,
            o.throughput,
            o.throughput / floor,
            o.p50_ms,
            o.p99_ms,
            o.error_count(),
            cpu,
            own
        ));
    }
    println!("{md}");

    if args.amqp_url.is_some() && args.database_url.is_some() {
        revocations(&args, &data, &env, &base, &c, &ids, &toks).await?;
    }
    node.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Grants and revokes `organizer` of one user on node A, and times how long node B (same
/// database and broker) keeps answering forward-auth as before, polling every 2 ms.
async fn revocations(
    args: &Args,
    data: &std::path::Path,
    env: &[(String, String)],
    base_a: &str,
    c: &reqwest::Client,
    ids: &[String],
    toks: &[String],
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    // NOTE: nodes behind one load balancer share the issuer: B takes A's URL as its own.
    let mut env_b = env.to_vec();
    env_b.push(("KEYWARD_PUBLIC_URL".to_owned(), base_a.to_owned()));
    let (node_b, _) = procs::start_keyward(&args.keyward, data, &env_b).await?;
    let mut child = tokio::process::Command::new(&args.keyward)
        .args([
            "admin",
            "create-user",
            "--email",
            "root@bench.test",
            "--password-stdin",
            "--role",
            "admin",
        ])
        .env("KEYWARD_DATA_DIR", data)
        .env("KEYWARD_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(PASSWORD.as_bytes()).await?;
    }
    anyhow::ensure!(child.wait().await?.success(), "create-user root failed");
    let r: Value = c
        .post(format!("{base_a}/v1/auth/login"))
        .json(&json!({"login": "root@bench.test", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let root = r["access_token"].as_str().context("root login")?.to_owned();
    // An odd user: attendee only, so organizer comes and goes with the grant.
    let (user, token) = (&ids[1], &toks[1]);
    let on_b = |want: u16| {
        let (c, b, token) = (c.clone(), node_b.base.clone(), token.clone());
        async move {
            let t = Instant::now();
            loop {
                let s = c
                    .get(format!("{b}/v1/auth/verify?permission=events:write"))
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
    let mut took = Vec::new();
    for _ in 0..args.revocations {
        let path = format!("{base_a}/v1/admin/users/{user}/roles/organizer");
        let r = c.put(&path).bearer_auth(&root).send().await?;
        anyhow::ensure!(
            r.status().is_success(),
            "grant: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        let (granted, _) = on_b(200).await;
        anyhow::ensure!(granted, "B never saw the grant");
        let r = c.delete(&path).bearer_auth(&root).send().await?;
        anyhow::ensure!(
            r.status().is_success(),
            "revoke: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        let (refused, t) = on_b(403).await;
        anyhow::ensure!(refused, "B never refused the revoked role");
        took.push(t.as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    println!(
        "revocation on A refused on B: {} runs, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took.len(),
        took[took.len() / 2],
        took[(took.len() * 99 / 100).min(took.len() - 1)],
        took[took.len() - 1]
    );
    node_b.stop().await;
    Ok(())
}
