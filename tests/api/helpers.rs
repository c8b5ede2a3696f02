//! `spawn_app()` starts a whole node, as `keyward serve` does, on port 0 with a fresh data
//! dir, and returns a `TestApp` with typed helpers over HTTP, the mail drop and the outbox.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use keyward::{Node, StartOptions};
use keyward_actors::hasher::HashParams;
use keyward_config::Settings;
use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{json, Value};

pub const PASSWORD: &str = "velvet otter lantern";

pub struct TestApp {
    pub node: Node,
    pub base: String,
    pub management: String,
    pub client: reqwest::Client,
    pub db: DatabaseConnection,
    pub mail_dir: PathBuf,
    /// Seconds added to the node's clock.
    pub clock_offset: Arc<AtomicI64>,
    // Field order matters: the node's pool closes before the database is dropped.
    _pg: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// Changes a test applies to the node's settings.
pub type Tweak = Box<dyn FnOnce(&mut Settings)>;

#[derive(Default)]
pub struct Options {
    pub settings: Option<Tweak>,
    pub danger_test_panic_on_register: Option<String>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// A PostgreSQL database made for one test and dropped when the test ends.
struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// With KEYWARD_TEST_DATABASE_URL (an admin URL, as scripts/services.sh exports), a fresh
    /// database; without it, None and the test runs on SQLite.
    async fn create() -> Option<(TestDatabase, String)> {
        let admin_url = std::env::var("KEYWARD_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("kw_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url.clone())
            .await
            .expect("admin connection to PostgreSQL");
        admin
            .execute_raw(Statement::from_string(
                admin.get_database_backend(),
                format!("CREATE DATABASE {name}"),
            ))
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
        let url = format!("{base}/{name}");
        Some((TestDatabase { admin_url, name }, url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // NOTE: not joined. DROP DATABASE waits for every backend to absorb a barrier,
        // including the node's own connections, which this (the node's) thread serves; it
        // completes once the test's runtime has shut down. A process that exits first leaves
        // the database behind: scripts/services.sh removes the whole cluster on exit anyway.
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(db) = Database::connect(url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = db
                        .execute_raw(Statement::from_string(db.get_database_backend(), sql))
                        .await;
                    let _ = db.close().await;
                }
            })
        });
    }
}

/// Which backend this run of the suite uses, for test output.
pub fn backend() -> &'static str {
    if std::env::var("KEYWARD_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        "postgres"
    } else {
        "sqlite"
    }
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = TestDatabase::create().await;
    let database_url = match &pg {
        Some((_, url)) => url.clone(),
        None => format!("sqlite://{}/keyward.db?mode=rwc", dir.path().display()),
    };
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        database_url,
        // Distributed storage requires a configured master key.
        master_key: pg.as_ref().map(|_| {
            use base64::Engine;
            let key: [u8; 32] = rand_key();
            secrecy::SecretString::from(base64::engine::general_purpose::STANDARD.encode(key))
        }),
        bind: "127.0.0.1:0".into(),
        management_bind: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    if let Some(f) = opts.settings {
        f(&mut settings);
    }
    let offset = Arc::new(AtomicI64::new(0));
    let o = offset.clone();
    let node = Node::start(
        &settings,
        StartOptions {
            clock: Some(Arc::new(move || {
                Utc::now() + chrono::Duration::seconds(o.load(Ordering::SeqCst))
            })),
            hash_params: Some(HashParams::DANGER_TEST_ONLY),
            danger_test_panic_on_register: opts.danger_test_panic_on_register,
        },
    )
    .await
    .expect("node starts");
    let db = Database::connect(settings.database_url.clone())
        .await
        .expect("test db connection");
    let _pg = pg.map(|(d, _)| d);
    TestApp {
        base: format!("http://{}", node.public_addr),
        management: format!("http://{}", node.management_addr),
        mail_dir: node
            .mail_dir
            .clone()
            .expect("embedded mode has a mail drop"),
        node,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        db,
        clock_offset: offset,
        _pg,
        _dir: dir,
    }
}

fn rand_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .enumerate()
    {
        k[i] = *b;
    }
    k
}

