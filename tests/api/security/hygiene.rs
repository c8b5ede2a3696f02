//! HTTP hygiene: security headers, strict CORS, no caching of credentials, and limits on
//! body size, nesting and slow clients.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{problem, spawn_app, spawn_app_with, Options};

#[actix_web::test]
async fn asvs_v3_4_4_and_v3_4_6_every_reply_carries_a_request_id_and_security_headers() {
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

fn preflight(app: &crate::helpers::TestApp, origin: &str) -> reqwest::RequestBuilder {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/v1/auth/login"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
}

#[actix_web::test]
async fn asvs_v3_4_2_cors_admits_only_the_configured_origins() {
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
async fn asvs_v3_4_2_without_configured_origins_no_cors_headers_are_sent() {
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

#[actix_web::test]
async fn asvs_v2_2_1_malformed_bodies_get_4xx_problems_never_500() {
    let app = spawn_app().await;
    let url = app.url("/v1/auth/login");
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("[1,2]"),
            StatusCode::BAD_REQUEST,
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "text/plain")
                .body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            app.client
                .post(&url)
                .json(&json!({"login": 5, "password": null})),
            StatusCode::BAD_REQUEST,
        ),
        (
            app.client
                .post(&url)
                .json(&json!({"login": "x".repeat(40_000), "password": "p"})),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("[".repeat(5000)),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (req, expected) in cases {
        let (status, _) = problem(req.send().await.unwrap()).await;
        assert_eq!(status, expected);
    }
    let r = app
        .post("/v1/auth/refresh", json!({"refresh_token": "garbage"}))
        .await;
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_refresh_token"))
    );
}

/// Sends `partial` and stops; checks that another client is served meanwhile, and returns what
/// the server wrote before closing the slow connection (it must close within 5 s).
async fn stall(app: &crate::helpers::TestApp, partial: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(app.node.public_addr)
        .await
        .unwrap();
    slow.write_all(partial).await.unwrap();
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "others are served while it dawdles"
    );
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    String::from_utf8_lossy(&buf).into_owned()
}

#[actix_web::test]
async fn asvs_v15_2_2_a_client_that_never_finishes_its_request_head_is_cut_off() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.http.header_timeout_secs = 1)),
        ..Options::default()
    })
    .await;
    let text = stall(
        &app,
        b"POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\nContent-Type: app",
    )
    .await;
    // The server answers 408 and closes, or just closes.
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[actix_web::test]
async fn asvs_v15_2_2_a_client_that_trickles_its_body_gets_408_and_others_are_served() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.http.body_timeout_secs = 1)),
        ..Options::default()
    })
    .await;
    let text = stall(
        &app,
        b"POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"login\":",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

#[actix_web::test]
async fn asvs_v15_2_2_deeply_nested_bodies_are_refused_with_the_limit_named() {
    let app = spawn_app().await;
    let mut nested = json!("x");
    for _ in 0..9 {
        nested = json!({ "a": nested });
    }
    let (status, body) = problem(
        app.post(
            "/v1/auth/login",
            json!({"login": "a@example.com", "password": "whatever it is", "extra": nested}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    assert!(
        body["detail"].as_str().unwrap().contains("deeper than 8"),
        "{body}"
    );
    // Eight levels are fine (the request is then judged on its fields).
    let mut ok = json!("x");
    for _ in 0..6 {
        ok = json!({ "a": ok });
    }
    let r = app
        .post(
            "/v1/auth/login",
            json!({"login": "a@example.com", "password": "whatever it is", "extra": ok}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn asvs_v14_3_2_replies_with_tokens_or_personal_data_are_never_cached() {
    let app = spawn_app().await;
    app.verified_user("gus@example.com", None).await;
    let r = app.login("gus@example.com", crate::helpers::PASSWORD).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair: serde_json::Value = r.json().await.unwrap();
    let r = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair: serde_json::Value = r.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap();
    for path in ["/v1/users/me", "/v1/sessions"] {
        let r = app.get_bearer(path, access).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
}
