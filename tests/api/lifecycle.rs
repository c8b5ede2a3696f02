//! The whole path a user takes: register → verify → login → refresh → reuse → logout.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{problem, spawn_app, PASSWORD};

#[actix_web::test]
async fn the_full_account_and_session_lifecycle_works_over_http() {
    let app = spawn_app().await;

    // Register: 202 and a verification mail with a link.
    let r = app
        .register("Alice@Example.com", PASSWORD, Some("alice"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "verification_sent"})
    );
    let mail = app
        .wait_for_mail("alice@example.com", "Confirm your email")
        .await;
    assert!(mail
        .text
        .contains(&format!("{}/v1/auth/verify-email?token=", app.base)));
    assert!(mail.html.contains("token="));

    // Not verified yet: the right password gets 403 email_not_verified.
    let (status, body) = problem(app.login("alice@example.com", PASSWORD).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "email_not_verified");

    // The link in the mail (GET) renders a page and verifies.
    let r = app
        .client
        .get(app.url(&format!("/v1/auth/verify-email?token={}", mail.token())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().to_lowercase().contains("verified"));

    // Login by username, case-insensitively.
    let pair = app.login_ok("ALICE", PASSWORD).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    assert!(pair["refresh_expires_in"].as_u64().unwrap() > 0);

    let me: serde_json::Value = app
        .get_bearer("/v1/users/me", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["roles"], json!([]));

    // Refresh rotates: a new refresh token, which works in turn.
    let r = app.refresh(&refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let second: serde_json::Value = r.json().await.unwrap();
    let refresh2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(second["session_id"], pair["session_id"]);

    // After the grace window, presenting the rotated token is reuse: the session ends.
    app.advance(11);
    let (status, body) = problem(app.refresh(&refresh).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_refresh_token");
    let (status, _) = problem(app.refresh(&refresh2).await).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the whole family is revoked"
    );
    let (status, _) = problem(app.get_bearer("/v1/users/me", &access).await).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "its access tokens are refused at once"
    );

    // A new login, then logout ends that session at once.
    let pair = app.login_ok("alice@example.com", PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();
    let r = app.post_bearer("/v1/auth/logout", access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = problem(app.get_bearer("/v1/users/me", access).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = problem(app.refresh(pair["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Every state change left its event, without secrets.
    app.wait_outbox_drained().await;
    let events = app.events().await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for k in [
        "user.registered",
        "user.email_verified",
        "user.logged_in",
        "session.reuse_detected",
        "session.revoked",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let registered = &app.events_of_type("user.registered").await[0];
    assert_eq!(registered["source"], "keyward");
    assert_eq!(registered["version"], 1);
    assert_eq!(registered["data"]["email"], "alice@example.com");
    assert_eq!(registered["data"]["locale"], "en");
    assert!(registered["data"]["user_id"].is_string());
    assert!(registered["correlation_id"].is_string());
    let all = serde_json::to_string(
        &app.events()
            .await
            .iter()
            .filter(|e| !e["type"].as_str().unwrap().starts_with("email."))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !all.contains(PASSWORD) && !all.contains(&refresh) && !all.contains(&mail.token()),
        "events carry no secrets"
    );
}

#[actix_web::test]
async fn two_tabs_refreshing_at_once_get_the_same_successor_and_stay_logged_in() {
    let app = spawn_app().await;
    app.verified_user("tabs@example.com", None).await;
    let pair = app.login_ok("tabs@example.com", PASSWORD).await;
    let refresh = pair["refresh_token"].as_str().unwrap();

    let replies = futures::future::join_all((0..6).map(|_| app.refresh(refresh))).await;
    let mut successors = Vec::new();
    for r in replies {
        assert_eq!(r.status(), StatusCode::OK);
        let body: serde_json::Value = r.json().await.unwrap();
        successors.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "every tab got the same successor");

    // The session is still alive and the successor rotates normally.
    let r = app.refresh(&successors[0]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(app
        .events_of_type("session.reuse_detected")
        .await
        .is_empty());
}

#[actix_web::test]
async fn a_registration_in_russian_gets_russian_mail() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("accept-language", "ru-RU,ru;q=0.9,en;q=0.8")
        .json(&json!({"email": "ivan@example.ru", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mail = app.wait_for_mail("ivan@example.ru", "Подтвердите").await;
    assert!(mail.text.contains("token="));
    assert_eq!(
        app.events_of_type("user.registered").await[0]["data"]["locale"],
        "ru"
    );
}
