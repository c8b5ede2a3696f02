//! The notify context through HTTP: a product's service sends through the send API, users read
//! their inbox and set their preferences, admins edit templates (the auth mails included) and
//! read the delivery log.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    admin, amqp_admin, broker_lock, member, problem, spawn_app_with, EventConsumer, Options,
    TestApp, PASSWORD,
};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let mut r = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn service(app: &TestApp, scopes: &[&str]) -> String {
    crate::helpers::service_token(app, scopes).await
}

async fn send(app: &TestApp, token: &str, body: Value) -> Response {
    call(app, Method::POST, "/v1/notifications", token, Some(body)).await
}

async fn inbox(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app
        .get_bearer(&format!("/v1/users/me/notifications{query}"), token)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The delivery log as an admin reads it.
async fn log(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let r = app
        .get_bearer(&format!("/v1/admin/notifications{query}"), admin)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the log row of `user` on `channel` has `status`.
async fn wait_status(app: &TestApp, admin: &str, user: &str, channel: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = log(app, admin, &format!("?user_id={user}")).await;
        if let Some(r) = rows
            .iter()
            .find(|r| r["channel"] == channel && r["status"] == status)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {channel} delivery {status}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn booking(to: &[&str], key: &str) -> Value {
    json!({
        "to": to,
        "template": "generic",
        "variables": {"title": "Booking confirmed", "body": "Dr. Ivanova, Monday 10:00 <room 4>", "action_url": "https://clinic.example/b/4711"},
        "category": "general",
        "idempotency_key": key,
    })
}

#[actix_web::test]
async fn a_service_sends_and_each_user_finds_it_in_their_inbox_and_mail() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let (ann, ann_token) = member(&app, "ann@example.com").await;
    let (bob, bob_token) = member(&app, "bob@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;

    let r = send(&app, &svc, booking(&[&ann, &bob], "booking-4711")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let ids = r.json::<Value>().await.unwrap()["ids"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids.len(), 2);

    let page = inbox(&app, &ann_token, "").await;
    assert_eq!(page["unread"], 1);
    let item = &page["items"][0];
    assert_eq!(item["id"], ids[0], "the inbox item is the notification");
    assert_eq!(item["title"], "Booking confirmed");
    assert_eq!(
        item["body"], "Dr. Ivanova, Monday 10:00 <room 4>",
        "in-app text is not HTML-escaped"
    );
    assert_eq!(item["action_url"], "https://clinic.example/b/4711");
    assert_eq!(item["category"], "general");
    assert!(item["read_at"].is_null());

    let mail = app
        .wait_for_mail("bob@example.com", "Booking confirmed")
        .await;
    assert!(mail.text.contains("Dr. Ivanova, Monday 10:00 <room 4>"));
    assert!(mail.html.contains("&lt;room 4&gt;"), "{}", mail.html);

    // Reading: one, then all; someone else's id is not found.
    let path = format!(
        "/v1/users/me/notifications/{}/read",
        ids[0].as_str().unwrap()
    );
    let r = app.post_bearer(&path, &bob_token, None).await;
    assert_eq!(problem(r).await.0, StatusCode::NOT_FOUND);
    let r = app.post_bearer(&path, &ann_token, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let page = inbox(&app, &ann_token, "").await;
    assert_eq!(page["unread"], 0);
    assert!(page["items"][0]["read_at"].is_string());
    assert_eq!(
        inbox(&app, &ann_token, "?unread=true").await["items"],
        json!([])
    );
    let r = app
        .post_bearer("/v1/users/me/notifications/read-all", &bob_token, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(inbox(&app, &bob_token, "").await["unread"], 0);

    // The log: every recipient and channel, the email marked sent once it went out.
    let sent = wait_status(&app, &root, &bob, "email", "sent").await;
    assert_eq!(sent["attempts"], 1);
    assert_eq!(sent["notification_id"], ids[1]);
    let rows = log(&app, &root, &format!("?user_id={ann}")).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r["channel"] == "in_app" && r["status"] == "sent"));
    app.wait_outbox_drained().await;
    let events = app.events_of_type("notification.sent").await;
    assert_eq!(events.len(), 4, "in-app and email for each: {events:?}");
    assert!(events.iter().all(|e| e["data"]["template"] == "generic"));
    let r = app.get_bearer("/v1/admin/notifications", &ann_token).await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn an_idempotency_key_answers_its_first_reply_and_refuses_another_request() {
    let app = spawn_app_with(Options::default()).await;
    let (ann, ann_token) = member(&app, "ann@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;

    let first: Value = send(&app, &svc, booking(&[&ann], "k1"))
        .await
        .json()
        .await
        .unwrap();
    let r = send(&app, &svc, booking(&[&ann], "k1")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    assert_eq!(
        inbox(&app, &ann_token, "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let mut other = booking(&[&ann], "k1");
    other["variables"]["body"] = json!("Tuesday");
    let (status, p) = problem(send(&app, &svc, other).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["code"], "idempotency_key_reused");
}

#[actix_web::test]
async fn a_muted_category_is_logged_as_skipped_and_security_cannot_be_muted() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.notify.categories = vec![keyward_config::CategorySettings {
                name: "marketing".into(),
                channels: vec!["email".into(), "in_app".into()],
            }];
        })),
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;

    let prefs = "/v1/users/me/notification-preferences";
    let r = call(
        &app,
        Method::PUT,
        prefs,
        &token,
        Some(json!({"marketing": {"email": false}})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let now: Value = r.json().await.unwrap();
    assert_eq!(
        now["marketing"],
        json!({"email": false, "in_app": true, "sms": true, "push": true})
    );
    assert_eq!(now["security"]["email"], true);
    let got: Value = app.get_bearer(prefs, &token).await.json().await.unwrap();
    assert_eq!(got, now);

    let r = call(
        &app,
        Method::PUT,
        prefs,
        &token,
        Some(json!({"security": {"email": false}, "nope": {"sms": true}})),
    )
    .await;
    let (status, p) = problem(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["nope", "security.email"]);

    let mut promo = booking(&[&ann], "promo-1");
    promo["category"] = json!("marketing");
    assert_eq!(send(&app, &svc, promo).await.status(), StatusCode::ACCEPTED);
    let skipped = wait_status(&app, &root, &ann, "email", "skipped").await;
    assert_eq!(skipped["answer"], "muted by the user's preferences");
    assert_eq!(
        inbox(&app, &token, "").await["unread"],
        1,
        "in-app was not muted"
    );

    // A security notice goes out whatever was chosen.
    let mut notice = booking(&[&ann], "security-1");
    notice["category"] = json!("security");
    notice["variables"]["title"] = json!("New sign-in");
    assert_eq!(
        send(&app, &svc, notice).await.status(),
        StatusCode::ACCEPTED
    );
    app.wait_for_mail("ann@example.com", "New sign-in").await;
    assert!(
        app.mails()
            .await
            .iter()
            .all(|m| m.subject != "Booking confirmed"),
        "the muted mail was not sent"
    );
}

#[actix_web::test]
async fn a_send_needs_its_scope_or_permission_and_bad_input_names_each_field() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let other = service(&app, &["access:check"]).await;
    let svc = service(&app, &["notifications:send"]).await;

    for caller in [&other, &token] {
        let (status, p) = problem(send(&app, caller, booking(&[&ann], "x")).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    }
    // An administrator holds notifications:send.
    assert_eq!(
        send(&app, &root, booking(&[&ann], "by-admin"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let cases = [
        (
            json!({"to": [], "template": "generic", "category": "general", "idempotency_key": "a"}),
            "to",
            "out_of_range",
        ),
        (
            json!({"to": [ann, ann], "template": "generic", "category": "general", "idempotency_key": "a"}),
            "to[1]",
            "duplicate",
        ),
        (
            json!({"to": ["nope"], "template": "generic", "category": "general", "idempotency_key": "a"}),
            "to[0]",
            "invalid_uuid",
        ),
        (
            json!({"to": [ann], "template": "Generic!", "category": "general", "idempotency_key": "a"}),
            "template",
            "invalid_template",
        ),
        (
            json!({"to": [ann], "template": "no_such", "category": "general", "idempotency_key": "a"}),
            "template",
            "unknown_template",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "parties", "idempotency_key": "a"}),
            "category",
            "unknown_category",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "general", "idempotency_key": "a", "variables": {"title": "t", "body": "b", "colour": "red"}}),
            "variables.colour",
            "unknown_variable",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "general", "idempotency_key": "a", "variables": {"body": "b"}}),
            "variables",
            "template_error",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "general", "idempotency_key": "a", "channels": ["fax"]}),
            "channels[0]",
            "invalid_channel",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "general", "idempotency_key": "a", "send_at": "tomorrow"}),
            "send_at",
            "invalid_time",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "general"}),
            "idempotency_key",
            "required",
        ),
        (
            json!({"to": [ann], "template": "generic", "category": "general", "idempotency_key": "a", "priority": 1}),
            "priority",
            "unknown_field",
        ),
    ];
    for (body, field, code) in cases {
        let (status, p) = problem(send(&app, &svc, body.clone()).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {p}");
        let e = p["errors"].as_array().unwrap();
        assert!(
            e.iter().any(|e| e["field"] == field && e["code"] == code),
            "{body}: expected {field} {code}, got {p}"
        );
    }
    assert!(
        inbox(&app, &token, "").await["items"]
            .as_array()
            .unwrap()
            .len()
            == 1,
        "nothing refused was written"
    );
}

