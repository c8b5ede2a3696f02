//! Management endpoints and HTTP hygiene every reply shares.

use reqwest::StatusCode;

use crate::helpers::{problem, spawn_app};

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

#[actix_web::test]
async fn every_reply_carries_a_request_id_and_security_headers() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/no/such/route"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-123");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers()["x-request-id"].to_str().unwrap().is_empty());
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

fn preflight(app: &crate::helpers::TestApp, origin: &str) -> reqwest::RequestBuilder {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/v1/auth/login"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
}

#[actix_web::test]
async fn cors_admits_only_the_configured_origins() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        settings: Some(Box::new(|s| {
            s.http.cors_origins = "https://app.example.com".into()
        })),
        ..Default::default()
    })
    .await;
    let r = preflight(&app, "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(!r.headers().contains_key("access-control-allow-credentials"));

    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));

    // Another origin gets no CORS headers: browsers keep the answer from the page.
    let r = preflight(&app, "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "non-browser clients are not blocked"
    );
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[actix_web::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let app = spawn_app().await;
    let r = preflight(&app, "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}
