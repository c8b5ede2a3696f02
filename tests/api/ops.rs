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
