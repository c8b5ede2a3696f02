//! The servers under test, each its own process so its memory and start-up can be measured:
//! a Keyward node (`keyward serve`) and the peer (better-auth on Node.js).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU time the process has used, all its threads.
    pub fn cpu(&self) -> Option<Duration> {
        cpu_of(self.pid()?)
    }

    /// Resident and peak resident memory, in KiB, from /proc.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM first, so the node shuts down as in production.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// CPU time process `pid` (or `"self"`) has used, all its threads: utime + stime from /proc,
/// in its clock ticks (USER_HZ, 100 on Linux).
pub fn cpu_of(pid: impl std::fmt::Display) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A command that runs `bin`, on the cores `KEYWARD_BENCH_NODE_CPUS` lists (a `taskset` list)
/// when it is set: with the harness itself under `taskset` on the other cores, the node and
/// its load generator each have cores of their own, as when the load comes from other hosts.
fn node_command(bin: &Path) -> Command {
    match std::env::var("KEYWARD_BENCH_NODE_CPUS") {
        Ok(cpus) if !cpus.trim().is_empty() => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus.trim()).arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

/// Starts `keyward serve` on free ports with `data_dir` and waits until /readyz answers 200.
/// Returns the server and the time from spawn to ready.
pub async fn start_keyward(
    bin: &Path,
    data_dir: &Path,
    env: &[(String, String)],
) -> anyhow::Result<(Server, Duration)> {
    let (port, mport) = (free_port()?, free_port()?);
    let t = Instant::now();
    let child = node_command(bin)
        .arg("serve")
        .env("KEYWARD_DATA_DIR", data_dir)
        .env("KEYWARD_BIND", format!("127.0.0.1:{port}"))
        .env("KEYWARD_MANAGEMENT_BIND", format!("127.0.0.1:{mport}"))
        .env("KEYWARD_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let management = format!("http://127.0.0.1:{mport}");
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{management}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("keyward did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = t.elapsed();
    Ok((
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        },
        ready,
    ))
}

/// Runs `keyward admin create-user` for each email (verified accounts, real argon2 cost).
pub async fn create_users(
    bin: &Path,
    data_dir: &Path,
    env: &[(String, String)],
    emails: &[String],
    password: &str,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    for email in emails {
        let mut child = Command::new(bin)
            .args(["admin", "create-user", "--email", email, "--password-stdin"])
            .env("KEYWARD_DATA_DIR", data_dir)
            .env("KEYWARD_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(password.as_bytes()).await?;
        }
        let status = child.wait().await?;
        if !status.success() {
            bail!("keyward admin create-user failed for {email}");
        }
    }
    Ok(())
}

/// Starts the peer (`node server.mjs` in `dir`) on a free port with its SQLite file in
/// `data_dir`, and waits for its "ready" line.
pub async fn start_peer(dir: &Path, data_dir: &Path) -> anyhow::Result<(Server, Duration)> {
    let port = free_port()?;
    let t = Instant::now();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .env("BENCH_PEER_PORT", port.to_string())
        .env("BENCH_PEER_DB", data_dir.join("peer.db"))
        .env("NODE_ENV", "production")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the peer (node server.mjs)")?;
    let stdout = child.stdout.take().context("peer stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("ready") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !ready {
        bail!("the peer did not print its ready line");
    }
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        },
        t.elapsed(),
    ))
}

pub fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("keyward-bench-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
