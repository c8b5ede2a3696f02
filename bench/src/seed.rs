//! The setup the access and bearer benchmarks share: users written straight to the node's
//! database (verified, with roles; their password hash uses cheap argon2 parameters, which
//! the node is told too, so the logins that open their sessions do not dominate the setup),
//! sessions opened through HTTP, and a service client made with the CLI.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use keyward_messages::{Email, UserId};
use keyward_storage::{NewUser, Store};
use serde_json::{json, Value};

pub const PASSWORD: &str = "bench passphrase 7 correct horse";

/// The node's environment: the events preset, cheap argon2, no IP throttling, a fixed master
/// key, and the database and broker when given.
pub fn cheap_env(database_url: Option<&str>, amqp_url: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("KEYWARD_ACCESS__PRESET", "events"),
        ("KEYWARD_ACCESS__DEFAULT_ROLES", "attendee"),
        ("KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB", "64"),
        ("KEYWARD_PASSWORDS__ARGON2_ITERATIONS", "1"),
        ("KEYWARD_PASSWORDS__ARGON2_PARALLELISM", "1"),
        // NOTE: logins of thousands of users from one address would be throttled otherwise.
        ("KEYWARD_THROTTLE__IP_MAX_FAILURES", "1000000"),
        // And their registrations: mail requests are budgeted per client IP.
        ("KEYWARD_THROTTLE__MAIL_PER_IP_PER_HOUR", "100000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.push((
        "KEYWARD_MASTER_KEY".to_owned(),
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    ));
    if let Some(url) = database_url {
        env.push(("KEYWARD_DATABASE_URL".to_owned(), url.to_owned()));
    }
    if let Some(url) = amqp_url {
        env.push(("KEYWARD_AMQP_URL".to_owned(), url.to_owned()));
    }
    env
}

fn phc(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(64, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let salt =
        SaltString::from_b64("YmVuY2hzYWx0YmVuY2hzYWx0").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string())
}

/// Writes `n` verified users with roles (attendee; every other one organizer too); returns
/// their emails.
pub async fn load_users(store: &Store, n: usize) -> anyhow::Result<Vec<String>> {
    let hash = phc(PASSWORD)?;
    let now = chrono::Utc::now();
    let mut emails = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let tx = store.begin().await?;
        for &i in chunk {
            let email = format!("user{i}@bench.test");
            let id = UserId::new();
            tx.users()
                .insert(NewUser {
                    id,
                    email: Email::parse("email", &email).map_err(|e| anyhow::anyhow!("{e:?}"))?,
                    username: None,
                    password_hash: hash.clone(),
                    email_verified: true,
                    locale: "en".into(),
                    now,
                })
                .await?;
            tx.access().grant(id, "attendee", now).await?;
            if i % 2 == 0 {
                tx.access().grant(id, "organizer", now).await?;
            }
            emails.push(email);
        }
        tx.commit().await?;
    }
    Ok(emails)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The `sub` of an access token (the user's id).
pub fn sub_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&raw)
        .ok()
        .and_then(|v| v["sub"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Logs in once per entry of `logins` (an email may repeat: one session each), `parallel` at
/// a time; each session's access and refresh token, in order.
pub async fn tokens(
    c: &reqwest::Client,
    base: &str,
    logins: &[String],
    parallel: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let logins = Arc::new(logins.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(vec![
        (String::new(), String::new());
        logins.len()
    ]));
    let tasks: Vec<_> = (0..parallel)
        .map(|_| {
            let (c, base, logins, next, out) = (
                c.clone(),
                base.to_owned(),
                logins.clone(),
                next.clone(),
                out.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= logins.len() {
                        return Ok::<(), anyhow::Error>(());
                    }
                    // A shed login (503) is retried, as a client told to retry would.
                    let mut tries = 0;
                    let r: Value = loop {
                        let r = c
                            .post(format!("{base}/v1/auth/login"))
                            .json(&json!({"login": logins[i], "password": PASSWORD}))
                            .send()
                            .await?;
                        if r.status().as_u16() != 503 || tries > 50 {
                            break r.json().await?;
                        }
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    };
                    let token =
                        |name: &str| r[name].as_str().map(str::to_owned).context("login failed");
                    let t = (token("access_token")?, token("refresh_token")?);
                    if let Ok(mut o) = out.lock() {
                        o[i] = t;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let v = out.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok(v)
}

/// Waits until the outbox holds no unpublished row (every event of the setup is out), so a
/// measured scenario does not share the node with the relay catching up; how long that took.
pub async fn outbox_drained(store: &Store, within: Duration) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    while store.outbox().backlog().await? > 0 {
        anyhow::ensure!(
            start.elapsed() < within,
            "the outbox did not drain in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(start.elapsed())
}

pub async fn status(r: Result<reqwest::Response, reqwest::Error>) -> Option<u16> {
    Some(r.ok()?.status().as_u16())
}

/// A service client with `scope`, made with `keyward admin create-client`: its id and secret.
pub async fn create_client(
    keyward: &Path,
    data: &Path,
    env: &[(String, String)],
    scope: &str,
) -> anyhow::Result<(String, String)> {
    let out = tokio::process::Command::new(keyward)
        .args([
            "admin",
            "create-client",
            "--name",
            "bench",
            "--scope",
            scope,
        ])
        .env("KEYWARD_DATA_DIR", data)
        .env("KEYWARD_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "create-client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .context("create-client output")
    };
    Ok((field("client_id:")?, field("client_secret:")?))
}

/// A service client with `scope`, made with `keyward admin create-client`, and a token of it.
pub async fn client_token(
    keyward: &Path,
    data: &Path,
    env: &[(String, String)],
    c: &reqwest::Client,
    base: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let (client_id, secret) = create_client(keyward, data, env, scope).await?;
    token_of_client(c, base, &client_id, &secret).await
}

/// A fresh token of an existing client (tokens live 5 minutes; longer runs ask again).
pub async fn token_of_client(
    c: &reqwest::Client,
    base: &str,
    client_id: &str,
    secret: &str,
) -> anyhow::Result<String> {
    let t: Value = c
        .post(format!("{base}/v1/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    Ok(t["access_token"]
        .as_str()
        .context("client token")?
        .to_owned())
}

/// The check API's request bodies, one per user (`events:write`), serialized before the clock:
/// a product's service pays its own JSON on its own host, and the harness shares the node's
/// cores.
pub fn check_bodies(ids: &[String]) -> std::sync::Arc<Vec<bytes::Bytes>> {
    std::sync::Arc::new(
        ids.iter()
            .map(|id| {
                serde_json::json!({"user_id": id, "permission": "events:write"})
                    .to_string()
                    .into()
            })
            .collect(),
    )
}
