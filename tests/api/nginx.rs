//! NGINX forward-auth: deploy/nginx/forward-auth.conf, exactly as committed but for its three
//! marked addresses, run by a real nginx (KEYWARD_TEST_NGINX, as `scripts/services.sh nginx`
//! exports) between a client and a small app, with a whole Keyward node as the authenticator.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp, PASSWORD};

const CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/nginx/forward-auth.conf"
);
const NEEDS_NGINX: &str =
    "needs nginx: run under scripts/services.sh nginx -- cargo test --test api nginx -- --include-ignored";

/// The app behind nginx: answers every request with what it was sent, and counts them.
struct Upstream {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = web::Data::from(calls.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(counter.clone())
                .default_service(web::to(echo))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("upstream binds");
        let addr = server.addrs()[0];
        actix_rt::spawn(server.run());
        Upstream { addr, calls }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn echo(req: HttpRequest, body: web::Bytes, calls: web::Data<AtomicUsize>) -> HttpResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    // Every value under each name: a forged header passed along beside the real one shows.
    let all = |name: &str| -> Vec<String> {
        req.headers()
            .get_all(name)
            .map(|v| v.to_str().unwrap_or("<not ASCII>").to_owned())
            .collect()
    };
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "body": String::from_utf8_lossy(&body),
        "user_id": all("x-keyward-user-id"),
        "session_id": all("x-keyward-session-id"),
        "roles": all("x-keyward-roles"),
        "authorization": req.headers().contains_key("authorization"),
    }))
}

