//! The mail benchmark (docs/PERFORMANCE.md, "Mail workers"): how many mails one `keyward
//! worker` sends per second to an SMTP sink (MailDev), and how long the mail backlog of a 20-s
//! broker outage under 12 registrations/s takes to drain once the broker is back.
//!
//! Everything goes through the public surfaces, as in production: registrations over HTTP to a
//! distributed `keyward serve` (PostgreSQL, RabbitMQ), one `keyward worker` process sending to
//! MailDev, the worker's count read from its /metrics, the broker stopped and started with
//! rabbitmqctl, and MailDev's API to check that every mail arrived. Each run makes a database
//! and a RabbitMQ vhost of its own and removes them. Run under scripts/services.sh, which
//! provides PostgreSQL, RabbitMQ (and rabbitmqctl) and MailDev:
//!
//! ```text
//! cargo build --release --bin keyward && cargo build --release -p keyward-bench --bin mail
//! scripts/services.sh postgres rabbitmq maildev -- \
//!   $CARGO_TARGET_DIR/release/mail --keyward $CARGO_TARGET_DIR/release/keyward
//! ```
//!
//! `--keyward` may be any build (an older one, for a before/after comparison): the harness
//! relies only on the CLI, the HTTP API and the metrics.

#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "../seed.rs"]
#[allow(dead_code)]
mod seed;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(
    about = "Mail benchmark: one worker's throughput to MailDev, and the drain after a broker outage"
)]
struct Args {
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    /// PostgreSQL admin URL (the harness creates a database of its own).
    #[arg(long, env = "KEYWARD_TEST_DATABASE_URL")]
    database_url: String,
    /// RabbitMQ URL (the harness creates a vhost of its own).
    #[arg(long, env = "KEYWARD_TEST_AMQP_URL")]
    amqp_url: String,
    /// rabbitmqctl for that broker (vhosts, and the outage).
    #[arg(long, env = "KEYWARD_TEST_RABBITMQCTL")]
    rabbitmqctl: PathBuf,
    /// MailDev's SMTP port, for the worker.
    #[arg(long, env = "KEYWARD_TEST_SMTP_URL")]
    smtp_url: String,
    /// MailDev's HTTP API, to check that every mail arrived.
    #[arg(long, env = "KEYWARD_TEST_MAILDEV_URL")]
    maildev_url: String,
    /// Which scenarios: throughput, drain.
    #[arg(long, value_delimiter = ',', default_value = "throughput,drain")]
    scenarios: Vec<String>,
    /// Throughput: mails queued before the worker starts.
    #[arg(long, default_value_t = 2000)]
    mails: usize,
    /// Drain: registrations per second, all along.
    #[arg(long, default_value_t = 12.0)]
    rate: f64,
    /// Drain: seconds of load before the outage.
    #[arg(long, default_value_t = 10)]
    before: u64,
    /// Drain: seconds the broker is stopped.
    #[arg(long, default_value_t = 20)]
    outage: u64,
    /// Drain: seconds of load after the broker is back.
    #[arg(long, default_value_t = 20)]
    after: u64,
}

/// A database and a vhost of this run's own, and the node's environment on them.
struct Backends {
    admin_url: String,
    database: String,
    database_url: String,
    vhost: String,
    amqp_url: String,
    data: PathBuf,
}

