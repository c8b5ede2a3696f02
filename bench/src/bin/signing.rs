//! The signing benchmark (docs/PERFORMANCE.md, "Signing: local keys and Vault Transit"):
//! access tokens signed per second with the local backend and with Vault/OpenBao Transit.
//!
//! 1. In process: `KeyRing::sign` from `c` concurrent tasks for `--seconds`, each token with
//!    its own claims (another `sub` and `jti` each time), local keys against Transit (batched).
//! 2. Through HTTP, against a node of each backend, beside the same node's HTTP floor:
//!    `POST /v1/oauth/token` (client_credentials; one service client asks again and again: its
//!    throttle rows are read each time and its record comes from the node's cache, so the
//!    signature is most of the work that differs between the two nodes), and
//!    `POST /v1/auth/refresh` (each worker rotates the chains of its own 25 users' sessions:
//!    a durable write and a signature each).
//!
//! Run under `scripts/services.sh openbao -- …` (it exports KEYWARD_TEST_VAULT_ADDR and _TOKEN).

#[path = "../load.rs"]
#[allow(dead_code)]
mod load;
#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "../seed.rs"]
#[allow(dead_code)]
mod seed;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keyward_actors::keys::{KeyRing, Keys};
use load::{Outcome, Step};

#[derive(Parser)]
#[command(about = "Signing benchmark: local keys against Vault Transit")]
struct Args {
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrency levels of the in-process scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Concurrency of the HTTP scenarios.
    #[arg(long, default_value_t = 8)]
    http_concurrency: usize,
    #[arg(long, env = "KEYWARD_TEST_VAULT_ADDR")]
    vault_addr: String,
    #[arg(long, env = "KEYWARD_TEST_VAULT_TOKEN", hide_env_values = true)]
    vault_token: String,
    /// Where the Markdown table goes.
    #[arg(long, default_value = "bench/results/signing.md")]
    out: PathBuf,
    /// The Vault or OpenBao server's process, to read the CPU it spends per signature.
    #[arg(long)]
    vault_pid: Option<u32>,
}

