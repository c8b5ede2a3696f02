//! `keyward backup` and `keyward restore` as an operator runs them: the real binary, a node
//! serving (and being written to) while it is backed up, a restore into a fresh data dir, and
//! a node started on it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};

const PASSWORD: &str = "operator passphrase 7";
/// A master key set in the environment, as production nodes have one.
const NODE_KEY: &str = "H4cQu7Vh0sS9mK2pX1aZ6eT3wR8yN5bL0dF2gJ4kM6o=";

/// `keyward …` with a clean environment, on `data_dir`, with cheap password hashing.
fn keyward(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyward"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYWARD_DATA_DIR", data_dir)
        .env("KEYWARD_LOG", "warn")
        .env("KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB", "64")
        .env("KEYWARD_PASSWORDS__ARGON2_ITERATIONS", "1")
        .env("KEYWARD_BIND", "127.0.0.1:0")
        .env("KEYWARD_MANAGEMENT_BIND", "127.0.0.1:0");
    c
}

/// Runs it; (success, stdout, stderr).
fn run(mut c: Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn run_ok(c: Command) -> String {
    let (ok, out, err) = run(c);
    assert!(ok, "{err}");
    out
}

fn create_user(data_dir: &Path, email: &str) {
    let mut child = keyward(data_dir)
        .args(["admin", "create-user", "--email", email, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(PASSWORD.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `keyward serve` on `data_dir`, and its public base URL; killed when dropped.
struct Served(Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data_dir: &Path) -> Served {
    let mut child = keyward(data_dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served(child, format!("http://{addr}"))
}

async fn login(base: &str, email: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"login": email, "password": PASSWORD}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .status()
}

async fn sessions_in(db_file: &Path) -> i64 {
    let db = Database::connect(format!("sqlite://{}?mode=ro", db_file.display()))
        .await
        .unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM sessions",
        ))
        .await
        .unwrap()
        .unwrap();
    let n = row.try_get_by_index::<i64>(0).unwrap();
    let _ = db.close().await;
    n
}

/// Logs kate in on `base` again and again until `stop` (each login writes a session, its
/// refresh token, an event and an audit line), counting the successful ones.
fn keep_writing(base: String, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) {
    actix_rt::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            if login(&base, "kate@example.com").await == StatusCode::OK {
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_node_backed_up_while_it_serves_writes_is_restored_into_a_fresh_data_dir_and_serves_its_accounts(
) {
    let root = tempfile::tempdir().unwrap();
    let (live, backup, fresh): (PathBuf, PathBuf, PathBuf) = (
        root.path().join("live"),
        root.path().join("backup"),
        root.path().join("fresh"),
    );
    run_ok({
        let mut c = keyward(&live);
        c.arg("migrate");
        c
    });
    create_user(&live, "kate@example.com");
    let node = serve(&live);
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    keep_writing(node.1.clone(), stop.clone(), done.clone());
    wait_until("logins flow", || done.load(Ordering::SeqCst) >= 5).await;

    // Back up while the writer goes on (the command runs on a thread of its own).
    let before = done.load(Ordering::SeqCst);
    let dir = backup.clone();
    let mut c = keyward(&live);
    c.arg("backup").arg(&dir);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    let during = done.load(Ordering::SeqCst) - before;
    wait_until("writes after the backup", || {
        done.load(Ordering::SeqCst) > before + during + 2
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert!(ok, "{err}");
    assert!(out.contains("copied the database"), "{out}");
    assert!(out.contains("is NOT in the backup"), "{out}");
    assert!(
        !backup.join("master.key").exists(),
        "never beside the backup"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["keyward_version"], env!("CARGO_PKG_VERSION"));
    assert!(manifest["migration"].as_str().unwrap().starts_with('m'));
    assert_eq!(manifest["database"]["sha256"].as_str().unwrap().len(), 64);
    let sessions = sessions_in(&backup.join("keyward.db")).await;
    let written = done.load(Ordering::SeqCst) as i64;
    assert!(
        sessions >= before as i64 && sessions <= written,
        "a consistent moment: {sessions} sessions, {before} logins before the backup, {written} in all"
    );
    // The live node's data dir cannot be restored over while it serves, --force or not.
    let (ok, _, err) = run({
        let mut c = keyward(&live);
        c.args(["restore", "--force"]).arg(&backup);
        c
    });
    assert!(
        !ok && err.contains("in use by a running keyward node"),
        "{err}"
    );
    drop(node);

    // Into a fresh data dir: the node's generated master key is not in the backup.
    let out = run_ok({
        let mut c = keyward(&fresh);
        c.arg("restore").arg(&backup);
        c
    });
    assert!(out.contains("every checksum matches"), "{out}");
    assert!(out.contains("restored the database"), "{out}");
    assert!(out.contains("no master key is configured"), "{out}");
    std::fs::copy(live.join("master.key"), fresh.join("master.key")).unwrap();
    let restored = serve(&fresh);
    assert_eq!(login(&restored.1, "kate@example.com").await, StatusCode::OK);
    assert_eq!(
        login(&restored.1, "nobody@example.com").await,
        StatusCode::UNAUTHORIZED
    );
    drop(restored);

    // Again over it, now that it holds data: refused without --force, done with it.
    let (ok, _, err) = run({
        let mut c = keyward(&fresh);
        c.arg("restore").arg(&backup);
        c
    });
    assert!(
        !ok && err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    let out = run_ok({
        let mut c = keyward(&fresh);
        c.args(["restore", "--force"]).arg(&backup);
        c
    });
    assert!(out.contains("--force: removed"), "{out}");
    assert!(out.contains("is the backup's"), "{out}");
}

#[test]
fn a_tampered_backup_or_another_master_key_is_refused_and_nothing_is_restored() {
    let root = tempfile::tempdir().unwrap();
    let (live, backup, target) = (
        root.path().join("live"),
        root.path().join("backup"),
        root.path().join("target"),
    );
    create_user(&live, "kate@example.com");
    run_ok({
        let mut c = keyward(&live);
        c.env("KEYWARD_MASTER_KEY", NODE_KEY)
            .arg("backup")
            .arg(&backup);
        c
    });
    let (ok, _, err) = run({
        let mut c = keyward(&live);
        c.arg("backup").arg(&backup);
        c
    });
    assert!(
        !ok && err.contains("is not empty"),
        "never over a backup: {err}"
    );

    let other_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert_ne!(other_key, NODE_KEY);
    let (ok, _, err) = run({
        let mut c = keyward(&target);
        c.env("KEYWARD_MASTER_KEY", other_key)
            .arg("restore")
            .arg(&backup);
        c
    });
    assert!(!ok && err.contains("is not the key of the node"), "{err}");

    let db = backup.join("keyward.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&db, bytes).unwrap();
    let (ok, out, err) = run({
        let mut c = keyward(&target);
        c.arg("restore").arg(&backup);
        c
    });
    assert!(!ok, "{out}");
    assert!(
        err.starts_with("keyward: ") && err.contains("does not match the checksum"),
        "{err}"
    );
    assert!(!target.join("keyward.db").exists(), "nothing was restored");

    let (ok, _, err) = run({
        let mut c = keyward(&target);
        c.arg("restore").arg(root.path());
        c
    });
    assert!(!ok && err.contains("manifest.json is missing"), "{err}");
}

#[test]
fn on_postgresql_backup_points_at_pg_dump() {
    let root = tempfile::tempdir().unwrap();
    let (ok, _, err) = run({
        let mut c = keyward(root.path());
        c.env(
            "KEYWARD_DATABASE_URL",
            "postgres://keyward:hunter2@db.invalid/keyward",
        )
        .env(
            "KEYWARD_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .arg("backup")
        .arg(root.path().join("b"));
        c
    });
    assert!(!ok && err.contains("pg_dump"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
