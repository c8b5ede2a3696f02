//! The notifications benchmark (docs/PERFORMANCE.md, "Notifications"): the send API with 1 and
//! with 1,000 recipients per request; the inbox of a user with 10,000 unread items; and one
//! node holding thousands of idle live streams (SSE): its memory per stream, and how long one
//! send to every streaming user takes to reach them all.
//!
//! Users are written straight to the node's database (as the access benchmark does); the
//! 10,000 inbox items too, through the storage crate, since how they got there is not what
//! the inbox scenario measures. Everything measured goes through HTTP.

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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use keyward_messages::UserId;
use keyward_storage::{InboxRecord, Store};
use load::Outcome;
use seed::{client, load_users, status, sub_of, tokens};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Notifications benchmark: send API, inbox, live streams")]
struct Args {
    #[arg(long, default_value = "target/release/keyward")]
    keyward: PathBuf,
    /// Distinct users (recipients).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unread items of the inbox user.
    #[arg(long, default_value_t = 10_000)]
    inbox_items: usize,
    /// Live streams held open at once.
    #[arg(long, default_value_t = 5_000)]
    streams: usize,
    /// Channels of each send (`in_app`, or `email,in_app`: email also writes a mail job).
    #[arg(long, default_value = "in_app")]
    channels: String,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn line(o: &Outcome, unit: &str, per: f64) {
    println!(
        "| {} | {} | {:.0} req/s | {:.0} {unit}/s | {:.1} | {:.1} | {:.1} | {} |",
        o.scenario,
        o.concurrency,
        o.throughput,
        o.throughput * per,
        o.p50_ms,
        o.p95_ms,
        o.p99_ms,
        o.error_count() + o.shed
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = procs::temp_dir("keyward-notify-bench")?;
    let env = seed::cheap_env(None, None);
    let (node, _) = procs::start_keyward(&args.keyward, &data, &env).await?;
    let base = node.base.clone();
    let store = Store::connect(&format!("sqlite://{}/keyward.db?mode=rwc", data.display())).await?;
    let t = Instant::now();
    let emails = load_users(&store, args.users).await?;
    eprintln!(
        "{} users written in {:.1} s",
        emails.len(),
        t.elapsed().as_secs_f64()
    );
    let c = client();
    let svc = Arc::new(
        seed::client_token(&args.keyward, &data, &env, &c, &base, "notifications:send").await?,
    );
    let stream_users = args.streams.min(emails.len());
    let t = Instant::now();
    let toks: Vec<String> = tokens(&c, &base, &emails[..stream_users.max(1)], 8)
        .await?
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let ids: Arc<Vec<String>> = Arc::new(toks.iter().map(|t| sub_of(t)).collect());
    eprintln!(
        "{} logins in {:.1} s",
        toks.len(),
        t.elapsed().as_secs_f64()
    );
    let channels: Vec<String> = args.channels.split(',').map(str::to_owned).collect();
    let secs = Duration::from_secs(args.seconds);
    let key = Arc::new(AtomicU64::new(0));

    println!("| scenario | clients | requests | recipients | p50 ms | p95 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for (scenario, per_request, clients) in [
        ("send, 1 recipient per request", 1usize, 8usize),
        ("send, 1,000 recipients per request", 1000, 2),
    ] {
        let n = ids.len();
        let step: load::StepFn = {
            let (c, b, svc, ids, key, channels) = (
                c.clone(),
                base.clone(),
                svc.clone(),
                ids.clone(),
                key.clone(),
                channels.clone(),
            );
            Arc::new(move |w, i| {
                let k = key.fetch_add(1, Ordering::Relaxed);
                let start = (k as usize).wrapping_mul(7919).wrapping_add(w * 104_729) % n;
                let to: Vec<&String> = (0..per_request.min(n))
                    .map(|j| &ids[(start + j) % n])
                    .collect();
                let body = json!({
                    "to": to,
                    "template": "generic",
                    "variables": {"title": "Booking confirmed", "body": format!("Visit {i}")},
                    "category": "general",
                    "channels": channels,
                    "idempotency_key": format!("bench-{k}"),
                });
                let (c, b, svc) = (c.clone(), b.clone(), svc.clone());
                Box::pin(async move {
                    status(
                        c.post(format!("{b}/v1/notifications"))
                            .bearer_auth(svc.as_str())
                            .json(&body)
                            .send()
                            .await,
                    )
                    .await
                })
            })
        };
        let o = load::run(scenario, "keyward", clients, secs, step).await;
        line(&o, "recipients", per_request.min(n) as f64);
    }

    // The inbox of one user holding `inbox_items` unread items.
    let owner = UserId(ids[0].parse()?);
    let now = chrono::Utc::now();
    let items: Vec<InboxRecord> = (0..args.inbox_items)
        .map(|i| InboxRecord {
            id: uuid::Uuid::now_v7(),
            user_id: owner,
            category: "general".into(),
            title: format!("Item {i}"),
            body: "A notification body of ordinary length, about one line of text.".into(),
            action_url: None,
            created_at: now,
            read_at: None,
        })
        .collect();
    store.notices().insert_inbox(&items).await?;
    let owner_token = Arc::new(toks[0].clone());
    for (scenario, query, clients) in [
        ("inbox, first page (10,000+ unread)", "?limit=20", 8usize),
        ("inbox, first page (10,000+ unread)", "?limit=20", 1),
        ("inbox, unread only", "?unread=true&limit=20", 8),
    ] {
        let step: load::StepFn = {
            let (c, b, t) = (c.clone(), base.clone(), owner_token.clone());
            Arc::new(move |_, _| {
                let (c, b, t) = (c.clone(), b.clone(), t.clone());
                Box::pin(async move {
                    status(
                        c.get(format!("{b}/v1/users/me/notifications{query}"))
                            .bearer_auth(t.as_str())
                            .send()
                            .await,
                    )
                    .await
                })
            })
        };
        let o = load::run(scenario, "keyward", clients, secs, step).await;
        line(&o, "pages", 1.0);
    }

    // Live streams: one per user, idle; then one send to all of them.
    let before = node.memory_kib().map_or(0, |(rss, _)| rss);
    let sse = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut streams = Vec::with_capacity(stream_users);
    let t = Instant::now();
    for tok in toks.iter().take(stream_users) {
        let mut r = sse
            .get(format!("{base}/v1/users/me/notifications/stream"))
            .bearer_auth(tok)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 200, "stream: {}", r.status());
        r.chunk().await?; // the first `unread` event
        streams.push(r);
    }
    eprintln!(
        "{} streams open in {:.1} s",
        streams.len(),
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = node.memory_kib().map_or(0, |(rss, _)| rss);
    let per_stream_kib = after.saturating_sub(before) as f64 / stream_users.max(1) as f64;

    let sent = Instant::now();
    let waiting: Vec<_> = streams
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let got = tokio::time::timeout(Duration::from_secs(30), r.chunk()).await;
                matches!(got, Ok(Ok(Some(_)))).then(Instant::now)
            })
        })
        .collect();
    // When each send was accepted: an item's delay counts from its own send's commit.
    let mut accepted_at = Vec::new();
    for (n, chunk) in ids[..stream_users].chunks(1000).enumerate() {
        let r = c
            .post(format!("{base}/v1/notifications"))
            .bearer_auth(svc.as_str())
            .json(&json!({
                "to": chunk, "template": "generic", "category": "general", "channels": ["in_app"],
                "variables": {"title": "Doors open", "body": "The event starts in 10 minutes"},
                "idempotency_key": format!("fanout-{n}"),
            }))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "fan-out send: {}", r.status());
        accepted_at.push(Instant::now());
    }
    let accepted = sent.elapsed();
    let mut delays = Vec::new();
    for (i, w) in waiting.into_iter().enumerate() {
        if let (Ok(Some(got)), Some(at)) = (w.await, accepted_at.get(i / 1000)) {
            // An item can arrive before its send's reply does: that counts as no delay.
            delays.push(got.saturating_duration_since(*at));
        }
    }
    delays.sort();
    let at = |q: f64| {
        delays
            .get(((delays.len() as f64 * q) as usize).min(delays.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!();
    println!("| live streams | value |");
    println!("|---|---|");
    println!("| streams held | {stream_users} |");
    println!(
        "| node RSS before / with the streams | {:.1} / {:.1} MiB |",
        mib(before),
        mib(after)
    );
    println!("| memory per idle stream | {per_stream_kib:.1} KiB |");
    println!(
        "| one send to every streaming user ({} requests of ≤ 1,000): all accepted after | {:.0} ms |",
        stream_users.div_ceil(1000),
        accepted.as_secs_f64() * 1000.0
    );
    println!(
        "| items received | {} of {stream_users}; after their send's 202: p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms |",
        delays.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    node.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