/// nginx running the committed example in a temp dir of its own; killed on drop.
struct Nginx {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(keyward: SocketAddr, app: SocketAddr) -> Nginx {
        let bin = std::env::var("KEYWARD_TEST_NGINX")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| panic!("this test {NEEDS_NGINX}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = std::fs::read_to_string(CONF).expect("deploy/nginx/forward-auth.conf");
        let conf = render(&conf, port, keyward, app);
        std::fs::write(dir.path().join("forward-auth.conf"), conf).expect("write conf");
        let d = dir.path().display();
        // Everything nginx writes stays in the temp dir. One process (master_process off): no
        // worker outlives a killed master, and no user switch when the suite runs as root.
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             lock_file {d}/nginx.lock;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             include {d}/forward-auth.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
        let out = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts: {e}"));
        let mut nginx = Nginx {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait().expect("nginx status") {
                panic!("nginx exited ({status}):\n{}", nginx.logs());
            }
            assert!(
                Instant::now() < deadline,
                "nginx never listened:\n{}",
                nginx.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("local addr").port()
}

/// The committed conf with its LISTEN, KEYWARD and APP addresses replaced, and nothing else.
fn render(conf: &str, port: u16, keyward: SocketAddr, app: SocketAddr) -> String {
    let swaps = [
        (
            "listen 8000; # LISTEN",
            format!("listen 127.0.0.1:{port}; # LISTEN"),
        ),
        (
            "server 127.0.0.1:8080; # KEYWARD",
            format!("server {keyward}; # KEYWARD"),
        ),
        (
            "server 127.0.0.1:3000; # APP",
            format!("server {app}; # APP"),
        ),
    ];
    let mut conf = conf.to_owned();
    for (from, to) in swaps {
        assert_eq!(
            conf.matches(from).count(),
            1,
            "{CONF} must hold `{from}` exactly once for this test to run it"
        );
        conf = conf.replace(from, &to);
    }
    conf
}

/// A Keyward node, the app, and nginx in front of the app.
async fn stack() -> (TestApp, Upstream, Nginx) {
    let app = spawn_app().await;
    let upstream = Upstream::start();
    let nginx = Nginx::start(app.node.public_addr, upstream.addr).await;
    (app, upstream, nginx)
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} in {:?}", r.headers()))
        .to_str()
        .expect("ASCII header")
}

#[actix_web::test]
#[ignore = "needs nginx: run under scripts/services.sh nginx -- …"]
async fn nginx_hands_the_app_keyward_identity_that_clients_cannot_forge() {
    let (app, upstream, nginx) = stack().await;
    // A second role, as an operator would declare one.
    let support = keyward_storage::RoleRecord {
        name: "support".into(),
        description: String::new(),
        permissions: vec!["tickets:read".into()],
        source: "api".into(),
        updated_at: chrono::Utc::now(),
    };
    app.node
        .contexts
        .store
        .access()
        .put_role(&support)
        .await
        .unwrap();
    let root_id = keyward_actors::admin::create_user(
        &app.settings,
        &app.node.contexts.store,
        "root@example.com",
        PASSWORD,
        &["support".to_owned(), "admin".to_owned()],
    )
    .await
    .unwrap()
    .to_string();
    let pair = app.login_ok("root@example.com", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();

    // A valid bearer reaches the app with the identity Keyward vouched for; what the client
    // claimed under the same names is gone, not passed along beside it.
    let r = app
        .client
        .get(nginx.url("/orders?page=2"))
        .bearer_auth(token)
        .header("X-Keyward-User-Id", "00000000-0000-0000-0000-000000000001")
        .header("x-keyward-session-id", "forged")
        .header("X-KEYWARD-ROLES", "superuser")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", nginx.logs());
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["uri"], "/orders?page=2");
    assert_eq!(seen["user_id"], json!([root_id]), "{seen}");
    assert_eq!(seen["session_id"], json!([pair["session_id"]]), "{seen}");
    assert_eq!(seen["roles"], json!(["admin,support"]), "{seen}");
    assert_eq!(seen["authorization"], true);

    // Request bodies still reach the app (only the verification subrequest drops them).
    let r = app
        .client
        .post(nginx.url("/orders"))
        .bearer_auth(token)
        .json(&json!({"item": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", nginx.logs());
    let seen: Value = r.json().await.unwrap();
    assert_eq!(
        (&seen["method"], &seen["body"]),
        (&json!("POST"), &json!(r#"{"item":7}"#))
    );
    assert_eq!(seen["user_id"], json!([root_id]));

    // A user without roles gets no roles header at all, whatever the client sent.
    app.verified_user("ann@example.com", None).await;
    let ann = app.login_ok("ann@example.com", PASSWORD).await;
    let r = app
        .client
        .get(nginx.url("/"))
        .bearer_auth(ann["access_token"].as_str().unwrap())
        .header("X-Keyward-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", nginx.logs());
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["roles"], json!([]), "{seen}");
    assert_eq!(seen["session_id"], json!([ann["session_id"]]));
    assert_eq!(upstream.calls(), 3);
}

#[actix_web::test]
#[ignore = "needs nginx: run under scripts/services.sh nginx -- …"]
async fn nginx_refuses_missing_bad_and_revoked_tokens_without_calling_the_app() {
    let (app, upstream, nginx) = stack().await;
    app.verified_user("max@example.com", None).await;
    let pair = app.login_ok("max@example.com", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    let get = |token: Option<&str>| {
        let r = app.client.get(nginx.url("/orders"));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
        .send()
    };

    // No token: 401 with Keyward's challenge (copied over by auth_request) and a problem body.
    let r = get(None).await.unwrap();
    assert_eq!(header(&r, "www-authenticate"), "Bearer");
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );

    let r = get(Some("not.a.token")).await.unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(problem(r).await.0, StatusCode::UNAUTHORIZED);

    // The verification location is not reachable from outside.
    let r = app
        .client
        .get(nginx.url("/_keyward/verify"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(upstream.calls(), 0, "refused requests never reach the app");

    let r = get(Some(token)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", nginx.logs());
    assert_eq!(upstream.calls(), 1);

    // Logout ends the session: the very next request through nginx is refused.
    let r = app.post_bearer("/v1/auth/logout", token, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = get(Some(token)).await.unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(problem(r).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.calls(), 1);

    // Keyward down: 503 to retry (auth_request alone would answer 500), and still no app call.
    let live = app.login_ok("max@example.com", PASSWORD).await;
    app.node.stop().await;
    let r = get(live["access_token"].as_str()).await.unwrap();
    assert_eq!(header(&r, "retry-after"), "1");
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("service_unavailable")),
        "{}",
        nginx.logs()
    );
    assert_eq!(upstream.calls(), 1);
}
