//! Management endpoints: health, readiness and metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_with, Options, PASSWORD};

#[actix_web::test]
async fn health_and_readiness_answer_on_the_management_bind() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/healthz", app.management))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .get(format!("{}/readyz", app.management))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    // The public bind does not serve them.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// One sample of a Prometheus text exposition, by metric name (no labels).
pub async fn metric(management: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{management}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Waits (up to 10 s) until the unlabelled sample `name` on a management bind equals `want`.
pub async fn wait_for_metric(management: &str, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(management, name).await;
        if now == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {now:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text exposition of a management bind.
pub async fn scrape(management: &str) -> String {
    reqwest::get(format!("{management}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("exposition")
}

/// The labels of one sample line (`name{k="v",…} value`), with their escapes undone.
fn labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// The value of the sample of `name` whose labels are exactly `want`.
pub fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, labelled) = match series.split_once('{') {
            Some((n, rest)) => (n, labels(rest.strip_suffix('}')?)),
            None => (series, BTreeMap::new()),
        };
        (n == name && labelled == want).then(|| value.parse().ok())?
    })
}

#[actix_web::test]
async fn metrics_count_requests_by_route_pattern_logins_by_outcome_and_queue_latencies() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.throttle.account_max_failures = 1)),
        ..Options::default()
    })
    .await;
    app.verified_user("counted@example.com", None).await;
    let pair = app.login_ok("counted@example.com", PASSWORD).await;
    let wrong = app.login("counted@example.com", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let throttled = app.login("counted@example.com", PASSWORD).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    app.register("unverified@example.com", PASSWORD, None).await;
    let unverified = app.login("unverified@example.com", PASSWORD).await;
    assert_eq!(unverified.status(), StatusCode::FORBIDDEN);
    // A path with an id in it, and one that matches no route.
    let id = uuid::Uuid::new_v4().to_string();
    let token = pair["access_token"].as_str().unwrap();
    let r = app
        .delete_bearer(&format!("/v1/sessions/{id}"), token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .client
        .get(app.url(&format!("/v1/nowhere/{id}?token=hidden")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.wait_outbox_drained().await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&app.management).await;
        let lag = sample(&text, "keyward_outbox_publish_lag_seconds_count", &[]);
        if lag.is_some_and(|n| n > 0.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "no publish lag observed: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let requests = |route: &str, method: &str, status: &str| {
        sample(
            &text,
            "keyward_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(
        requests("/v1/sessions/{id}", "DELETE", "404"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(requests("unmatched", "GET", "404"), Some(1.0), "{text}");
    for status in ["200", "401", "429", "403"] {
        assert_eq!(
            requests("/v1/auth/login", "POST", status),
            Some(1.0),
            "{status}: {text}"
        );
    }
    assert_eq!(
        requests("/v1/auth/register", "POST", "202"),
        Some(2.0),
        "{text}"
    );
    let login_bucket = |le: &str| {
        sample(
            &text,
            "keyward_http_request_duration_seconds_bucket",
            &[("route", "/v1/auth/login"), ("method", "POST"), ("le", le)],
        )
    };
    assert!(login_bucket("0.001").is_some(), "{text}");
    assert_eq!(login_bucket("+Inf"), Some(4.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "keyward_http_request_duration_seconds_count",
            &[("route", "unmatched"), ("method", "GET")],
        ),
        Some(1.0)
    );
    // Never a raw path: no id, no token, no unknown path segment.
    let session_id = pair["session_id"].as_str().unwrap();
    for raw in [
        id.as_str(),
        session_id,
        "nowhere",
        "hidden",
        "counted@example.com",
    ] {
        assert!(!text.contains(raw), "{raw} in {text}");
    }

    let logins = |outcome: &str| sample(&text, "keyward_logins_total", &[("outcome", outcome)]);
    assert_eq!(logins("success"), Some(1.0), "{text}");
    assert_eq!(logins("invalid_credentials"), Some(1.0), "{text}");
    assert_eq!(logins("throttled"), Some(1.0), "{text}");
    assert_eq!(logins("email_not_verified"), Some(1.0), "{text}");
    assert_eq!(logins("blocked"), Some(0.0), "{text}");
    assert_eq!(logins("overloaded"), Some(0.0), "{text}");

    // Two registrations hash; three logins verify: each job waited for a thread, and ran.
    let hasher = |name: &str| sample(&text, name, &[]).unwrap_or(0.0);
    assert!(hasher("keyward_hasher_wait_seconds_count") >= 5.0, "{text}");
    assert!(
        hasher("keyward_hasher_duration_seconds_count") >= 5.0,
        "{text}"
    );
    assert_eq!(sample(&text, "keyward_hasher_queue_depth", &[]), Some(0.0));
    assert!(
        sample(
            &text,
            "keyward_hasher_wait_seconds_bucket",
            &[("le", "+Inf")]
        )
        .is_some_and(|n| n >= 5.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "keyward_outbox_publish_lag_seconds_bucket",
            &[("le", "3600")]
        )
        .is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "keyward_amqp_connected", &[]),
        Some(0.0),
        "no broker here"
    );
    assert_eq!(
        sample(&text, "keyward_broadcast_consuming", &[]),
        Some(0.0),
        "no broadcast to consume in embedded mode"
    );
}

#[actix_web::test]
async fn metrics_on_the_management_bind_count_what_the_node_did() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/metrics", app.management))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for name in [
        "keyward_outbox_backlog",
        "keyward_hasher_in_flight",
        "keyward_actor_restarts_total",
        "keyward_emails_sent_total",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    app.register("metrics@example.com", crate::helpers::PASSWORD, None)
        .await;
    app.wait_for_mail("metrics@example.com", "Confirm").await;
    app.wait_outbox_drained().await;
    // user.registered and the verification email job were published; the mail was sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let published = metric(&app.management, "keyward_outbox_published_total")
            .await
            .unwrap_or(0.0);
        let sent = metric(&app.management, "keyward_emails_sent_total")
            .await
            .unwrap_or(0.0);
        if published >= 2.0 && sent >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "published {published}, sent {sent}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        reqwest::get(app.url("/metrics")).await.unwrap().status() == StatusCode::NOT_FOUND,
        "not on the public bind"
    );
}
