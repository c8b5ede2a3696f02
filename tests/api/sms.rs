//! SMS through HTTP: a user proves a phone number with the code an SMS brings, and products'
//! notifications on the `sms` channel reach that number through each provider: the embedded
//! log (files under `{data_dir}/sms/`), a signed webhook and Twilio's Messages API (both played
//! by HTTP servers in the test, which check what a real receiver would).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{admin, broker_lock, member, problem, spawn_app_with, Options, TestApp};

/// The texts the log provider wrote, oldest first.
pub(crate) fn texts(app: &TestApp) -> Vec<Value> {
    let dir = app.settings.data_dir.join("sms");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

/// Waits for the `n`th text to `to` and answers it.
pub(crate) async fn wait_text(app: &TestApp, to: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mine: Vec<_> = texts(app).into_iter().filter(|t| t["to"] == to).collect();
        if mine.len() >= n {
            return mine[n - 1].clone();
        }
        assert!(Instant::now() < deadline, "no text #{n} to {to}: {mine:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn code_of(text: &Value) -> String {
    let t = text["text"].as_str().unwrap();
    let digits: String = t
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no 6-digit code in {t}"))
        .to_owned();
    digits
}

async fn start_phone(app: &TestApp, token: &str, phone: &str) -> reqwest::Response {
    app.post_bearer("/v1/users/me/phone", token, Some(json!({ "phone": phone })))
        .await
}

async fn confirm(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    app.post_bearer(
        "/v1/users/me/phone/confirm",
        token,
        Some(json!({ "code": code })),
    )
    .await
}

/// A user whose phone is proven, as the API proves it.
pub(crate) async fn with_phone(app: &TestApp, email: &str, phone: &str) -> (String, String) {
    let (id, token) = member(app, email).await;
    let n = texts(app).iter().filter(|t| t["to"] == phone).count();
    assert_eq!(
        start_phone(app, &token, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let code = code_of(&wait_text(app, phone, n + 1).await);
    assert_eq!(confirm(app, &token, &code).await.status(), StatusCode::OK);
    (id, token)
}

async fn service(app: &TestApp) -> String {
    crate::helpers::service_token(app, &["notifications:send"]).await
}

async fn send_sms(app: &TestApp, svc: &str, to: &[&str], key: &str) {
    let r = app
        .post_bearer(
            "/v1/notifications",
            svc,
            Some(json!({
                "to": to,
                "template": "generic",
                "variables": {"title": "Reminder", "body": "Dr. Ivanova tomorrow at 10:00"},
                "category": "general",
                "channels": ["sms"],
                "idempotency_key": key,
            })),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
}

/// Waits until `user`'s sms delivery has left `queued`; answers the row.
async fn sms_row(app: &TestApp, root: &str, user: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body: Value = app
            .get_bearer(&format!("/v1/admin/notifications?user_id={user}"), root)
            .await
            .json()
            .await
            .unwrap();
        let rows = body["items"].as_array().unwrap().clone();
        if let Some(r) = rows
            .iter()
            .find(|r| r["channel"] == "sms" && r["status"] != "queued")
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the sms delivery stayed queued: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_user_proves_a_phone_with_the_sms_code_and_sms_notifications_reach_it() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let phone = "+79161234567";

    let (status, p) = problem(start_phone(&app, &token, "8 916 123").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["field"], "phone", "{p}");

    let r = start_phone(&app, &token, "+7 (916) 123-45-67").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(sent["phone"], phone);
    assert_eq!(sent["expires_in"], 300);
    let first = wait_text(&app, phone, 1).await;
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .contains("verification code"),
        "{first}"
    );

    // Another code at once is refused; after 30 s it replaces the first.
    let r = start_phone(&app, &token, phone).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    app.advance(31);
    assert_eq!(
        start_phone(&app, &token, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let code = code_of(&wait_text(&app, phone, 2).await);
    let old = code_of(&first);

    let (status, p) = problem(confirm(&app, &token, "12345").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["field"], "code");
    if old != code {
        let (status, p) = problem(confirm(&app, &token, &old).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p["errors"][0]["code"], "invalid_code",
            "the first code died: {p}"
        );
    }
    let r = confirm(&app, &token, &code).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"phone": phone, "phone_verified": true}));
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["phone"].clone(), me["phone_verified"].clone()),
        (json!(phone), json!(true))
    );
    let (status, p) = problem(confirm(&app, &token, &code).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code is single use");
    assert_eq!(p["errors"][0]["code"], "no_pending_code");

    // The product's reminder reaches the proven number; a user without one is logged skipped.
    let (bob, _) = member(&app, "bob@example.com").await;
    let svc = service(&app).await;
    send_sms(&app, &svc, &[&ann, &bob], "reminder-1").await;
    let text = wait_text(&app, phone, 3).await;
    assert_eq!(text["text"], "Reminder: Dr. Ivanova tomorrow at 10:00");
    let row = sms_row(&app, &root, &ann).await;
    assert_eq!(row["status"], "sent", "{row}");
    let row = sms_row(&app, &root, &bob).await;
    assert_eq!(row["status"], "skipped");
    assert!(
        row["answer"].as_str().unwrap().contains("verified phone"),
        "{row}"
    );

    // A number changed by a profile edit is unproven: no SMS goes to it.
    let r = app
        .client
        .patch(app.url("/v1/users/me"))
        .bearer_auth(&token)
        .json(&json!({"phone": "+79160000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    send_sms(&app, &svc, &[&ann], "reminder-2").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body: Value = app
            .get_bearer(&format!("/v1/admin/notifications?user_id={ann}"), &root)
            .await
            .json()
            .await
            .unwrap();
        let skipped = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["channel"] == "sms" && r["status"] == "skipped")
            .count();
        if skipped == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(texts(&app).len(), 3, "nothing went to the unproven number");
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn distributed_the_worker_texts_the_code_and_the_notification() {
    let _broker = broker_lock().await;
    let app = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&app).await;
    let phone = "+79161234567";
    let (ann, _) = with_phone(&app, "ann@example.com", phone).await;
    let svc = service(&app).await;
    send_sms(&app, &svc, &[&ann], "d-1").await;
    assert_eq!(sms_row(&app, &root, &ann).await["status"], "sent");
    assert_eq!(
        wait_text(&app, phone, 2).await["text"],
        "Reminder: Dr. Ivanova tomorrow at 10:00"
    );
}

#[actix_web::test]
async fn five_wrong_codes_kill_the_code_and_a_code_dies_of_age() {
    let app = spawn_app_with(Options::default()).await;
    let (_, token) = member(&app, "ann@example.com").await;
    let phone = "+4915112345678";
    assert_eq!(
        start_phone(&app, &token, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let code = code_of(&wait_text(&app, phone, 1).await);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, p) = problem(confirm(&app, &token, wrong).await).await;
        assert_eq!(
            (status, p["errors"][0]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_code"))
        );
    }
    let (status, p) = problem(confirm(&app, &token, &code).await).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the right code after five wrong ones"
    );
    assert_eq!(p["errors"][0]["code"], "code_expired");

    app.advance(31);
    assert_eq!(
        start_phone(&app, &token, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let code = code_of(&wait_text(&app, phone, 2).await);
    app.advance(5 * 60);
    let (status, p) = problem(confirm(&app, &token, &code).await).await;
    assert_eq!(
        (status, p["errors"][0]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("code_expired"))
    );
}

#[actix_web::test]
async fn an_sms_pumping_run_gets_at_most_one_percent_of_its_attempts_sent() {
    // 10,000 requests for codes to 1,000 numbers, from 100 accounts behind 50 addresses.
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.http.trusted_proxies = "127.0.0.1/32".into())),
        ..Options::default()
    })
    .await;
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(member(&app, &format!("pump{i}@example.com")).await.1);
    }
    let attempts = 10_000usize;
    let client = &app.client;
    let replies: Vec<StatusCode> = futures::stream::iter(0..attempts)
        .map(|i| {
            let url = app.url("/v1/users/me/phone");
            let token = tokens[i % 100].clone();
            async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .header(
                        "x-forwarded-for",
                        format!("198.51.100.{}", (i * 7) % 50 + 1),
                    )
                    .json(&json!({"phone": format!("+1555000{:04}", i % 1000)}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let accepted = replies
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let refused = replies
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(accepted + refused, attempts, "only 202 and 429");
    // Every accepted request is a billable text.
    let deadline = Instant::now() + Duration::from_secs(15);
    while texts(&app).len() < accepted {
        assert!(
            Instant::now() < deadline,
            "{} of {accepted} texts",
            texts(&app).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = texts(&app).len();
    assert!(sent > 0, "the budget lets the first codes through");
    assert!(
        sent * 100 <= attempts,
        "{sent} texts for {attempts} attempts: more than 1%"
    );
}

/// What a provider double received: headers and body of each request.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// An HTTP server standing in for a provider: records each request and answers `reply` for it.
fn provider(reply: fn(&str) -> (u16, Value)) -> (String, Seen) {
    let seen: Seen = Default::default();
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let s = s.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: String| {
            let s = s.clone();
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let (status, answer) = reply(&body);
                s.lock().unwrap().push((headers, body));
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                    .json(answer)
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (format!("http://{addr}"), seen)
}

/// The first request a provider double received, once it came.
async fn first_request(seen: &Seen) -> (Vec<(String, String)>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the provider got nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = seen.lock().unwrap()[0].clone();
    first
}

/// Gives `user` a verified phone straight in the store (as a proven number would be), for a
/// number whose code the test's provider never delivers.
async fn verified_phone_in_store(app: &TestApp, user: &str, phone: &str) {
    let id = keyward_messages::UserId(user.parse().unwrap());
    let store = &app.node.contexts.store;
    let mut p = store.profiles().get(id).await.unwrap().unwrap_or_else(|| {
        keyward_storage::ProfileRecord::empty(
            id,
            keyward_messages::profiles::Visibility::Users,
            chrono::Utc::now(),
        )
    });
    p.phone = Some(phone.into());
    p.phone_verified = true;
    store.profiles().put(&p).await.unwrap();
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

const SECRET: &str = "test-webhook-secret-0123456789";

/// A node whose SMS go to the webhook at `url`, signed with [`SECRET`].
async fn webhook_app(url: String, amqp: bool) -> TestApp {
    spawn_app_with(Options {
        amqp,
        settings: Some(Box::new(move |s| {
            s.sms.provider = "webhook".into();
            s.sms.webhook_url = Some(format!("{url}/send"));
            s.sms.webhook_secret = Some(SECRET.into());
        })),
        ..Options::default()
    })
    .await
}

#[actix_web::test]
async fn a_webhook_provider_gets_each_text_signed_and_a_refusal_is_logged_dead() {
    // The receiver refuses one number for good.
    let (url, seen) = provider(|body| {
        if body.contains("+15005550001") {
            (400, json!({"error": "unroutable number"}))
        } else {
            (200, json!({"queued": true}))
        }
    });
    let app = webhook_app(url, false).await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;

    assert_eq!(
        start_phone(&app, &token, "+15005550006").await.status(),
        StatusCode::ACCEPTED
    );
    let (headers, body) = first_request(&seen).await;
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["to"], "+15005550006");
    // The receiver's check: HMAC-SHA256 over "<t>.<body>" with the shared secret, fresh t.
    let sig = header(&headers, "x-keyward-signature");
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",v1="))
        .unwrap_or_else(|| panic!("{sig}"));
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(
        v1,
        hex_of(&mac.finalize().into_bytes()),
        "the signature checks out"
    );
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "t is the send time: {age}");
    assert!(!header(&headers, "idempotency-key").is_empty());
    let code = code_of(&got);
    assert_eq!(confirm(&app, &token, &code).await.status(), StatusCode::OK);

    let svc = service(&app).await;
    send_sms(&app, &svc, &[&ann], "w-1").await;
    let row = sms_row(&app, &root, &ann).await;
    assert_eq!(row["status"], "sent", "{row}");
    assert!(row["answer"].is_null() || row["answer"].is_string());

    // A number the provider refuses for good: the log says dead, with the provider's answer.
    let (bob, bob_token) = member(&app, "bob@example.com").await;
    assert_eq!(
        start_phone(&app, &bob_token, "+15005550001").await.status(),
        StatusCode::ACCEPTED
    );
    // The code never arrives; prove the number as the API would once it had, from the store.
    verified_phone_in_store(&app, &bob, "+15005550001").await;
    send_sms(&app, &svc, &[&bob], "w-2").await;
    let row = sms_row(&app, &root, &bob).await;
    assert_eq!(row["status"], "dead", "{row}");
    assert!(
        row["answer"].as_str().unwrap().contains("unroutable"),
        "{row}"
    );
    let failed = app.events_of_type("notification.failed").await;
    assert!(
        failed.iter().any(|e| e["data"]["user_id"] == bob.as_str()),
        "{failed:?}"
    );
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn distributed_a_text_the_provider_keeps_failing_ends_dead_in_the_log_and_in_keyward_dead() {
    let _broker = broker_lock().await;
    // The gateway is down for one number: every attempt answers 503.
    let (url, seen) = provider(|body| {
        if body.contains("+15005550009") {
            (503, json!({"error": "gateway overloaded"}))
        } else {
            (200, json!({}))
        }
    });
    let app = webhook_app(url, true).await;
    let (_, root) = admin(&app).await;
    let (ann, _) = member(&app, "ann@example.com").await;
    verified_phone_in_store(&app, &ann, "+15005550009").await;
    let svc = service(&app).await;
    send_sms(&app, &svc, &[&ann], "dead-1").await;

    // Six attempts with backoff (about 8 s), then the log says so.
    let deadline = Instant::now() + Duration::from_secs(40);
    let row = loop {
        let body: Value = app
            .get_bearer(&format!("/v1/admin/notifications?user_id={ann}"), &root)
            .await
            .json()
            .await
            .unwrap();
        let row = body["items"][0].clone();
        if row["status"] == "dead" {
            break row;
        }
        assert!(Instant::now() < deadline, "never dead: {row}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row["attempts"], 6, "{row}");
    assert!(row["answer"].as_str().unwrap().contains("503"), "{row}");
    assert_eq!(seen.lock().unwrap().len(), 6);
    let failed = app.events_of_type("notification.failed").await;
    assert!(
        failed.iter().any(|e| e["data"]["user_id"] == ann.as_str()),
        "{failed:?}"
    );
    let dead = crate::helpers::EventConsumer::reopen(&app.amqp_url(), "keyward.dead").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kinds: Vec<String> = dead
            .drain()
            .await
            .iter()
            .filter_map(|d| serde_json::from_slice::<Value>(&d.data).ok())
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        if kinds.iter().any(|k| k == "sms.generic") {
            break;
        }
        assert!(Instant::now() < deadline, "not in keyward.dead: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_web::test]
async fn the_twilio_provider_posts_to_the_messages_api_and_logs_the_message_sid() {
    let (url, seen) = provider(|_| {
        (
            201,
            json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}),
        )
    });
    let sid = "AC0123456789abcdef0123456789abcdef";
    let app = spawn_app_with(Options {
        settings: Some(Box::new(move |s| {
            s.sms.provider = "twilio".into();
            s.sms.twilio_api_url = url;
            s.sms.twilio_account_sid = Some(sid.into());
            s.sms.twilio_auth_token = Some("twilio-token".into());
            s.sms.twilio_from = Some("+15005550006".into());
        })),
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    assert_eq!(
        start_phone(&app, &token, "+447700900123").await.status(),
        StatusCode::ACCEPTED
    );
    let (headers, body) = first_request(&seen).await;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:twilio-token"));
    assert_eq!(header(&headers, "authorization"), format!("Basic {basic}"));
    assert_eq!(
        header(&headers, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(form["To"], "+447700900123");
    assert_eq!(form["From"], "+15005550006");
    let code = code_of(&json!({"text": form["Body"]}));
    assert_eq!(confirm(&app, &token, &code).await.status(), StatusCode::OK);

    let svc = service(&app).await;
    send_sms(&app, &svc, &[&ann], "t-1").await;
    let row = sms_row(&app, &root, &ann).await;
    assert_eq!(row["status"], "sent", "{row}");
}

#[test]
fn a_provider_set_up_by_halves_is_refused_at_start_naming_the_variable() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    for (pairs, named) in [
        (
            vec![("KEYWARD_SMS__PROVIDER", "carrier-pigeon")],
            "KEYWARD_SMS__PROVIDER",
        ),
        (
            vec![("KEYWARD_SMS__PROVIDER", "webhook")],
            "KEYWARD_SMS__WEBHOOK_URL",
        ),
        (
            vec![
                ("KEYWARD_SMS__PROVIDER", "webhook"),
                ("KEYWARD_SMS__WEBHOOK_URL", "https://sms.example/send"),
                ("KEYWARD_SMS__WEBHOOK_SECRET", "tiny-secret"),
            ],
            "KEYWARD_SMS__WEBHOOK_SECRET",
        ),
        (
            vec![
                ("KEYWARD_SMS__PROVIDER", "twilio"),
                ("KEYWARD_SMS__TWILIO_ACCOUNT_SID", "AC0123"),
                ("KEYWARD_SMS__TWILIO_AUTH_TOKEN", "t"),
            ],
            "KEYWARD_SMS__TWILIO_FROM",
        ),
    ] {
        let err = keyward_config::Settings::load_from(None, &env(&pairs)).unwrap_err();
        assert!(err.to_string().contains(named), "{pairs:?}: {err}");
        assert!(
            !err.to_string().contains("tiny-secret"),
            "no secret in {err}"
        );
    }
}