/// A decoded email from the mail drop.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The `token=` value of the link in the mail.
    pub fn token(&self) -> String {
        let i = self.text.find("token=").expect("mail has a token link") + "token=".len();
        self.text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

fn parse_mail(raw: &[u8]) -> Mail {
    let m = mailparse::parse_mail(raw).expect("valid MIME");
    let header = |name: &str| {
        m.headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    let mut text = String::new();
    let mut html = String::new();
    for p in &m.subparts {
        match p.ctype.mimetype.as_str() {
            "text/plain" => text = p.get_body().expect("text body"),
            "text/html" => html = p.get_body().expect("html body"),
            _ => {}
        }
    }
    Mail {
        to: header("To"),
        subject: header("Subject"),
        text,
        html,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_bearer(&self, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut r = self.client.post(self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, email: &str, password: &str, username: Option<&str>) -> Response {
        let mut body = json!({"email": email, "password": password});
        if let Some(u) = username {
            body["username"] = json!(u);
        }
        self.post("/v1/auth/register", body).await
    }

    pub async fn login(&self, login: &str, password: &str) -> Response {
        self.post(
            "/v1/auth/login",
            json!({"login": login, "password": password}),
        )
        .await
    }

    /// Logs in and returns the TokenPair, asserting 200.
    pub async fn login_ok(&self, login: &str, password: &str) -> Value {
        let r = self.login(login, password).await;
        assert_eq!(r.status(), StatusCode::OK, "login of {login}");
        r.json().await.expect("token pair")
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post("/v1/auth/refresh", json!({"refresh_token": refresh_token}))
            .await
    }

    /// Every mail in the drop, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(&self.mail_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| parse_mail(&std::fs::read(p).expect("mail file")))
            .collect()
    }

    /// Waits (up to 10 s) for the `n`-th mail (1-based) to `to` whose subject contains `subject`.
    pub async fn wait_for_mail_n(&self, to: &str, subject: &str, n: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Mail> = self
                .mails()
                .into_iter()
                .filter(|m| {
                    m.to.to_lowercase().contains(&to.to_lowercase()) && m.subject.contains(subject)
                })
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail #{n} to {to} with subject {subject:?}; have {:?}",
                self.mails()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_for_mail(&self, to: &str, subject: &str) -> Mail {
        self.wait_for_mail_n(to, subject, 1).await
    }

    /// Registers and verifies `email`; returns the verification mail's token (used).
    pub async fn verified_user(&self, email: &str, username: Option<&str>) {
        let r = self.register(email, PASSWORD, username).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let token = self.wait_for_mail(email, "Confirm").await.token();
        let r = self
            .post("/v1/auth/verify-email", json!({"token": token}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Every event envelope in the outbox (published or not), oldest first.
    pub async fn events(&self) -> Vec<Value> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT payload FROM outbox ORDER BY id",
            ))
            .await
            .expect("outbox query");
        rows.iter()
            .map(|r| {
                serde_json::from_str(&r.try_get::<String>("", "payload").expect("payload"))
                    .expect("json")
            })
            .collect()
    }

    pub async fn events_of_type(&self, kind: &str) -> Vec<Value> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Waits until the outbox holds no unpublished row.
    pub async fn wait_outbox_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self
                .db
                .query_all_raw(Statement::from_string(
                    self.db.get_database_backend(),
                    "SELECT id FROM outbox WHERE published_at IS NULL",
                ))
                .await
                .expect("outbox query");
            if rows.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "outbox not drained");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn exec(&self, sql: &str) {
        self.db
            .execute_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("sql");
    }

    /// Moves the node's clock forward.
    pub fn advance(&self, secs: i64) {
        self.clock_offset.fetch_add(secs, Ordering::SeqCst);
    }
}

pub async fn problem(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = r.json().await.expect("problem body");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct} for {body}"
    );
    for k in ["type", "title", "status", "detail", "code"] {
        assert!(body.get(k).is_some(), "problem has {k}: {body}");
    }
    assert_eq!(body["status"], status.as_u16());
    (status, body)
}
