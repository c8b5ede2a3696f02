//! Session listing and revocation.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{problem, spawn_app, spawn_app_with, Options, PASSWORD};

#[actix_web::test]
async fn a_user_lists_and_revokes_their_sessions() {
    let app = spawn_app().await;
    app.verified_user("kim@example.com", None).await;
    let a = app.login_ok("kim@example.com", PASSWORD).await;
    let b = app.login_ok("kim@example.com", PASSWORD).await;
    let c = app.login_ok("kim@example.com", PASSWORD).await;
    let at = a["access_token"].as_str().unwrap();

    let list: Vec<serde_json::Value> = app
        .get_bearer("/v1/sessions", at)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    let current: Vec<_> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], a["session_id"]);
    for k in [
        "created_at",
        "last_used_at",
        "expires_at",
        "user_agent",
        "ip",
    ] {
        assert!(current[0].get(k).is_some(), "{k}");
    }
    assert_eq!(current[0]["ip"], "127.0.0.1");

    // Revoke one other session by id.
    let r = app
        .delete_bearer(
            &format!("/v1/sessions/{}", b["session_id"].as_str().unwrap()),
            at,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = problem(
        app.get_bearer("/v1/users/me", b["access_token"].as_str().unwrap())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = problem(
        app.delete_bearer(
            &format!("/v1/sessions/{}", b["session_id"].as_str().unwrap()),
            at,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("session_not_found"))
    );
    let (status, body) = problem(app.delete_bearer("/v1/sessions/not-a-uuid", at).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "id");

    // Someone else's session is not found, not revoked.
    app.verified_user("lee@example.com", None).await;
    let lee = app.login_ok("lee@example.com", PASSWORD).await;
    let (status, _) = problem(
        app.delete_bearer(
            &format!("/v1/sessions/{}", lee["session_id"].as_str().unwrap()),
            at,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_bearer("/v1/users/me", lee["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    // DELETE /v1/sessions ends all others and keeps this one.
    let r = app.delete_bearer("/v1/sessions", at).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = problem(app.refresh(c["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let list: Vec<serde_json::Value> = app
        .get_bearer("/v1/sessions", at)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
}

#[actix_web::test]
async fn forward_auth_answers_with_identity_headers_or_401() {
    let app = spawn_app().await;
    app.verified_user("max@example.com", None).await;
    let pair = app.login_ok("max@example.com", PASSWORD).await;
    let r = app
        .get_bearer("/v1/auth/verify", pair["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-keyward-session-id"],
        pair["session_id"].as_str().unwrap()
    );
    assert!(r.headers().contains_key("x-keyward-user-id"));
    assert!(r.headers().contains_key("x-keyward-roles"));
    let r = app
        .client
        .get(app.url("/v1/auth/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// A node remembers sessions it read as live (here for an hour, far beyond the one-second
/// default), yet refuses every ended one: at once for each way this node ends a session, and
/// within a second for a revocation another process wrote to the database (the CLI's block),
/// which the outbox relay brings to the node's session gate.
#[actix_web::test]
async fn a_node_that_remembers_live_sessions_refuses_every_ended_one() {
    let app = spawn_app_with(Options {
        session_recheck: Some(Duration::from_secs(3600)),
        ..Options::default()
    })
    .await;
    app.verified_user("ivy@example.com", None).await;
    let app = &app;
    let remembered = || async move {
        let pair = app.login_ok("ivy@example.com", PASSWORD).await;
        let at = pair["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            app.get_bearer("/v1/auth/verify", &at).await.status(),
            StatusCode::OK
        );
        (pair, at)
    };
    let refused = |at: String| async move {
        app.get_bearer("/v1/auth/verify", &at).await.status() == StatusCode::UNAUTHORIZED
    };

    let (_, at) = remembered().await;
    assert_eq!(
        app.post_bearer("/v1/auth/logout", &at, None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(refused(at).await, "logout");

    let (keep, keep_at) = remembered().await;
    let (one, one_at) = remembered().await;
    let path = format!("/v1/sessions/{}", one["session_id"].as_str().unwrap());
    assert_eq!(
        app.delete_bearer(&path, &keep_at).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(refused(one_at).await, "DELETE /v1/sessions/{{id}}");

    let (_, other_at) = remembered().await;
    assert_eq!(
        app.delete_bearer("/v1/sessions", &keep_at).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(refused(other_at).await, "DELETE /v1/sessions");

    let (_, other_at) = remembered().await;
    let change = json!({"current_password": PASSWORD, "new_password": "amber falcon meadow"});
    assert_eq!(
        app.post_bearer("/v1/auth/password/change", &keep_at, Some(change))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(refused(other_at).await, "password change");
    assert_eq!(
        app.get_bearer("/v1/auth/verify", &keep_at).await.status(),
        StatusCode::OK,
        "the session that changed the password stays"
    );

    // Refresh-token reuse after the grace window ends the session it belongs to.
    let rt = keep["refresh_token"].as_str().unwrap();
    assert_eq!(app.refresh(rt).await.status(), StatusCode::OK);
    app.clock_offset.fetch_add(60, Ordering::SeqCst);
    assert_eq!(app.refresh(rt).await.status(), StatusCode::UNAUTHORIZED);
    assert!(refused(keep_at).await, "refresh-token reuse");

    // Another writer on the database: the CLI's block.
    let pair = app.login_ok("ivy@example.com", "amber falcon meadow").await;
    let at = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_bearer("/v1/auth/verify", &at).await.status(),
        StatusCode::OK
    );
    let store = &app.node.contexts.store;
    assert!(keyward_actors::admin::set_blocked(
        &app.settings,
        store,
        "ivy@example.com",
        true,
        None
    )
    .await
    .unwrap());
    let start = Instant::now();
    while !refused(at.clone()).await {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a revocation written by another process was still ignored after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node that read a session as live must not end it when the idle expiry it read passes: a
/// refresh (here on the same node, elsewhere in production) moved that expiry, and no message
/// says so.
#[actix_web::test]
async fn a_session_kept_alive_by_refresh_outlives_the_idle_expiry_a_node_remembered() {
    let app = spawn_app_with(Options {
        session_recheck: Some(Duration::from_secs(3600)),
        settings: Some(Box::new(|s| s.tokens.refresh_idle_ttl_secs = 100)),
        ..Options::default()
    })
    .await;
    app.verified_user("ada@example.com", None).await;
    let pair = app.login_ok("ada@example.com", PASSWORD).await;
    let first = pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_bearer("/v1/auth/verify", first).await.status(),
        StatusCode::OK
    );

    app.clock_offset.fetch_add(60, Ordering::SeqCst);
    let r = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let next: serde_json::Value = r.json().await.unwrap();
    // Past the idle expiry the node first read (100 s after login), inside the new one.
    app.clock_offset.fetch_add(60, Ordering::SeqCst);
    let at = next["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_bearer("/v1/auth/verify", at).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_bearer("/v1/users/me", at).await.status(),
        StatusCode::OK
    );
}