#[actix_web::test]
async fn an_admin_edits_a_template_and_the_next_mail_uses_it() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let (_, ann_token) = member(&app, "ann@example.com").await;
    let path = "/v1/admin/templates/verify_email/email/en";

    let shipped: Value = app.get_bearer(path, &root).await.json().await.unwrap();
    assert_eq!(shipped["source"], "shipped");
    assert_eq!(shipped["variables"], json!(["link"]));
    let r = app.get_bearer(path, &ann_token).await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);

    // Faults are refused with their part and line; nothing changes.
    let broken = json!({"parts": {"subject": "Hi", "text": "ok\n{% if link %}open", "html": "<p>{{ who }}</p>"}});
    let (status, p) = problem(call(&app, Method::PUT, path, &root, Some(broken)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let errors = p["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["field"] == "parts.text"
            && e["code"] == "template_syntax"
            && e["message"].as_str().unwrap().starts_with("line 2")),
        "{p}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == "parts.html" && e["code"] == "undeclared_variable"),
        "{p}"
    );

    let edited = json!({"parts": {
        "subject": "Welcome to the clinic",
        "text": "Confirm here: {{ link }}",
        "html": "<p><a href=\"{{ link }}\">Confirm</a></p>",
    }});
    let r = call(&app, Method::PUT, path, &root, Some(edited.clone())).await;
    assert_eq!(r.status(), StatusCode::OK);
    let saved: Value = r.json().await.unwrap();
    assert_eq!(saved["source"], "api");
    assert_eq!(
        saved["variables"],
        json!(["link"]),
        "the declared variables were kept"
    );

    let preview = call(
        &app,
        Method::POST,
        &format!("{path}/preview"),
        &root,
        Some(json!({"variables": {"link": "https://x/?a=1&b=2"}})),
    )
    .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let preview: Value = preview.json().await.unwrap();
    assert_eq!(preview["text"], "Confirm here: https://x/?a=1&b=2");
    assert!(preview["html"].as_str().unwrap().contains("a=1&amp;b=2"));

    let r = app.register("kim@example.com", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mail = app
        .wait_for_mail("kim@example.com", "Welcome to the clinic")
        .await;
    assert!(mail.text.starts_with("Confirm here: http"), "{}", mail.text);
    let r = app
        .post("/v1/auth/verify-email", json!({"token": mail.token()}))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the edited mail's link works");

    // A new template for a product, then the audit log names who changed templates.
    let reminder = json!({"parts": {"title": "Reminder: {{ when }}", "body": "See you at {{ place }}"}, "variables": ["when", "place"]});
    let r = call(
        &app,
        Method::PUT,
        "/v1/admin/templates/booking_reminder/in_app/ru",
        &root,
        Some(reminder),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let audit: Value = app
        .get_bearer("/v1/admin/audit?type=template.updated", &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn distributed_a_worker_sends_the_mail_and_products_hear_notification_sent() {
    let _broker = broker_lock().await;
    let app = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    let _ = amqp_admin();
    let url = app.amqp_url();
    let queue = format!("test-consumer-{}", uuid::Uuid::new_v4().simple());
    let consumer = EventConsumer::bind(&url, &queue, "notification.*").await;
    let (_, root) = admin(&app).await;
    let (ann, _) = member(&app, "ann@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;

    let mut body = booking(&[&ann], "dist-1");
    body["channels"] = json!(["email", "sms"]);
    let r = send(&app, &svc, body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["ids"][0].clone();

    app.wait_for_mail("ann@example.com", "Booking confirmed")
        .await;
    let sent = wait_status(&app, &root, &ann, "email", "sent").await;
    assert_eq!(sent["notification_id"], id);
    let sms = wait_status(&app, &root, &ann, "sms", "skipped").await;
    assert_eq!(sms["answer"], "the user has no verified phone number");
    let got = consumer.collect(&["notification.sent"]).await;
    let env: Value = serde_json::from_slice(&got[0].data).unwrap();
    assert_eq!(env["data"]["notification_id"], id);
    assert_eq!(env["data"]["channel"], "email");
    assert_eq!(env["data"]["user_id"], ann.as_str());
}

#[actix_web::test]
async fn a_scheduled_send_waits_for_its_time_and_a_cancelled_one_never_goes_out() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;
    let at = |secs: i64| (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339();

    let mut reminder = booking(&[&ann], "reminder-1");
    reminder["variables"]["title"] = json!("Your visit is tomorrow");
    reminder["send_at"] = json!(at(3600));
    let r = send(&app, &svc, reminder).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let kept = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut cancelled = booking(&[&ann], "reminder-2");
    cancelled["variables"]["title"] = json!("Cancelled visit");
    cancelled["send_at"] = json!(at(3600));
    let r = send(&app, &svc, cancelled).await;
    let gone = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let rows = log(&app, &root, &format!("?user_id={ann}&status=scheduled")).await;
    assert_eq!(rows.len(), 4, "email and in-app of each: {rows:?}");
    assert_eq!(
        inbox(&app, &token, "").await["items"],
        json!([]),
        "nothing shown before its time"
    );

    let path = format!("/v1/notifications/scheduled/{gone}");
    let r = call(&app, Method::DELETE, &path, &token, None).await;
    assert_eq!(
        problem(r).await.0,
        StatusCode::FORBIDDEN,
        "a user without notifications:send"
    );
    let r = call(&app, Method::DELETE, &path, &svc, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, p) = problem(call(&app, Method::DELETE, &path, &svc, None).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_scheduled"))
    );
    let unknown = format!("/v1/notifications/scheduled/{}", uuid::Uuid::now_v7());
    assert_eq!(
        problem(call(&app, Method::DELETE, &unknown, &svc, None).await)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // An hour later the kept one goes out; the cancelled one stays cancelled. (Tokens from
    // before have expired by then.)
    app.advance(3601);
    let fresh = |login: &'static str| async {
        app.login_ok(login, PASSWORD).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (root, token) = (
        fresh("root@example.com").await,
        fresh("ann@example.com").await,
    );
    let svc = service(&app, &["notifications:send"]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = inbox(&app, &token, "").await;
        if page["items"].as_array().unwrap().len() == 1 {
            assert_eq!(page["items"][0]["id"], kept.as_str());
            assert_eq!(page["items"][0]["title"], "Your visit is tomorrow");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled send never went out: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_for_mail("ann@example.com", "Your visit is tomorrow")
        .await;
    wait_status(&app, &root, &ann, "email", "sent").await;
    let cancelled_rows = log(&app, &root, &format!("?user_id={ann}&status=cancelled")).await;
    assert_eq!(cancelled_rows.len(), 2);
    assert!(cancelled_rows
        .iter()
        .all(|r| r["notification_id"] == gone.as_str()));
    assert!(app
        .mails()
        .await
        .iter()
        .all(|m| m.subject != "Cancelled visit"));
    let r = call(
        &app,
        Method::DELETE,
        &format!("/v1/notifications/scheduled/{kept}"),
        &svc,
        None,
    )
    .await;
    assert_eq!(
        problem(r).await.0,
        StatusCode::CONFLICT,
        "a sent notification cannot be cancelled"
    );
}

/// A Server-Sent Events reader over a real HTTP response.
struct Sse {
    resp: Response,
    buf: String,
}

impl Sse {
    async fn open(base: &str, token: &str) -> Sse {
        let resp = reqwest::Client::new()
            .get(format!("{base}/v1/users/me/notifications/stream"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (name, data), skipping comments and the retry line; None when none
    /// came within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(d).unwrap());
                    }
                }
                if let (Some(n), Some(d)) = (name, data) {
                    return Some((n, d));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(_) => panic!("the stream ended"),
                Err(_) => return None,
            }
        }
    }
}

#[actix_web::test]
async fn the_live_stream_shows_a_new_item_and_the_unread_count() {
    let app = spawn_app_with(Options::default()).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let (bob, _) = member(&app, "bob@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;
    let mut stream = Sse::open(&app.base, &token).await;
    assert_eq!(
        stream.next(Duration::from_secs(5)).await,
        Some(("unread".to_owned(), json!({"unread": 0})))
    );

    // Someone else's notification is not shown; one's own is, with the count after it.
    assert_eq!(
        send(&app, &svc, booking(&[&bob], "b")).await.status(),
        StatusCode::ACCEPTED
    );
    let r = send(&app, &svc, booking(&[&ann], "a")).await;
    let id = r.json::<Value>().await.unwrap()["ids"][0].clone();
    let (name, data) = stream
        .next(Duration::from_secs(10))
        .await
        .expect("a live event");
    assert_eq!(name, "notification");
    assert_eq!(data["item"]["id"], id);
    assert_eq!(data["item"]["title"], "Booking confirmed");
    assert_eq!(data["unread"], 1);
    assert_eq!(
        stream.next(Duration::from_millis(700)).await,
        None,
        "each item once"
    );
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn distributed_a_stream_on_one_node_shows_what_another_node_sent_with_or_without_the_broadcast(
) {
    if crate::helpers::backend() != "postgres" {
        panic!("needs KEYWARD_TEST_DATABASE_URL: nodes share a database only on PostgreSQL");
    }
    let _broker = broker_lock().await;
    let a = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    let b = a.spawn_peer().await;
    let deaf = a
        .spawn_peer_without_broadcast(Duration::from_millis(500))
        .await;
    let (ann, token) = member(&a, "ann@example.com").await;
    let svc = service(&a, &["notifications:send"]).await;

    let mut on_b = Sse::open(&format!("http://{}", b.public_addr), &token).await;
    let mut on_deaf = Sse::open(&format!("http://{}", deaf.public_addr), &token).await;
    for s in [&mut on_b, &mut on_deaf] {
        assert_eq!(s.next(Duration::from_secs(5)).await.unwrap().0, "unread");
    }
    let r = send(&a, &svc, booking(&[&ann], "across")).await;
    let id = r.json::<Value>().await.unwrap()["ids"][0].clone();
    for (node, s) in [
        ("peer", &mut on_b),
        ("peer without the broadcast", &mut on_deaf),
    ] {
        let (name, data) = s
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the {node} showed nothing"));
        assert_eq!(
            (name.as_str(), &data["item"]["id"]),
            ("notification", &id),
            "{node}"
        );
    }
    b.stop().await;
    deaf.stop().await;
}

/// Publishes `body` to `keyward.notify` as a product's service would, with a confirm.
async fn publish_request(url: &str, body: &[u8]) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let props = lapin::BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(uuid::Uuid::new_v4().to_string().into());
    let confirm = ch
        .basic_publish(
            "keyward.notify".into(),
            "send".into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "the broker took it");
    assert!(confirm.take_message().is_none(), "a queue was bound for it");
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn distributed_requests_published_to_keyward_notify_are_sent_once_and_poison_goes_to_dead_with_its_reason(
) {
    let _broker = broker_lock().await;
    let app = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    let url = app.amqp_url();
    let (ann, token) = member(&app, "ann@example.com").await;

    // The same request twice (a publisher's retry): one notification.
    let request = serde_json::to_vec(&booking(&[&ann], "amqp-1")).unwrap();
    publish_request(&url, &request).await;
    publish_request(&url, &request).await;
    // Poison: not JSON, and a bad member.
    publish_request(&url, b"{not json").await;
    let mut bad = booking(&[&ann], "amqp-2");
    bad["template"] = json!("no_such_template");
    publish_request(&url, &serde_json::to_vec(&bad).unwrap()).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while inbox(&app, &token, "").await["items"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the request was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = EventConsumer::reopen(&url, "keyward.dead").await;
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "poison was not dead-lettered: {reasons:?}"
        );
        for d in dead.drain().await {
            let headers = d.properties.headers().clone().unwrap_or_default();
            if let Some(lapin::types::AMQPValue::LongString(r)) =
                headers.inner().get("x-keyward-reason")
            {
                reasons.push(r.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reasons.sort();
    assert!(reasons[0].starts_with("not JSON"), "{reasons:?}");
    assert!(
        reasons[1].contains("template") && reasons[1].contains("unknown_template"),
        "{reasons:?}"
    );
    let items = inbox(&app, &token, "").await["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(items, 1, "the retried request was sent once");
}

/// A node's database goes away (behind a TCP gate that refuses every connection) while a
/// product's request waits in `keyward.notify.requests`: the intake holds it instead of
/// spending its deliveries (the queue dead-letters after 6, 0.5 s apart), and sends it once
/// the database is back.
#[actix_web::test]
#[ignore = "needs PostgreSQL and RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn distributed_a_database_outage_longer_than_the_retry_budget_dead_letters_no_request() {
    use crate::helpers::{host_port, TcpGate};
    let _broker = broker_lock().await;
    let pg = std::env::var("KEYWARD_TEST_DATABASE_URL")
        .expect("needs KEYWARD_TEST_DATABASE_URL: a database outage is a PostgreSQL outage");
    let gate = TcpGate::open(&host_port(&pg)).await;
    let port = gate.port;
    let app = spawn_app_with(Options {
        amqp: true,
        settings: Some(Box::new(move |s| {
            s.database_url = s.database_url.replacen(
                &host_port(&s.database_url),
                &format!("127.0.0.1:{port}"),
                1,
            );
        })),
        ..Options::default()
    })
    .await;
    assert!(app
        .settings
        .database_url
        .contains(&format!("127.0.0.1:{port}")));
    let url = app.amqp_url();
    let (ann, token) = member(&app, "ann@example.com").await;
    app.wait_outbox_drained().await;

    gate.reject().await;
    let request = serde_json::to_vec(&booking(&[&ann], "outage-1")).unwrap();
    publish_request(&url, &request).await;
    // Well past the budget of a request that fails at once.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let dead = EventConsumer::reopen(&url, "keyward.dead").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead: Vec<String> = dead
        .drain()
        .await
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    assert!(dead.is_empty(), "dead-lettered during the outage: {dead:?}");

    gate.restore().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let items = inbox(&app, &token, "").await["items"]
            .as_array()
            .map_or(0, Vec::len);
        if items == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held request was never sent ({items})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
#[ignore = "needs RabbitMQ and an SMTP sink (scripts/services.sh postgres rabbitmq maildev -- cargo test --test api -- --include-ignored)"]
async fn distributed_a_worker_killed_mid_batch_loses_no_notification_and_the_log_ends_sent() {
    use crate::distributed::{free_port, maildev_recipients, worker_process};
    let _broker = broker_lock().await;
    let (Ok(smtp), Ok(api)) = (
        std::env::var("KEYWARD_TEST_SMTP_URL"),
        std::env::var("KEYWARD_TEST_MAILDEV_URL"),
    ) else {
        panic!("needs KEYWARD_TEST_SMTP_URL and KEYWARD_TEST_MAILDEV_URL: run under scripts/services.sh … maildev");
    };
    let app = spawn_app_with(Options {
        amqp: true,
        external_worker: true,
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&app).await;
    let svc = service(&app, &["notifications:send"]).await;
    // Verified recipients, made as the CLI makes them; their mail waits: no worker runs yet.
    let domain = format!("@n{}.example.com", uuid::Uuid::new_v4().simple());
    let n = 60;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = keyward_actors::admin::create_user(
            &app.settings,
            &app.node.contexts.store,
            &format!("u{i}{domain}"),
            PASSWORD,
            &[],
        )
        .await
        .unwrap();
        ids.push(id.to_string());
    }
    let mut body = booking(&ids.iter().map(String::as_str).collect::<Vec<_>>(), "batch");
    body["channels"] = json!(["email"]);
    assert_eq!(send(&app, &svc, body).await.status(), StatusCode::ACCEPTED);
    app.wait_outbox_drained().await;

    // The first worker is SIGKILLed as soon as mail flows; a second one finishes the batch.
    let mut first = worker_process(&app, &smtp, free_port());
    let deadline = Instant::now() + Duration::from_secs(30);
    while maildev_recipients(&api, &domain).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first worker never sent a mail"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        maildev_recipients(&api, &domain).await.len() < n,
        "killed mid-batch"
    );
    let mut second = worker_process(&app, &smtp, free_port());
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent = loop {
        let rows = log(&app, &root, "?status=sent&limit=100").await;
        if rows.len() >= n || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = maildev_recipients(&api, &domain).await;
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(got.len(), n, "every recipient got the mail");
    assert_eq!(sent.len(), n, "every delivery is logged sent");
    assert!(log(&app, &root, "?status=queued").await.is_empty());
}

/// A browser subscribes at the push service with Keyward's key and hands Keyward the
/// subscription; the push service's id of it.
async fn subscribe_browser(app: &TestApp, token: &str, push: &str) -> String {
    let key: Value = app
        .client
        .get(app.url("/v1/notifications/vapid-public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub: Value = reqwest::Client::new()
        .post(format!("{push}/subscribe"))
        .json(&json!({"userVisibleOnly": "true", "applicationServerKey": key["public_key"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub = &sub["data"];
    let subscription =
        json!({"endpoint": sub["endpoint"], "keys": sub["keys"], "expirationTime": null});
    let r = call(
        app,
        Method::POST,
        "/v1/users/me/push-subscriptions",
        token,
        Some(subscription),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    sub["clientHash"].as_str().unwrap().to_owned()
}

/// What the push service decrypted for subscription `hash`, once there is something.
async fn pushed(push: &str, hash: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Value = reqwest::Client::new()
            .post(format!("{push}/get-notifications"))
            .json(&json!({"clientHash": hash}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = got["data"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !m.is_empty() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the push service got nothing: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
#[ignore = "needs a push service (scripts/services.sh webpush -- cargo test --test api -- --include-ignored)"]
async fn a_push_message_reaches_the_browser_encrypted_and_a_gone_subscription_is_forgotten() {
    let Ok(push) = std::env::var("KEYWARD_TEST_WEBPUSH_URL") else {
        panic!("needs KEYWARD_TEST_WEBPUSH_URL: run under scripts/services.sh webpush");
    };
    // The push service runs on the loopback, as no production one does.
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.notify.allow_loopback_push = true)),
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let svc = service(&app, &["notifications:send"]).await;
    let browser = reqwest::Client::new();
    let hash = subscribe_browser(&app, &token, &push).await;

    let mut body = booking(&[&ann], "push-1");
    body["channels"] = json!(["push"]);
    let r = send(&app, &svc, body).await;
    let id = r.json::<Value>().await.unwrap()["ids"][0].clone();

    // The push service checked the VAPID signature and decrypted the message with the
    // browser's keys.
    let messages = pushed(&push, &hash).await;
    let message: Value = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
    assert_eq!(message["id"], id);
    assert_eq!(message["title"], "Booking confirmed");
    assert_eq!(message["body"], "Dr. Ivanova, Monday 10:00 <room 4>");
    assert_eq!(message["action_url"], "https://clinic.example/b/4711");
    wait_status(&app, &root, &ann, "push", "sent").await;

    // The browser unsubscribed: the push service answers 410, the delivery is over and the
    // subscription forgotten, so the next send skips the channel.
    let r = browser
        .post(format!("{push}/expire-subscription/{hash}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut again = booking(&[&ann], "push-2");
    again["channels"] = json!(["push"]);
    assert_eq!(send(&app, &svc, again).await.status(), StatusCode::ACCEPTED);
    let dead = wait_status(&app, &root, &ann, "push", "dead").await;
    assert!(dead["answer"].as_str().unwrap().contains("410"), "{dead}");
    let mut third = booking(&[&ann], "push-3");
    third["channels"] = json!(["push"]);
    assert_eq!(send(&app, &svc, third).await.status(), StatusCode::ACCEPTED);
    let skipped = wait_status(&app, &root, &ann, "push", "skipped").await;
    assert_eq!(skipped["answer"], "the user has no push subscription");

    // A subscription that cannot work is refused, naming each field.
    let bad =
        json!({"endpoint": "ftp://push.example/1", "keys": {"p256dh": "AAAA", "auth": "c2hvcnQ"}});
    let (status, p) = problem(
        call(
            &app,
            Method::POST,
            "/v1/users/me/push-subscriptions",
            &token,
            Some(bad),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["endpoint", "keys.p256dh"]);
}

#[actix_web::test]
#[ignore = "needs RabbitMQ, an SMTP sink and a push service (scripts/services.sh postgres rabbitmq maildev webpush -- cargo test --test api -- --include-ignored)"]
async fn distributed_keyward_worker_sends_push_messages_signed_with_the_nodes_key() {
    use crate::distributed::{free_port, worker_process};
    let _broker = broker_lock().await;
    let (Ok(push), Ok(smtp)) = (
        std::env::var("KEYWARD_TEST_WEBPUSH_URL"),
        std::env::var("KEYWARD_TEST_SMTP_URL"),
    ) else {
        panic!("needs KEYWARD_TEST_WEBPUSH_URL and KEYWARD_TEST_SMTP_URL: run under scripts/services.sh … maildev webpush");
    };
    let app = spawn_app_with(Options {
        amqp: true,
        external_worker: true,
        settings: Some(Box::new(|s| s.notify.allow_loopback_push = true)),
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&app).await;
    // Made as the CLI makes users: no worker sends verification mail yet.
    let ann = keyward_actors::admin::create_user(
        &app.settings,
        &app.node.contexts.store,
        "ann@example.com",
        PASSWORD,
        &[],
    )
    .await
    .unwrap()
    .to_string();
    let token = app.login_ok("ann@example.com", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let svc = service(&app, &["notifications:send"]).await;
    let hash = subscribe_browser(&app, &token, &push).await;

    let mut body = booking(&[&ann], "worker-push");
    body["channels"] = json!(["push"]);
    assert_eq!(send(&app, &svc, body).await.status(), StatusCode::ACCEPTED);
    // A `keyward worker` process (its own VAPID key, derived from the same master key) sends it.
    let mut worker = worker_process(&app, &smtp, free_port());
    let messages = pushed(&push, &hash).await;
    let sent = wait_status(&app, &root, &ann, "push", "sent").await;
    let _ = worker.kill();
    let _ = worker.wait();
    let message: Value = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
    assert_eq!(message["title"], "Booking confirmed");
    assert_eq!(sent["attempts"], 1);
}