fn vault_env(args: &Args, key: &str) -> Vec<(String, String)> {
    [
        ("KEYWARD_KEYS__BACKEND", "vault"),
        ("KEYWARD_KEYS__VAULT_ADDR", args.vault_addr.as_str()),
        ("KEYWARD_KEYS__VAULT_TOKEN", args.vault_token.as_str()),
        ("KEYWARD_KEYS__VAULT_KEY", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A key ring of `backend` on a fresh SQLite store in `dir`.
async fn ring(dir: &Path, env: &[(String, String)]) -> anyhow::Result<Arc<KeyRing>> {
    let mut settings = keyward_config::Settings {
        data_dir: dir.to_owned(),
        database_url: format!("sqlite://{}/keyward.db?mode=rwc", dir.display()),
        ..Default::default()
    };
    for (k, v) in env {
        match k.as_str() {
            "KEYWARD_KEYS__BACKEND" => settings.keys.backend = v.clone(),
            "KEYWARD_KEYS__VAULT_ADDR" => settings.keys.vault_addr = Some(v.clone()),
            "KEYWARD_KEYS__VAULT_TOKEN" => settings.keys.vault_token = Some(v.clone().into()),
            "KEYWARD_KEYS__VAULT_KEY" => settings.keys.vault_key = v.clone(),
            _ => {}
        }
    }
    let store = keyward_actors::system::open_store(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let backend = settings.keys.backend()?;
    let keys = Keys::connect(&backend).map_err(|e| anyhow::anyhow!("{e}"))?;
    KeyRing::load_or_create(
        &store,
        &[9u8; 32],
        Arc::new(chrono::Utc::now),
        chrono::Duration::minutes(15),
        &keys,
        chrono::Duration::minutes(10),
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Access-token-like claims, another user's each time.
fn claims(w: usize, i: u64) -> serde_json::Value {
    serde_json::json!({
        "iss": "http://127.0.0.1:8080", "sub": format!("0193c5a0-{w:04x}-7000-8000-{i:012x}"),
        "aud": "keyward", "exp": 1_900_000_000, "iat": 1_800_000_000, "nbf": 1_800_000_000,
        "jti": format!("{w}-{i}"), "sid": "0193c5a0-0000-7000-8000-000000000000",
        "email": format!("user{i}@example.com"), "email_verified": true,
        "roles": ["attendee"], "amr": ["pwd"], "acr": "aal1",
    })
}

fn sign_step(ring: Arc<KeyRing>) -> Arc<dyn Fn(usize, u64) -> Step + Send + Sync> {
    Arc::new(move |w, i| {
        let ring = ring.clone();
        Box::pin(async move {
            match ring.sign(&claims(w, i)).await {
                Ok(_) => Some(200),
                Err(_) => Some(503),
            }
        })
    })
}

/// The HTTP floor, client_credentials tokens and refreshes on a node of the backend `env` names.
async fn http_scenarios(
    args: &Args,
    target: &str,
    env: Vec<(String, String)>,
) -> anyhow::Result<Vec<Measured>> {
    let data = procs::temp_dir("keyward-signing-bench")?;
    let mut env_all = seed::cheap_env(None, None);
    env_all.extend(env);
    let (node, _) = procs::start_keyward(&args.keyward, &data, &env_all).await?;
    let pid = node.pid().map(|p| p.to_string()).unwrap_or_default();
    let (id, secret) =
        seed::create_client(&args.keyward, &data, &env_all, "notifications:send").await?;
    let c = seed::client();
    let d = Duration::from_secs(args.seconds);
    let mut out = vec![
        measured(
            &pid,
            args.vault_pid,
            load::run(
                "http floor",
                target,
                args.http_concurrency,
                d,
                load::floor(&c, &node.base),
            ),
        )
        .await,
    ];
    let url = format!("{}/v1/oauth/token", node.base);
    let step: Arc<dyn Fn(usize, u64) -> Step + Send + Sync> = Arc::new(move |_, _| {
        let req = c
            .post(&url)
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send();
        Box::pin(async move { seed::status(req.await).await })
    });
    out.push(
        measured(
            &pid,
            args.vault_pid,
            load::run(
                "client_credentials token",
                target,
                args.http_concurrency,
                d,
                step,
            ),
        )
        .await,
    );

    let store = keyward_storage::Store::connect(&format!(
        "sqlite://{}/keyward.db?mode=rwc",
        data.display()
    ))
    .await?;
    let per_worker = 25;
    let users = seed::load_users(&store, per_worker * args.http_concurrency).await?;
    let c = seed::client();
    let pairs = seed::tokens(&c, &node.base, &users, 8).await?;
    let chains: Arc<Vec<tokio::sync::Mutex<String>>> = Arc::new(
        pairs
            .into_iter()
            .map(|(_, r)| tokio::sync::Mutex::new(r))
            .collect(),
    );
    let step = load::refresh(&c, &node.base, chains, move |w, i| {
        w * per_worker + (i as usize % per_worker)
    });
    out.push(
        measured(
            &pid,
            args.vault_pid,
            load::run("refresh", target, args.http_concurrency, d, step),
        )
        .await,
    );
    node.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(out)
}

/// A scenario's outcome with the CPU each side spent on one answer: Keyward's (this process
/// for the in-process rows, the node for the HTTP rows) and Vault's (`--vault-pid`).
struct Measured {
    o: Outcome,
    keyward_us: Option<f64>,
    vault_us: Option<f64>,
}

/// CPU time of the processes that `keyward` and `--vault-pid` name.
fn cpus(keyward: &str, vault: Option<u32>) -> (Option<Duration>, Option<Duration>) {
    (procs::cpu_of(keyward), vault.and_then(procs::cpu_of))
}

/// Runs a scenario, reading both sides' CPU before and after it.
async fn measured(
    keyward: &str,
    vault: Option<u32>,
    run: impl std::future::Future<Output = Outcome>,
) -> Measured {
    let before = cpus(keyward, vault);
    let o = run.await;
    let after = cpus(keyward, vault);
    let per = |a: Option<Duration>, b: Option<Duration>| {
        let spent = b?.checked_sub(a?)?;
        (o.ok > 0).then(|| spent.as_secs_f64() * 1e6 / o.ok as f64)
    };
    Measured {
        keyward_us: per(before.0, after.0),
        vault_us: per(before.1, after.1),
        o,
    }
}

fn row(m: &Measured) -> String {
    let us = |v: Option<f64>| v.map_or_else(|| "".to_owned(), |v| format!("{v:.1}"));
    let o = &m.o;
    format!(
        "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} |",
        o.scenario,
        o.target,
        o.concurrency,
        o.throughput,
        o.p50_ms,
        o.p99_ms,
        o.shed,
        o.error_count(),
        us(m.keyward_us),
        us(m.vault_us),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let d = Duration::from_secs(args.seconds);
    let key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut lines = vec![
        "| scenario | backend | concurrency | per second | p50 ms | p99 ms | 503 | errors | Keyward CPU µs each | Vault CPU µs each |"
            .to_owned(),
        "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    let mut ratios = Vec::new();
    let started = Instant::now();

    let local_dir = procs::temp_dir("keyward-signing-local")?;
    let vault_dir = procs::temp_dir("keyward-signing-vault")?;
    let local = ring(&local_dir, &[]).await?;
    let vault = ring(&vault_dir, &vault_env(&args, &key)).await?;
    for &c in &args.concurrency {
        let l = measured(
            "self",
            args.vault_pid,
            load::run("sign (in process)", "local", c, d, sign_step(local.clone())),
        )
        .await;
        let v = measured(
            "self",
            args.vault_pid,
            load::run("sign (in process)", "vault", c, d, sign_step(vault.clone())),
        )
        .await;
        eprintln!("{}\n{}", row(&l), row(&v));
        ratios.push(format!(
            "in process, c={c}: vault/local = {:.2}",
            v.o.throughput / l.o.throughput
        ));
        lines.push(row(&l));
        lines.push(row(&v));
    }

    let l = http_scenarios(&args, "local", vec![]).await?;
    let v = http_scenarios(&args, "vault", vault_env(&args, &format!("{key}-http"))).await?;
    for o in l.iter().chain(v.iter()) {
        eprintln!("{}", row(o));
        lines.push(row(o));
    }
    for k in [1, 2] {
        ratios.push(format!(
            "{} over HTTP, c={}: vault/local = {:.2} (local at {:.2} of its floor, vault at {:.2} of its floor)",
            l[k].o.scenario,
            args.http_concurrency,
            v[k].o.throughput / l[k].o.throughput,
            l[k].o.throughput / l[0].o.throughput,
            v[k].o.throughput / v[0].o.throughput,
        ));
    }
    let text = format!(
        "{}\n\n{}\n\nOne run, {} s per scenario, {:.0} s in all.\n",
        lines.join("\n"),
        ratios
            .iter()
            .map(|r| format!("- {r}"))
            .collect::<Vec<_>>()
            .join("\n"),
        args.seconds,
        started.elapsed().as_secs_f64()
    );
    println!("{text}");
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    let _ = std::fs::remove_dir_all(&local_dir);
    let _ = std::fs::remove_dir_all(&vault_dir);
    Ok(())
}