impl Backends {
    async fn create(args: &Args, name: &str) -> anyhow::Result<Backends> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("kw_mail_bench_{}", &id[..12]);
        let admin = Database::connect(args.database_url.clone()).await?;
        admin
            .execute_raw(Statement::from_string(
                admin.get_database_backend(),
                format!("CREATE DATABASE {database}"),
            ))
            .await?;
        let _ = admin.close().await;
        let (base, _) = args
            .database_url
            .rsplit_once('/')
            .context("the database URL has a path")?;
        let vhost = format!("kw_mail_bench_{}", &id[..12]);
        rabbitmqctl(&args.rabbitmqctl, &["-q", "add_vhost", &vhost])?;
        rabbitmqctl(
            &args.rabbitmqctl,
            &[
                "-q",
                "set_permissions",
                "-p",
                &vhost,
                "guest",
                ".*",
                ".*",
                ".*",
            ],
        )?;
        let (root, _) = args
            .amqp_url
            .rsplit_once('/')
            .context("the AMQP URL has a vhost path")?;
        Ok(Backends {
            admin_url: args.database_url.clone(),
            database_url: format!("{base}/{database}"),
            database,
            amqp_url: format!("{root}/{vhost}"),
            vhost,
            data: procs::temp_dir(name)?,
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        seed::cheap_env(Some(&self.database_url), Some(&self.amqp_url))
    }

    async fn remove(self, ctl: &Path) {
        let _ = rabbitmqctl(ctl, &["-q", "delete_vhost", &self.vhost]);
        if let Ok(admin) = Database::connect(self.admin_url.clone()).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
            let _ = admin
                .execute_raw(Statement::from_string(admin.get_database_backend(), sql))
                .await;
            let _ = admin.close().await;
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn rabbitmqctl(ctl: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(ctl)
        .args(args)
        .output()
        .with_context(|| format!("running {}", ctl.display()))?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `keyward worker` on the backends, sending to `smtp`; its management bind's URL.
fn start_worker(bin: &Path, b: &Backends, smtp: &str) -> anyhow::Result<(Child, String)> {
    let port = procs::free_port()?;
    let child = Command::new(bin)
        .arg("worker")
        .env("KEYWARD_DATA_DIR", b.data.join("worker"))
        .env("KEYWARD_SMTP_URL", smtp)
        .env("KEYWARD_MANAGEMENT_BIND", format!("127.0.0.1:{port}"))
        .env("KEYWARD_LOG", "warn")
        .envs(b.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} worker", bin.display()))?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

/// One unlabelled sample of a management bind's /metrics.
async fn metric(c: &reqwest::Client, management: &str, name: &str) -> Option<f64> {
    let text = c
        .get(format!("{management}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Polls the worker's `keyward_emails_sent_total` until it reaches `n`; when it did.
async fn wait_sent(
    c: &reqwest::Client,
    management: &str,
    n: usize,
    within: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        let sent = metric(c, management, "keyward_emails_sent_total").await;
        if sent.is_some_and(|s| s >= n as f64) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("the worker sent {sent:?} of {n} mails within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Mails MailDev holds for addresses of `domain`, counted once per address.
async fn maildev_count(c: &reqwest::Client, api: &str, domain: &str) -> anyhow::Result<usize> {
    let list: Vec<Value> = c.get(format!("{api}/email")).send().await?.json().await?;
    let mut seen = std::collections::HashSet::new();
    for m in list {
        let to = m["to"][0]["address"].as_str().unwrap_or_default();
        if to.ends_with(domain) {
            seen.insert(to.to_owned());
        }
    }
    Ok(seen.len())
}

/// Waits (up to 30 s) until MailDev holds a mail for `n` addresses of `domain`.
async fn maildev_wait(
    c: &reqwest::Client,
    api: &str,
    domain: &str,
    n: usize,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = maildev_count(c, api, domain).await?;
        if got >= n || Instant::now() > deadline {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn register(c: &reqwest::Client, base: &str, email: &str) -> bool {
    let r = c
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"email": email, "password": seed::PASSWORD}))
        .send()
        .await;
    r.is_ok_and(|r| r.status().as_u16() == 202)
}

/// N jobs wait in the queue; one worker starts and sends them all.
async fn throughput(args: &Args, c: &reqwest::Client) -> anyhow::Result<Value> {
    let b = Backends::create(args, "mail-throughput").await?;
    let (node, _) = procs::start_keyward(&args.keyward, &b.data, &b.env()).await?;
    let domain = format!(
        "@t{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let n = args.mails;
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, base, next, failed, domain) = (
            c.clone(),
            node.base.clone(),
            next.clone(),
            failed.clone(),
            domain.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                if !register(&c, &base, &format!("m{i}{domain}")).await {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let failed = failed.load(Ordering::SeqCst);
    if failed > 0 {
        bail!("{failed} registrations failed");
    }
    let store = keyward_storage::Store::connect(&b.database_url).await?;
    seed::outbox_drained(&store, Duration::from_secs(120)).await?;
    eprintln!("throughput: {n} mails queued; starting the worker");

    let started = Instant::now();
    let (mut worker, management) = start_worker(&args.keyward, &b, &args.smtp_url)?;
    let first = wait_sent(c, &management, 1, Duration::from_secs(60)).await?;
    let last = wait_sent(c, &management, n, Duration::from_secs(600)).await?;
    let arrived = maildev_wait(c, &args.maildev_url, &domain, n).await?;
    let _ = worker.kill().await;
    node.stop().await;
    b.remove(&args.rabbitmqctl).await;

    let steady = (last - first).as_secs_f64();
    let whole = (last - started).as_secs_f64();
    let result = json!({
        "mails": n,
        "arrived_in_maildev": arrived,
        "seconds_from_first_to_last_mail": steady,
        "mails_per_second": (n.saturating_sub(1)) as f64 / steady.max(f64::EPSILON),
        "seconds_from_worker_start": whole,
        "mails_per_second_with_start": n as f64 / whole.max(f64::EPSILON),
    });
    eprintln!("throughput: {result}");
    Ok(result)
}

/// Registrations at a steady rate; the broker stops for a while and comes back; how long after
/// its return every mail of the registrations made until then was sent.
async fn drain(args: &Args, c: &reqwest::Client) -> anyhow::Result<Value> {
    let b = Backends::create(args, "mail-drain").await?;
    let (node, _) = procs::start_keyward(&args.keyward, &b.data, &b.env()).await?;
    let (mut worker, management) = start_worker(&args.keyward, &b, &args.smtp_url)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(c, &management, "keyward_amqp_consuming").await != Some(1.0) {
        if Instant::now() > deadline {
            bail!("the worker is not consuming");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let domain = format!(
        "@d{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let total = args.before + args.outage + args.after;
    let every = Duration::from_secs_f64(1.0 / args.rate);
    let load = {
        let (c, base, accepted, failed, domain) = (
            c.clone(),
            node.base.clone(),
            accepted.clone(),
            failed.clone(),
            domain.clone(),
        );
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(every);
            let mut sent = Vec::new();
            let mut i = 0usize;
            while start.elapsed() < Duration::from_secs(total) {
                tick.tick().await;
                let (c, base, accepted, failed) =
                    (c.clone(), base.clone(), accepted.clone(), failed.clone());
                let email = format!("r{i}{domain}");
                i += 1;
                // Each on its own: a slow answer does not lower the rate.
                sent.push(tokio::spawn(async move {
                    if register(&c, &base, &email).await {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            for s in sent {
                let _ = s.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(args.before)).await;
    let ctl = args.rabbitmqctl.clone();
    tokio::task::spawn_blocking(move || rabbitmqctl(&ctl, &["-q", "stop_app"])).await??;
    eprintln!("drain: broker stopped");
    tokio::time::sleep(Duration::from_secs(args.outage)).await;
    let ctl = args.rabbitmqctl.clone();
    tokio::task::spawn_blocking(move || rabbitmqctl(&ctl, &["-q", "start_app"])).await??;
    let back = Instant::now();
    let owed = accepted.load(Ordering::SeqCst);
    eprintln!("drain: broker back; {owed} registrations so far");
    let caught_up = wait_sent(c, &management, owed, Duration::from_secs(300)).await?;
    let drain_secs = (caught_up - back).as_secs_f64();
    eprintln!("drain: their mails all sent {drain_secs:.2} s after the broker's return");
    load.await?;
    let all = accepted.load(Ordering::SeqCst);
    let all_sent = wait_sent(c, &management, all, Duration::from_secs(300)).await;
    let arrived = maildev_wait(c, &args.maildev_url, &domain, all).await?;
    let _ = worker.kill().await;
    node.stop().await;
    b.remove(&args.rabbitmqctl).await;
    let result = json!({
        "rate_per_second": args.rate,
        "outage_seconds": args.outage,
        "registrations": all,
        "registration_failures": failed.load(Ordering::SeqCst),
        "registrations_before_the_broker_returned": owed,
        "seconds_after_return_until_their_mails_were_sent": drain_secs,
        "every_mail_sent": all_sent.is_ok(),
        "arrived_in_maildev": arrived,
    });
    eprintln!("drain: {result}");
    Ok(result)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let c = seed::client();
    let mut results = serde_json::Map::new();
    for s in &args.scenarios {
        let r = match s.as_str() {
            "throughput" => throughput(&args, &c).await?,
            "drain" => drain(&args, &c).await?,
            other => bail!("unknown scenario {other} (throughput, drain)"),
        };
        results.insert(s.clone(), r);
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(results))?);
    Ok(())
}
