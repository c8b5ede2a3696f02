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
    /// MailDev's API when the worker sends through the SMTP sink (then `mail_dir` is unused).
    pub maildev: Option<String>,
    maildev_seen: std::collections::HashSet<String>,
    /// The settings the node runs with (peers started with `spawn_peer` share them).
    pub settings: Settings,
    /// Seconds added to the node's clock.
    pub clock_offset: Arc<AtomicI64>,
    // Field order matters: the node's pool closes before the database is dropped.
    _pg: Option<TestDatabase>,
    _vhost: Option<TestVhost>,
    _dir: tempfile::TempDir,
}

/// Changes a test applies to the node's settings.
pub type Tweak = Box<dyn FnOnce(&mut Settings)>;

#[derive(Default)]
pub struct Options {
    pub settings: Option<Tweak>,
    /// Distributed mode: a vhost of its own on KEYWARD_TEST_AMQP_URL, and an in-process email
    /// worker writing to the mail drop the helpers read.
    pub amqp: bool,
    /// With `amqp`: start no in-process worker (the test runs `keyward worker` processes).
    pub external_worker: bool,
    pub danger_test_panic_on_register: Option<String>,
    /// Real argon2 parameters instead of the fast test-only ones.
    pub hash_params: Option<HashParams>,
    /// How long the node believes a session it read as live (beyond the settings' bound).
    pub session_recheck: Option<Duration>,
    /// How often the node reads the outbox for invalidations (default 250 ms).
    pub feed_every: Option<Duration>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// A PostgreSQL database made for one test and dropped when the test ends.
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// With KEYWARD_TEST_DATABASE_URL (an admin URL, as scripts/services.sh exports), a fresh
    /// database; without it, None and the test runs on SQLite.
    pub async fn create() -> Option<(TestDatabase, String)> {
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
    let vhost = if opts.amqp {
        Some(TestVhost::create().await)
    } else {
        None
    };
    let database_url = match &pg {
        Some((_, url)) => url.clone(),
        None => format!("sqlite://{}/keyward.db?mode=rwc", dir.path().display()),
    };
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        database_url,
        // Distributed storage requires a configured master key.
        amqp_url: vhost
            .as_ref()
            .map(|v| secrecy::SecretString::from(v.url.clone())),
        master_key: (pg.is_some() || vhost.is_some()).then(|| {
            use base64::Engine;
            let key: [u8; 32] = rand_key();
            secrecy::SecretString::from(base64::engine::general_purpose::STANDARD.encode(key))
        }),
        bind: "127.0.0.1:0".into(),
        management_bind: "127.0.0.1:0".into(),
        // Every test's requests come from 127.0.0.1: the per-IP mail budget is tested on its
        // own (accounts::mail_requests_are_budgeted_per_address_and_per_ip).
        throttle: keyward_config::ThrottleSettings {
            mail_per_ip_per_hour: 1_000_000,
            ..Default::default()
        },
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
            hash_params: Some(opts.hash_params.unwrap_or(HashParams::DANGER_TEST_ONLY)),
            danger_test_panic_on_register: opts.danger_test_panic_on_register,
            session_recheck: opts.session_recheck,
            erase_every: Some(Duration::from_millis(200)),
            feed_every: opts.feed_every,
        },
    )
    .await
    .expect("node starts");
    let db = Database::connect(settings.database_url.clone())
        .await
        .expect("test db connection");
    let _pg = pg.map(|(d, _)| d);
    if vhost.is_some() {
        wait_ready(&format!("http://{}/readyz", node.management_addr)).await;
    }
    let smtp = std::env::var("KEYWARD_TEST_SMTP_URL")
        .ok()
        .filter(|u| !u.is_empty() && vhost.is_some());
    let maildev = smtp
        .as_ref()
        .and_then(|_| std::env::var("KEYWARD_TEST_MAILDEV_URL").ok());
    // The sink outlives tests: mail that was there before this test is not this test's.
    let mut maildev_seen = std::collections::HashSet::new();
    if let Some(api) = &maildev {
        for m in maildev_list(api).await {
            maildev_seen.insert(m["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mail_dir = match vhost.as_ref().filter(|_| !opts.external_worker) {
        Some(v) => start_worker(
            &v.url,
            dir.path().join("worker-mail"),
            node.contexts.store.clone(),
            smtp.as_deref(),
            &settings.sms,
        ),
        None if opts.external_worker => dir.path().join("unused-mail"),
        None => node
            .mail_dir
            .clone()
            .expect("embedded mode has a mail drop"),
    };
    TestApp {
        base: format!("http://{}", node.public_addr),
        management: format!("http://{}", node.management_addr),
        mail_dir,
        maildev,
        maildev_seen,
        settings: settings.clone(),
        _vhost: vhost,
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

    /// Every mail sent so far, oldest first: from MailDev when the worker uses SMTP, else from
    /// the mail drop.
    pub async fn mails(&self) -> Vec<Mail> {
        if let Some(api) = &self.maildev {
            return maildev_list(api)
                .await
                .iter()
                .filter(|m| {
                    !self
                        .maildev_seen
                        .contains(m["id"].as_str().unwrap_or_default())
                })
                .map(|m| Mail {
                    to: m["to"][0]["address"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    subject: m["subject"].as_str().unwrap_or_default().to_owned(),
                    text: m["text"].as_str().unwrap_or_default().to_owned(),
                    html: m["html"].as_str().unwrap_or_default().to_owned(),
                })
                .collect();
        }
        self.dropped_mails()
    }

    fn dropped_mails(&self) -> Vec<Mail> {
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<Mail> = self
                .mails()
                .await
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
                self.mails().await
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

    /// Every event envelope in the outbox (published or not), oldest first; not the decoys,
    /// which are never sent.
    pub async fn events(&self) -> Vec<Value> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT payload FROM outbox WHERE message_type <> 'decoy' ORDER BY id",
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
        let deadline = Instant::now() + Duration::from_secs(30);
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

async fn maildev_list(api: &str) -> Vec<Value> {
    reqwest::get(format!("{api}/email"))
        .await
        .expect("maildev")
        .json()
        .await
        .expect("maildev JSON")
}

/// Waits (up to 30 s) until a /readyz answers 200 with nothing degraded: ready, and connected
/// to every backend (the broker's topology is declared, so a test can bind its queues).
pub async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            let ok = r.status() == StatusCode::OK;
            let body: Value = r.json().await.unwrap_or_default();
            if ok && body["degraded"].as_array().is_some_and(|d| d.is_empty()) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts an email worker (as `keyward worker` does) inside the test process.
fn start_worker(
    amqp_url: &str,
    mail_dir: PathBuf,
    store: keyward_storage::Store,
    smtp: Option<&str>,
    sms: &keyward_config::SmsSettings,
) -> PathBuf {
    use keyward_actors::notify::{parse_from, worker::Worker, Mailer};
    let worker = Worker {
        metrics: keyward_actors::metrics::Metrics::register(&prometheus::Registry::new())
            .expect("metrics"),
        amqp_url: amqp_url.to_owned(),
        mailer: Mailer::new(smtp, mail_dir.clone()).expect("mailer"),
        from: parse_from("Keyward <no-reply@localhost>").expect("sender"),
        store,
        clock: keyward_actors::system_clock(),
        consuming: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        templates: Default::default(),
        // NOTE: push jobs are tested in embedded mode; this worker logs them dead.
        vapid: None,
        http: Default::default(),
        // Texts land where the embedded node writes them, for the same helpers to read.
        sms: Arc::new(
            keyward_actors::notify::sms::SmsSender::new(
                sms.provider().expect("sms settings"),
                mail_dir.parent().expect("the mail drop is in the data dir"),
            )
            .expect("sms sender"),
        ),
    };
    actix_rt::spawn(worker.run());
    mail_dir
}

/// How to reach the test broker, or a panic that says how to provide one.
pub fn amqp_admin() -> (String, String) {
    let url = std::env::var("KEYWARD_TEST_AMQP_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let ctl = std::env::var("KEYWARD_TEST_RABBITMQCTL")
        .ok()
        .filter(|u| !u.is_empty());
    match (url, ctl) {
        (Some(u), Some(c)) => (u, c),
        _ => panic!("this test needs RabbitMQ: run it under scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored"),
    }
}

/// Runs rabbitmqctl against the test broker.
pub fn rabbitmqctl(args: &[&str]) {
    let (_, ctl) = amqp_admin();
    let out = std::process::Command::new(ctl)
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A RabbitMQ vhost made for one test and deleted when it ends.
pub struct TestVhost {
    pub name: String,
    pub url: String,
}

impl TestVhost {
    async fn create() -> TestVhost {
        let (base, _) = amqp_admin();
        let name = format!("kw_test_{}", uuid::Uuid::new_v4().simple());
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["-q", "add_vhost", &n]);
            rabbitmqctl(&["-q", "set_permissions", "-p", &n, "guest", ".*", ".*", ".*"]);
        })
        .await
        .expect("vhost setup");
        let (root, _) = base.rsplit_once('/').expect("AMQP URL has a vhost path");
        TestVhost {
            url: format!("{root}/{name}"),
            name,
        }
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Not joined: the broker is removed with scripts/services.sh's temp dir in any case.
        std::thread::spawn(move || {
            if let Ok(ctl) = std::env::var("KEYWARD_TEST_RABBITMQCTL") {
                let _ = std::process::Command::new(ctl)
                    .args(["-q", "delete_vhost", &name])
                    .output();
            }
        });
    }
}

/// Tests that stop the broker must not overlap with other broker tests.
pub async fn broker_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A queue of the test's own bound to `keyward.events`, as a product's service would bind one.
pub struct EventConsumer {
    pub channel: lapin::Channel,
    pub queue: String,
    _conn: lapin::Connection,
}

impl EventConsumer {
    /// Declares a durable queue `queue` bound to `keyward.events` with `pattern`.
    pub async fn bind(url: &str, queue: &str, pattern: &str) -> EventConsumer {
        Self::bind_to(url, queue, "keyward.events", pattern).await
    }

    /// Declares a durable queue `queue` bound to `exchange` with `pattern`.
    pub async fn bind_to(url: &str, queue: &str, exchange: &str, pattern: &str) -> EventConsumer {
        use lapin::options::{QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("test consumer connects");
        let channel = conn.create_channel().await.expect("channel");
        let opts = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), opts, FieldTable::default())
            .await
            .expect("queue");
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        EventConsumer {
            channel,
            queue: queue.to_owned(),
            _conn: conn,
        }
    }

    /// Reconnects to an existing queue (after a broker restart).
    pub async fn reopen(url: &str, queue: &str) -> EventConsumer {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("test consumer reconnects");
        let channel = conn.create_channel().await.expect("channel");
        EventConsumer {
            channel,
            queue: queue.to_owned(),
            _conn: conn,
        }
    }

    /// Takes (and acks) whatever the queue holds now.
    pub async fn drain(&self) -> Vec<lapin::message::Delivery> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        let mut got = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            m.delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            got.push(m.delivery);
        }
        got
    }

    /// Takes deliveries (acking each) until every type in `wanted` was seen, or 30 s passed.
    pub async fn collect(&self, wanted: &[&str]) -> Vec<lapin::message::Delivery> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got: Vec<lapin::message::Delivery> = Vec::new();
        loop {
            let seen = |k: &str| {
                got.iter()
                    .any(|d| d.properties.kind().as_ref().map(|t| t.as_str()) == Some(k))
            };
            if wanted.iter().all(|k| seen(k)) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "events {wanted:?} did not all arrive; got {:?}",
                got.iter()
                    .map(|d| d.properties.kind().clone())
                    .collect::<Vec<_>>()
            );
            match self
                .channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
                .await
                .expect("basic_get")
            {
                Some(m) => {
                    m.delivery
                        .ack(BasicAckOptions::default())
                        .await
                        .expect("ack");
                    got.push(m.delivery);
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl TestApp {
    /// The node's RabbitMQ URL (its own vhost), in distributed mode.
    pub fn amqp_url(&self) -> String {
        use secrecy::ExposeSecret;
        self.settings
            .amqp_url
            .as_ref()
            .expect("distributed mode")
            .expose_secret()
            .to_owned()
    }

    /// A second node on the same database and broker (another process in production). Like
    /// nodes behind one load balancer, it shares the first node's public URL (the issuer).
    pub async fn spawn_peer(&self) -> Node {
        self.spawn_peer_with_recheck(None).await
    }

    /// A peer that believes a session it read as live for `recheck`, and reads the outbox
    /// feed as rarely: with an hour, only a broadcast can tell it of a revocation in time.
    pub async fn spawn_peer_with_recheck(&self, recheck: Option<Duration>) -> Node {
        self.start_peer(self.settings.clone(), recheck, recheck)
            .await
    }

    /// A peer whose settings differ from this node's by `tweak`.
    pub async fn spawn_peer_with(&self, tweak: impl FnOnce(&mut Settings)) -> Node {
        let mut settings = self.settings.clone();
        tweak(&mut settings);
        self.start_peer(settings, None, None).await
    }

    /// A peer that has lost `keyward.broadcast`: its broker user may not read that exchange,
    /// so its broadcast consumer never binds and retries forever, as with a broken link. It
    /// believes a session it read as live for `recheck` without the outbox feed; the feed
    /// runs at its default interval.
    pub async fn spawn_peer_without_broadcast(&self, recheck: Duration) -> Node {
        let vhost = self._vhost.as_ref().expect("distributed mode").name.clone();
        let user = format!("kw_deaf_{}", uuid::Uuid::new_v4().simple());
        let u = user.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["-q", "add_user", &u, "deaf"]);
            rabbitmqctl(&[
                "-q",
                "set_permissions",
                "-p",
                &vhost,
                &u,
                ".*",
                ".*",
                "^(?!keyward\\.broadcast$).*",
            ]);
        })
        .await
        .expect("broker user setup");
        let url = self.amqp_url();
        let (scheme, rest) = url.split_once("://").expect("AMQP URL has a scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let mut settings = self.settings.clone();
        settings.amqp_url = Some(secrecy::SecretString::from(format!(
            "{scheme}://{user}:deaf@{host}"
        )));
        self.start_peer(settings, Some(recheck), None).await
    }

    async fn start_peer(
        &self,
        mut settings: Settings,
        recheck: Option<Duration>,
        feed_every: Option<Duration>,
    ) -> Node {
        settings.public_url = Some(self.base.clone());
        // The same clock as the first node: `advance` moves both.
        let o = self.clock_offset.clone();
        Node::start(
            &settings,
            StartOptions {
                clock: Some(Arc::new(move || {
                    Utc::now() + chrono::Duration::seconds(o.load(Ordering::SeqCst))
                })),
                hash_params: Some(HashParams::DANGER_TEST_ONLY),
                danger_test_panic_on_register: None,
                session_recheck: recheck,
                erase_every: None,
                feed_every,
            },
        )
        .await
        .expect("peer node starts")
    }
}

/// A verified user (registered through HTTP): their id and an access token.
pub async fn member(app: &TestApp, email: &str) -> (String, String) {
    app.verified_user(email, None).await;
    let pair = app.login_ok(email, PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    (me["id"].as_str().unwrap().to_owned(), token)
}

/// A service client's access token (client_credentials), for a client made as the CLI makes it.
pub async fn service_token(app: &TestApp, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let c = keyward_actors::admin::create_client(&app.node.contexts.store, "booking", &scopes)
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/v1/oauth/token"))
        .basic_auth(&c.client.client_id, Some(&c.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An administrator (created as the CLI does) and their access token.
pub async fn admin(app: &TestApp) -> (String, String) {
    let id = keyward_actors::admin::create_user(
        &app.settings,
        &app.node.contexts.store,
        "root@example.com",
        PASSWORD,
        &["admin".to_owned()],
    )
    .await
    .unwrap();
    let pair = app.login_ok("root@example.com", PASSWORD).await;
    (
        id.to_string(),
        pair["access_token"].as_str().unwrap().to_owned(),
    )
}

/// A TCP forwarder between a node and one backend, to stop that backend for this node alone
/// (other tests share the server): [`cut`](Self::cut) closes every forwarded connection and
/// the listening port, so the node sees what a stopped server shows (connections reset, new
/// ones refused); [`reject`](Self::reject) closes them too but goes on accepting, closing each
/// new connection at once, as a pooler or load balancer in front of a stopped server does
/// (a client's connect fails at once instead of retrying a refused port);
/// [`restore`](Self::restore) forwards on the same port again.
pub struct TcpGate {
    pub port: u16,
    target: std::net::SocketAddr,
    forwarder: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TcpGate {
    /// Forwards a new local port to `target` (host:port).
    pub async fn open(target: &str) -> TcpGate {
        let target = tokio::net::lookup_host(target)
            .await
            .expect("gate target resolves")
            .next()
            .expect("gate target has an address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("gate listens");
        let port = listener.local_addr().expect("gate port").port();
        let gate = TcpGate {
            port,
            target,
            forwarder: std::sync::Mutex::new(None),
        };
        gate.forward(listener);
        gate
    }

    fn forward(&self, listener: tokio::net::TcpListener) {
        let target = self.target;
        let task = tokio::spawn(async move {
            // Dropped with this task (by `cut`): every forwarded connection ends with it.
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.forwarder.lock().expect("gate lock") = Some(task);
    }

    /// The backend is gone for the node: open connections are closed, new ones refused.
    pub async fn cut(&self) {
        let task = self.forwarder.lock().expect("gate lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// The backend is gone behind a front that still accepts: open connections are closed,
    /// and each new one is accepted and closed at once.
    pub async fn reject(&self) {
        self.cut().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("gate listens again on its port");
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                drop(inbound);
            }
        });
        *self.forwarder.lock().expect("gate lock") = Some(task);
    }

    /// The backend is back, on the same port.
    pub async fn restore(&self) {
        // After `reject`, its listener goes first.
        self.cut().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("gate listens again on its port");
        self.forward(listener);
    }

    /// `url` with its `host:port` replaced by this gate's.
    pub fn route(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
        let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let at = if credentials.is_empty() { "" } else { "@" };
        format!("{scheme}://{credentials}{at}127.0.0.1:{}{path}", self.port)
    }
}

/// The `host:port` of a URL such as `postgres://user:pass@host:port/db`.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// The claims of a token, unverified.
pub fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}
