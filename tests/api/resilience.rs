//! The node keeps serving through panics, bad input and concurrency.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{problem, spawn_app, spawn_app_with, Options, PASSWORD};

#[actix_web::test]
async fn a_panic_inside_an_actor_handler_answers_500_and_the_node_keeps_serving() {
    let app = spawn_app_with(Options {
        danger_test_panic_on_register: Some("boom@example.com".into()),
        ..Options::default()
    })
    .await;
    let (status, body) = problem(app.register("boom@example.com", PASSWORD, None).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["code"], "internal_error");
    assert!(
        !body["detail"].as_str().unwrap().contains("danger"),
        "no internal text leaks"
    );

    // The actor was restarted, and the restart counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while crate::ops::metric(&app.management, "keyward_actor_restarts_total").await != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "keyward_actor_restarts_total never reached 1"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The restarted accounts actor serves the next requests.
    app.verified_user("after@example.com", None).await;
    app.login_ok("after@example.com", PASSWORD).await;
    assert!(app
        .events_of_type("user.registered")
        .await
        .iter()
        .all(|e| e["data"]["email"] != "boom@example.com"));
}

#[actix_web::test]
async fn concurrent_registrations_all_succeed_without_losing_a_mail() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.passwords.hasher_threads = 2;
            s.passwords.hasher_queue = 32;
        })),
        ..Options::default()
    })
    .await;
    let emails: Vec<String> = (0..12).map(|i| format!("user{i}@example.com")).collect();
    let replies =
        futures::future::join_all(emails.iter().map(|e| app.register(e, PASSWORD, None))).await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status()).collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    for e in &emails {
        app.wait_for_mail(e, "Confirm").await;
    }
    assert_eq!(app.events_of_type("user.registered").await.len(), 12);
}

#[actix_web::test]
async fn overload_beyond_the_hasher_queue_is_shed_with_503_and_retry_after() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.passwords.hasher_threads = 1;
            s.passwords.hasher_queue = 1;
        })),
        ..Options::default()
    })
    .await;
    let emails: Vec<String> = (0..16).map(|i| format!("load{i}@example.com")).collect();
    let replies =
        futures::future::join_all(emails.iter().map(|e| app.register(e, PASSWORD, None))).await;
    let mut accepted = Vec::new();
    let mut shed = 0;
    for (r, e) in replies.into_iter().zip(&emails) {
        match r.status() {
            StatusCode::ACCEPTED => accepted.push(e.clone()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        >= 1
                );
                let (_, body) = problem(r).await;
                assert_eq!(body["code"], "overloaded");
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(shed > 0, "16 at once exceed 1 thread + 1 queued");
    assert!(!accepted.is_empty());
    for e in &accepted {
        app.wait_for_mail(e, "Confirm").await;
    }
    // Shed requests wrote nothing.
    assert_eq!(
        app.events_of_type("user.registered").await.len(),
        accepted.len()
    );
}

#[actix_web::test]
async fn malformed_bodies_get_4xx_problems_never_500() {
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

#[actix_web::test]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.http.header_timeout_secs = 1)),
        ..Options::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(app.node.public_addr)
        .await
        .unwrap();
    slow.write_all(b"POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\nContent-Type: app")
        .await
        .unwrap();
    // Others are served while it dawdles.
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Within a few seconds the server answers 408 and closes, or just closes.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}
