//! What a node's in-memory caches cost per entry, and where they stop growing
//! (docs/PERFORMANCE.md, "Soak: 30 minutes of mixed traffic"): fills each of the caches the
//! soak run's traffic fills (the session gate's verified tokens, sessions live or ended, the
//! profile cache, the access decisions' users) in this process, past its capacity, and reads
//! this process's RssAnon from /proc after every step. Entries look like the soak run's: a
//! token of a user with one role, a profile with a nickname, a display name, a bio of a few
//! sentences, a time zone; a user's grants are of an id no account has, so without roles.
//!
//! `cargo run --release -p keyward-bench --bin cache_cost`

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use keyward_actors::access::Decisions;
use keyward_actors::profiles::ProfileCache;
use keyward_actors::sessions::gate::{token_key, UserToken};
use keyward_actors::sessions::{AccessClaims, SessionGate};
use keyward_messages::commands::Locale;
use keyward_messages::profiles::{UserView, Visibility};
use keyward_messages::{SessionId, UserId};

#[derive(Parser)]
#[command(about = "RSS per entry of the node's caches, filled past their capacity")]
struct Args {
    /// Entries added per step.
    #[arg(long, default_value_t = 32_768)]
    step: usize,
    /// Entries added to each cache in all (at their default capacities the caches hold
    /// 262,144 tokens and sessions and 65,536 profiles).
    #[arg(long, default_value_t = 393_216)]
    entries: usize,
}

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn claims(user: UserId, session: SessionId, i: usize) -> AccessClaims {
    let now = Utc::now().timestamp();
    AccessClaims {
        iss: "http://127.0.0.1:8080".to_owned(),
        sub: user.to_string(),
        aud: "keyward".to_owned(),
        exp: now + 900,
        iat: now,
        nbf: now,
        jti: format!("jti-{i}"),
        sid: session.to_string(),
        email: format!("soak{i}@soak.test"),
        email_verified: true,
        roles: vec!["attendee".to_owned()],
        roles_truncated: false,
        amr: vec!["pwd".to_owned()],
        acr: "aal1".to_owned(),
    }
}

fn view(i: usize) -> UserView {
    let now = Utc::now();
    UserView {
        id: UserId::new(),
        email: format!("soak{i}@soak.test"),
        email_verified: true,
        username: Some(format!("alice{i}")),
        roles: vec!["attendee".to_owned()],
        created_at: now,
        display_name: Some(format!("Alice {i}")),
        bio: Some(format!(
            "Soak user {i}. {}",
            "Likes long walks and short queues. ".repeat(3)
        )),
        avatar: None,
        locale: Locale::En,
        timezone: Some("Europe/Moscow".to_owned()),
        country: Some("RU".to_owned()),
        phone: None,
        phone_verified: false,
        visibility: Visibility::Users,
        attributes: serde_json::Map::new(),
        updated_at: now,
        deletion_scheduled_for: None,
    }
}

/// Adds `args.entries` entries with `add(i)`, printing the RSS cost after every step.
fn fill(name: &str, args: &Args, mut add: impl FnMut(usize)) {
    let start = rss_anon_kib();
    println!("\n{name}");
    println!("| entries added | RssAnon growth MiB | bytes per entry so far |");
    println!("|---|---|---|");
    let mut i = 0;
    while i < args.entries {
        let end = (i + args.step).min(args.entries);
        for k in i..end {
            add(k);
        }
        i = end;
        let grown = rss_anon_kib().saturating_sub(start);
        println!(
            "| {i} | {:.1} | {:.0} |",
            grown as f64 / 1024.0,
            grown as f64 * 1024.0 / i as f64
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.step > 0, "--step must be at least 1");
    let cap = keyward_config::CacheSettings::default();
    let gate = SessionGate::new(Duration::from_secs(1), cap.tokens, cap.sessions);
    fill("session gate: verified tokens", &args, |i| {
        let (user, session) = (UserId::new(), SessionId::new());
        let c = claims(user, session, i);
        if let Some(t) = UserToken::of(&c) {
            gate.remember_verified(token_key(&format!("token-{i}")), Arc::new(t));
        }
    });
    let ends = Utc::now() + chrono::Duration::days(30);
    fill("session gate: live sessions", &args, |_| {
        gate.remember_live(SessionId::new(), UserId::new(), ends);
    });
    // Live and ended sessions share one cache: the ended marks get a gate of their own, and
    // both stay alive, so that no step reuses memory another freed.
    let ended = SessionGate::new(Duration::from_secs(1), cap.tokens, cap.sessions);
    fill("session gate: ended sessions", &args, |_| {
        ended.ended(SessionId::new());
    });
    let profiles = ProfileCache::new(Duration::from_secs(60), cap.profiles);
    fill("profile cache", &args, |i| {
        profiles.put(profiles.epoch(), Arc::new(view(i)));
    });
    drop(profiles);
    users(&args, cap.users)
}

/// The access decisions' users: filled the only way a node fills it, by asking for a user's
/// grants, here of ids no account has (so without roles: a role adds its name's allocations).
fn users(args: &Args, capacity: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("keyward-cache-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("cost.db").display());
    let store = rt.block_on(async {
        let store = keyward_storage::Store::connect(&url).await?;
        store.migrate().await?;
        anyhow::Ok(store)
    })?;
    let decisions = Decisions::new(capacity);
    let mut failed = 0u64;
    fill("access decisions: users without roles", args, |_| {
        if rt
            .block_on(decisions.grants(&store, UserId::new()))
            .is_err()
        {
            failed += 1;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(failed == 0, "{failed} grant reads failed");
    Ok(())
}
