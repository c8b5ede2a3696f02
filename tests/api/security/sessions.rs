//! Session termination: password change and reset, blocking, logout and refresh reuse end
//! sessions, and every bearer endpoint, forward-auth and refresh honour it at once.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{admin, problem, spawn_app, PASSWORD};

#[actix_web::test]
async fn asvs_v6_3_8_a_blocked_account_gets_403_only_with_the_right_password() {
    let app = spawn_app().await;
    app.verified_user("hank@example.com", None).await;
    app.exec("UPDATE users SET blocked = true WHERE email_normalized = 'hank@example.com'")
        .await;
    let (status, body) = problem(app.login("hank@example.com", PASSWORD).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_blocked"))
    );
    let (status, _) = problem(app.login("hank@example.com", "not the password").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn asvs_v7_4_3_forgot_and_reset_password_ends_every_session() {
    let app = spawn_app().await;
    app.verified_user("ida@example.com", None).await;
    let a = app.login_ok("ida@example.com", PASSWORD).await;
    let b = app.login_ok("ida@example.com", PASSWORD).await;

    for email in ["ida@example.com", "unknown@example.com"] {
        let r = app
            .post("/v1/auth/password/forgot", json!({"email": email}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "same reply for {email}");
    }
    let token = app
        .wait_for_mail("ida@example.com", "Reset your password")
        .await
        .token();

    // A weak new password is refused and the link stays usable.
    let (status, body) = problem(
        app.post(
            "/v1/auth/password/reset",
            json!({"token": token, "password": "123"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "password");

    let r = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for pair in [&a, &b] {
        let (status, _) = problem(
            app.get_bearer("/v1/users/me", pair["access_token"].as_str().unwrap())
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = problem(app.refresh(pair["refresh_token"].as_str().unwrap()).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = problem(app.login("ida@example.com", PASSWORD).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.login_ok("ida@example.com", "a brand new passphrase")
        .await;
    let (status, body) = problem(
        app.post(
            "/v1/auth/password/reset",
            json!({"token": token, "password": "another passphrase 2"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token"))
    );
    app.wait_for_mail("ida@example.com", "password was changed")
        .await;
    assert_eq!(app.events_of_type("session.revoked").await.len(), 2);
}

#[actix_web::test]
async fn asvs_v7_4_3_changing_the_password_ends_the_other_sessions_only() {
    let app = spawn_app().await;
    app.verified_user("jo@example.com", None).await;
    let current = app.login_ok("jo@example.com", PASSWORD).await;
    let other = app.login_ok("jo@example.com", PASSWORD).await;
    let at = current["access_token"].as_str().unwrap();

    let (status, body) = problem(
        app.post_bearer(
            "/v1/auth/password/change",
            at,
            Some(json!({"current_password": "wrong one!", "new_password": "fresh passphrase 9"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "current_password");

    let r = app
        .post_bearer(
            "/v1/auth/password/change",
            at,
            Some(json!({"current_password": PASSWORD, "new_password": "fresh passphrase 9"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/v1/users/me", at).await.status(),
        StatusCode::OK
    );
    let (status, _) = problem(
        app.get_bearer("/v1/users/me", other["access_token"].as_str().unwrap())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.login_ok("jo@example.com", "fresh passphrase 9").await;
    let (status, _) = problem(app.post("/v1/auth/password/change", json!({})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no bearer");
}

#[actix_web::test]
async fn asvs_v7_4_2_blocking_an_account_ends_every_session_and_is_honoured_at_refresh_and_forward_auth(
) {
    let app = spawn_app().await;
    let (admin_id, root) = admin(&app).await;
    app.verified_user("bea@example.com", None).await;
    let a = app.login_ok("bea@example.com", PASSWORD).await;
    let b = app.login_ok("bea@example.com", PASSWORD).await;
    let me: Value = app
        .get_bearer("/v1/users/me", a["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let bea = me["id"].as_str().unwrap().to_owned();

    let r = app
        .post_bearer(
            &format!("/v1/admin/users/{bea}/block"),
            &root,
            Some(json!({"reason": "chargeback fraud"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    for pair in [&a, &b] {
        let access = pair["access_token"].as_str().unwrap();
        for path in ["/v1/users/me", "/v1/auth/verify", "/v1/sessions"] {
            let r = app.get_bearer(path, access).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        let (status, body) =
            problem(app.refresh(pair["refresh_token"].as_str().unwrap()).await).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_refresh_token"))
        );
    }
    let (status, body) = problem(app.login("bea@example.com", PASSWORD).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_blocked"))
    );

    // Blocking twice is a success that changes nothing; the administrator is unaffected.
    let r = app
        .post_bearer(
            &format!("/v1/admin/users/{bea}/block"),
            &root,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/v1/users/me", &root).await.status(),
        StatusCode::OK
    );

    app.wait_outbox_drained().await;
    let blocked = app.events_of_type("user.blocked").await;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["data"]["user_id"], bea.as_str());
    assert_eq!(blocked[0]["data"]["reason"], "chargeback fraud");
    assert_eq!(blocked[0]["data"]["by"], admin_id.as_str());
    let revoked: Vec<Value> = app
        .events_of_type("session.revoked")
        .await
        .into_iter()
        .filter(|e| e["data"]["reason"] == "account_blocked")
        .collect();
    let mut ended: Vec<&str> = revoked
        .iter()
        .map(|e| e["data"]["session_id"].as_str().unwrap())
        .collect();
    ended.sort_unstable();
    let mut expected = vec![
        a["session_id"].as_str().unwrap(),
        b["session_id"].as_str().unwrap(),
    ];
    expected.sort_unstable();
    assert_eq!(ended, expected);
    let audit = super::audit::audit_rows(&app).await;
    assert!(
        audit
            .iter()
            .any(|r| r["kind"] == "user.blocked" && r["user_id"] == bea.as_str()),
        "{audit:?}"
    );

    // Unblocked, the account logs in again.
    let r = app
        .post_bearer(&format!("/v1/admin/users/{bea}/unblock"), &root, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.login_ok("bea@example.com", PASSWORD).await;
    app.wait_outbox_drained().await;
    assert_eq!(app.events_of_type("user.unblocked").await.len(), 1);
}

#[actix_web::test]
async fn asvs_v7_4_5_only_administrators_block_and_bad_targets_are_named() {
    let app = spawn_app().await;
    let (admin_id, root) = admin(&app).await;
    app.verified_user("cal@example.com", None).await;
    let cal = app.login_ok("cal@example.com", PASSWORD).await;
    let cal_token = cal["access_token"].as_str().unwrap();

    // A user without the role: 403, and nothing happened.
    let (status, body) = problem(
        app.post_bearer(
            &format!("/v1/admin/users/{admin_id}/block"),
            cal_token,
            Some(json!({})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(
        app.get_bearer("/v1/users/me", &root).await.status(),
        StatusCode::OK
    );

    let cases = [
        (
            "/v1/admin/users/not-a-uuid/block",
            json!({}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            &*format!("/v1/admin/users/{}/block", uuid::Uuid::new_v4()),
            json!({}),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        // Blocking oneself would lock the administrator out.
        (
            &*format!("/v1/admin/users/{admin_id}/block"),
            json!({}),
            StatusCode::CONFLICT,
            "self_lockout",
        ),
        (
            &*format!("/v1/admin/users/{admin_id}/block"),
            json!({"reason": "x".repeat(501)}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, b) = problem(app.post_bearer(path, &root, Some(body)).await).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{path}");
        if status == StatusCode::BAD_REQUEST {
            let field = b["errors"][0]["field"].as_str().unwrap();
            assert!(field == "id" || field == "reason", "{b}");
        }
    }

    // Permissions come from live grants: once another administrator revokes the role, the
    // still-valid token no longer blocks.
    keyward_actors::admin::create_user(
        &app.settings,
        &app.node.contexts.store,
        "root2@example.com",
        PASSWORD,
        &["admin".to_owned()],
    )
    .await
    .unwrap();
    let root2 = app.login_ok("root2@example.com", PASSWORD).await;
    let r = app
        .delete_bearer(
            &format!("/v1/admin/users/{admin_id}/roles/admin"),
            root2["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cal_id = app
        .get_bearer("/v1/users/me", cal_token)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = problem(
        app.post_bearer(
            &format!("/v1/admin/users/{cal_id}/block"),
            &root,
            Some(json!({})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_bearer("/v1/users/me", cal_token).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn asvs_v7_4_1_logout_ends_the_session_for_bearers_forward_auth_and_refresh() {
    let app = spawn_app().await;
    app.verified_user("dan@example.com", None).await;
    let pair = app.login_ok("dan@example.com", PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();
    let r = app.post_bearer("/v1/auth/logout", access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for path in ["/v1/users/me", "/v1/auth/verify", "/v1/sessions"] {
        assert_eq!(
            app.get_bearer(path, access).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let r = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn asvs_v7_4_1_reusing_a_rotated_refresh_token_ends_the_whole_session() {
    let app = spawn_app().await;
    app.verified_user("eve@example.com", None).await;
    let first = app.login_ok("eve@example.com", PASSWORD).await;
    let old = first["refresh_token"].as_str().unwrap();
    let second: Value = app.refresh(old).await.json().await.unwrap();
    // Past the grace window, the old token is a replay: the thief and the user both lose the
    // session, and the newest tokens die with it.
    app.advance(11);
    let (status, _) = problem(app.refresh(old).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = app.refresh(second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .get_bearer("/v1/auth/verify", second["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.wait_outbox_drained().await;
    assert_eq!(app.events_of_type("session.reuse_detected").await.len(), 1);
}
