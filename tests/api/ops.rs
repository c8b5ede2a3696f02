//! Management endpoints: health, readiness and metrics.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

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
