//! Signing in Vault Transit (`KEYWARD_KEYS__BACKEND=vault`), against the real OpenBao server
//! that `scripts/services.sh openbao` starts: the private key stays in OpenBao, JWKS publishes
//! its public halves, concurrent signatures share Transit calls, and OpenBao down or slow is
//! a 503 that writes nothing, never a hang.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{member, spawn_app_with, Options, TestApp, PASSWORD};
use crate::keys::{rotate, token_from};

fn vault() -> (String, String) {
    let need = "needs KEYWARD_TEST_VAULT_ADDR and _TOKEN: run under scripts/services.sh openbao";
    (
        std::env::var("KEYWARD_TEST_VAULT_ADDR").expect(need),
        std::env::var("KEYWARD_TEST_VAULT_TOKEN").expect(need),
    )
}

/// A Transit key of the test's own.
fn key_name() -> String {
    format!("keyward-{}", uuid::Uuid::new_v4().simple())
}

/// A token of the policy docs/operations.md gives for `key`, and nothing more.
async fn policy_token(key: &str) -> String {
    policy_token_for(&[key]).await
}

/// A token of the documented policy for each of `keys` (a move from one Transit key to
/// another needs both), and nothing more.
async fn policy_token_for(keys: &[&str]) -> String {
    let (addr, root) = vault();
    let http = reqwest::Client::new();
    for key in keys {
        let policy = format!(
            "path \"transit/keys/{key}\" {{ capabilities = [\"read\", \"create\", \"update\"] }}\n\
             path \"transit/keys/{key}/rotate\" {{ capabilities = [\"update\"] }}\n\
             path \"transit/sign/{key}\" {{ capabilities = [\"update\"] }}\n"
        );
        let r = http
            .put(format!("{addr}/v1/sys/policies/acl/{key}"))
            .header("X-Vault-Token", &root)
            .json(&serde_json::json!({ "policy": policy }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let t: Value = http
        .post(format!("{addr}/v1/auth/token/create"))
        .header("X-Vault-Token", &root)
        .json(&serde_json::json!({ "policies": keys, "no_default_policy": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    t["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// A node signing with `key` of the Transit engine at `addr`, with a token of the documented
/// policy.
async fn vault_app(addr: String, key: String, timeout_ms: u64) -> TestApp {
    vault_app_graced(addr, key, timeout_ms, 10).await
}

/// The same, with a refresh's grace window of `grace_secs`.
async fn vault_app_graced(addr: String, key: String, timeout_ms: u64, grace_secs: u64) -> TestApp {
    let token = policy_token(&key).await;
    spawn_app_with(Options {
        settings: Some(Box::new(move |s| {
            s.keys.backend = "vault".into();
            s.keys.vault_addr = Some(addr);
            s.keys.vault_token = Some(token.into());
            s.keys.vault_key = key;
            s.keys.vault_timeout_ms = timeout_ms;
            s.tokens.refresh_grace_secs = grace_secs;
        })),
        ..Default::default()
    })
    .await
}

/// The Transit key's public halves by version, as OpenBao itself tells them (base64url, as
/// JWKS writes `x`).
async fn transit_public_keys(key: &str) -> Vec<String> {
    use base64::Engine as _;
    let (addr, token) = vault();
    let r: Value = reqwest::Client::new()
        .get(format!("{addr}/v1/transit/keys/{key}"))
        .header("X-Vault-Token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = r["data"]["keys"].as_object().unwrap();
    let mut versions: Vec<(u64, String)> = keys
        .iter()
        .map(|(v, k)| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(k["public_key"].as_str().unwrap())
                .unwrap();
            (
                v.parse().unwrap(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            )
        })
        .collect();
    versions.sort();
    versions.into_iter().map(|(_, x)| x).collect()
}

async fn jwks(app: &TestApp) -> Vec<Value> {
    let j: Value = reqwest::get(app.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    j["keys"].as_array().unwrap().clone()
}

/// Waits (up to 5 s: nodes reload their keys within a second) until `app` publishes `x`.
async fn wait_published(app: &TestApp, x: &str) {
    for _ in 0..100 {
        if jwks(app).await.iter().any(|k| k["x"] == x) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} does not publish the Transit key {x}", app.base);
}

fn header(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).unwrap()
}

/// True when `token`'s signature verifies under the raw Ed25519 key `x` (base64url).
fn signed_by(token: &str, x: &str) -> bool {
    let key = jsonwebtoken::DecodingKey::from_ed_components(x).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
}

/// One labelled sample of the node's metrics.
async fn sample(app: &TestApp, line_start: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.management))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn stored_key_rows(app: &TestApp) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db.get_database_backend();
    app.db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT private_key_enc FROM signing_keys",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "private_key_enc").unwrap())
        .collect()
}

#[actix_web::test]
#[ignore = "needs OpenBao: scripts/services.sh openbao"]
async fn tokens_are_signed_by_vault_transit_and_its_public_halves_are_published() {
    let (addr, _) = vault();
    let key = key_name();
    // The node makes the Transit key at first start.
    let app = vault_app(addr, key.clone(), 2000).await;
    let (_, token) = member(&app, "vee@example.com").await;
    let versions = transit_public_keys(&key).await;
    assert_eq!(versions.len(), 1, "the node made an ed25519 Transit key");
    let published = jwks(&app).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["x"], versions[0].as_str());
    assert_eq!(header(&token).kid.as_deref(), published[0]["kid"].as_str());
    assert!(signed_by(&token, &versions[0]), "OpenBao's key signed it");
    // What the database holds names the key version; no private key is stored.
    let rows = stored_key_rows(&app).await;
    assert_eq!(rows, [format!("transit:1:transit:{key}")]);
    // Service clients' tokens are signed there too.
    let svc = crate::helpers::service_token(&app, &["notifications:send"]).await;
    assert!(signed_by(&svc, &versions[0]));
    assert!(sample(&app, "keyward_signatures_total{backend=\"vault\"} ").await >= 2.0);

    // Rotation makes a new Transit version, published at once, signing after the lead.
    let new_kid = rotate(&app, 600).await;
    let versions = transit_public_keys(&key).await;
    assert_eq!(versions.len(), 2);
    wait_published(&app, &versions[1]).await;
    assert!(jwks(&app)
        .await
        .iter()
        .any(|k| k["kid"] == new_kid.as_str()));
    let before = app.login_ok("vee@example.com", PASSWORD).await;
    let before = before["access_token"].as_str().unwrap();
    assert!(
        signed_by(before, &versions[0]),
        "the old version signs until the lead ends"
    );
    app.advance(601);
    let after = app.login_ok("vee@example.com", PASSWORD).await;
    let after = after["access_token"].as_str().unwrap();
    assert_eq!(header(after).kid.as_deref(), Some(new_kid.as_str()));
    assert!(signed_by(after, &versions[1]));
    for t in [before, after] {
        let r = app.get_bearer("/v1/users/me", t).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // `keys list` names where each key is.
    let listed = keyward_actors::keys::list(&app.node.contexts.store)
        .await
        .unwrap();
    let held: Vec<_> = listed.iter().map(|k| k.held.clone()).collect();
    assert!(held.contains(&format!("vault:transit/{key}#2")), "{held:?}");
}

#[actix_web::test]
#[ignore = "needs OpenBao: scripts/services.sh openbao"]
async fn a_node_moving_to_vault_publishes_the_transit_key_before_it_signs() {
    let (addr, _) = vault();
    let key = key_name();
    let token = policy_token(&key).await;
    // A node on local keys, then a second one on the same database with the Vault backend:
    // the Transit key is published at once and signs after the lead, as a rotation.
    let app = spawn_app_with(Options::default()).await;
    let (_, local_token) = member(&app, "mo@example.com").await;
    let local_kid = header(&local_token).kid.unwrap();
    let k = key.clone();
    let peer = app
        .spawn_peer_with(move |s| {
            s.keys.backend = "vault".into();
            s.keys.vault_addr = Some(addr);
            s.keys.vault_token = Some(token.into());
            s.keys.vault_key = k;
        })
        .await;
    let peer_base = format!("http://{}", peer.public_addr);
    let versions = transit_public_keys(&key).await;
    let early = token_from(&app, &peer_base, "mo@example.com").await;
    assert_eq!(
        header(&early).kid.unwrap(),
        local_kid,
        "the local key signs until the lead ends"
    );
    // The first node hears of the new key and publishes it.
    wait_published(&app, &versions[0]).await;
    app.advance(601);
    let late = token_from(&app, &peer_base, "mo@example.com").await;
    assert!(
        signed_by(&late, &versions[0]),
        "after the lead, OpenBao signs"
    );
    // The node still on local keys accepts it.
    assert_eq!(
        app.get_bearer("/v1/users/me", &late).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
#[ignore = "needs OpenBao: scripts/services.sh openbao"]
async fn a_node_moved_to_another_transit_key_signs_with_the_old_one_until_the_lead_ends() {
    let (addr, _) = vault();
    let (old, new) = (key_name(), key_name());
    let token = policy_token_for(&[&old, &new]).await;
    let settings = |key: String| {
        let (addr, token) = (addr.clone(), token.clone());
        move |s: &mut keyward_config::Settings| {
            s.keys.backend = "vault".into();
            s.keys.vault_addr = Some(addr);
            s.keys.vault_token = Some(token.into());
            s.keys.vault_key = key;
        }
    };
    let app = spawn_app_with(Options {
        settings: Some(Box::new(settings(old.clone()))),
        ..Default::default()
    })
    .await;
    let (_, first) = member(&app, "tam@example.com").await;
    let old_versions = transit_public_keys(&old).await;
    assert!(signed_by(&first, &old_versions[0]));
    // A second node names another Transit key (KEYWARD_KEYS__VAULT_KEY changed in a rolling
    // deploy): it makes that key and schedules it after the lead, like a rotation. Until then
    // both nodes sign with the old key, through the same Vault and token: no gap.
    let peer = app.spawn_peer_with(settings(new.clone())).await;
    let peer_base = format!("http://{}", peer.public_addr);
    let new_versions = transit_public_keys(&new).await;
    let early = token_from(&app, &peer_base, "tam@example.com").await;
    assert!(
        signed_by(&early, &old_versions[0]),
        "the old Transit key signs until the lead ends"
    );
    wait_published(&app, &new_versions[0]).await;
    assert_eq!(
        app.get_bearer("/v1/users/me", &early).await.status(),
        StatusCode::OK
    );
    app.advance(601);
    // After the lead the new key signs, on the moved node and on the one not yet moved.
    for base in [&peer_base, &app.base] {
        let late = token_from(&app, base, "tam@example.com").await;
        assert!(signed_by(&late, &new_versions[0]), "{base}");
        assert_eq!(
            app.get_bearer("/v1/users/me", &late).await.status(),
            StatusCode::OK
        );
    }
}

/// What the relay does with the bytes a node sends to OpenBao.
const PASS: u8 = 0;
/// Holds them: OpenBao seems to hang.
const HANG: u8 = 1;
/// Closes the connection: OpenBao seems down.
const CLOSE: u8 = 2;
/// Passes them after 300 ms: OpenBao is slow.
const SLOW: u8 = 3;

/// A TCP relay in front of OpenBao that a test turns into a slow, hanging or closed door,
/// for new and kept-alive connections alike.
struct Relay {
    addr: String,
    mode: Arc<AtomicU8>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(PASS));
        let m = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, target) = (m.clone(), target.clone());
                tokio::spawn(async move {
                    if m.load(Ordering::SeqCst) == CLOSE {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            match m.load(Ordering::SeqCst) {
                                HANG => std::future::pending::<()>().await,
                                CLOSE => return,
                                SLOW => tokio::time::sleep(Duration::from_millis(300)).await,
                                _ => {}
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        Relay { addr, mode }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn session_count(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) AS n FROM sessions").await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db.get_database_backend();
    let row = app
        .db
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A 503 `signing_unavailable` problem with Retry-After.
async fn assert_signing_unavailable(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert!(r.headers().contains_key("retry-after"), "{what}");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "signing_unavailable", "{what}: {p}");
}

#[actix_web::test]
#[ignore = "needs OpenBao: scripts/services.sh openbao"]
async fn vault_down_or_hanging_is_a_503_that_writes_nothing_and_a_retry_succeeds() {
    let (addr, _) = vault();
    let relay = Relay::start(&addr).await;
    // A grace window of 1 s: the retry below comes after it.
    let app = vault_app_graced(relay.addr.clone(), key_name(), 500, 1).await;
    let (_, _) = member(&app, "dee@example.com").await;
    let pair = app.login_ok("dee@example.com", PASSWORD).await;
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let login = || {
        client
            .post(app.url("/v1/auth/login"))
            .json(&serde_json::json!({"login": "dee@example.com", "password": PASSWORD}))
            .send()
    };
    for (mode, what) in [(HANG, "OpenBao hangs"), (CLOSE, "OpenBao is down")] {
        relay.set(mode);
        let sessions = session_count(&app).await;
        // The client's own 10 s timeout would fail this call: the node answers first.
        let r = login().await.expect("an answer, not a hang");
        assert_signing_unavailable(r, what).await;
        assert_eq!(
            session_count(&app).await,
            sessions,
            "{what}: no session was opened"
        );
    }
    // A refresh during the outage is refused and rotates nothing, so the same refresh token
    // works once OpenBao is back, however long that took: a retry after the grace window is
    // not taken for reuse (which would end the session).
    let rotated = "SELECT COUNT(*) AS n FROM refresh_tokens WHERE rotated_at IS NOT NULL";
    for (mode, what) in [(HANG, "OpenBao hangs"), (CLOSE, "OpenBao is down")] {
        relay.set(mode);
        let r = app.refresh(&refresh).await;
        assert_signing_unavailable(r, &format!("refresh while {what}")).await;
        assert_eq!(
            count(&app, rotated).await,
            0,
            "{what}: no token was rotated"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.set(PASS);
    let r = app.refresh(&refresh).await;
    assert_eq!(r.status(), StatusCode::OK, "the retried refresh succeeds");
    let next: Value = r.json().await.unwrap();
    let r = app.refresh(next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK, "the session lives on");
    let r = login().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(sample(&app, "keyward_signing_failures_total ").await >= 3.0);
}

#[actix_web::test]
#[ignore = "needs OpenBao: scripts/services.sh openbao"]
async fn signatures_asked_for_at_once_share_transit_calls() {
    let (addr, _) = vault();
    let relay = Relay::start(&addr).await;
    let app = vault_app(relay.addr.clone(), key_name(), 5000).await;
    let mut refresh_tokens = Vec::new();
    for i in 0..24 {
        let email = format!("b{i}@example.com");
        app.verified_user(&email, None).await;
        let pair = app.login_ok(&email, PASSWORD).await;
        refresh_tokens.push(pair["refresh_token"].as_str().unwrap().to_owned());
    }
    let batches = sample(&app, "keyward_signing_batches_total ").await;
    let signed = sample(&app, "keyward_signatures_total{backend=\"vault\"} ").await;
    // OpenBao answers slowly: the signatures asked for meanwhile wait for a free call.
    relay.set(SLOW);
    let answers = futures::future::join_all(refresh_tokens.iter().map(|t| app.refresh(t))).await;
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK);
    }
    let calls = sample(&app, "keyward_signing_batches_total ").await - batches;
    let signatures = sample(&app, "keyward_signatures_total{backend=\"vault\"} ").await - signed;
    assert_eq!(signatures, 24.0);
    assert!(calls <= 12.0, "24 signatures took {calls} Transit calls");
}
