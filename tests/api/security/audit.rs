//! The audit log: every security event with time, user, client and request id; append-only.

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, PASSWORD};

pub(crate) async fn audit_rows(app: &crate::helpers::TestApp) -> Vec<Value> {
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT kind, user_id, ip, user_agent, request_id, details FROM audit_log ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            json!({
                "kind": r.try_get::<String>("", "kind").unwrap(),
                "user_id": r.try_get::<Option<uuid::Uuid>>("", "user_id").unwrap().map(|u| u.to_string()),
                "ip": r.try_get::<Option<String>>("", "ip").unwrap(),
                "user_agent": r.try_get::<Option<String>>("", "user_agent").unwrap(),
                "request_id": r.try_get::<Option<String>>("", "request_id").unwrap(),
                "details": serde_json::from_str::<Value>(&r.try_get::<String>("", "details").unwrap()).unwrap(),
            })
        })
        .collect()
}

#[actix_web::test]
async fn asvs_v16_3_1_security_events_leave_an_audit_trail_naming_user_client_and_request() {
    let app = spawn_app().await;
    app.verified_user("ann@example.com", None).await;
    let post = |path: &str, body: Value, rid: &str| {
        app.client
            .post(app.url(path))
            .header("x-request-id", rid)
            .header("user-agent", "audit-test/1.0")
            .json(&body)
            .send()
    };
    let r = post(
        "/v1/auth/login",
        json!({"login": "ann@example.com", "password": "wrong password!"}),
        "rid-wrong",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post(
        "/v1/auth/login",
        json!({"login": "nobody@example.com", "password": "wrong password!"}),
        "rid-unknown",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let pair: Value = post(
        "/v1/auth/login",
        json!({"login": "ann@example.com", "password": PASSWORD}),
        "rid-login",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let other = app.login_ok("ann@example.com", PASSWORD).await;
    let r = app
        .post_bearer(
            "/v1/auth/password/change",
            pair["access_token"].as_str().unwrap(),
            Some(
                json!({"current_password": PASSWORD, "new_password": "an entirely new passphrase"}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let me: Value = app
        .get_bearer("/v1/users/me", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let ann = me["id"].as_str().unwrap().to_owned();

    let rows = audit_rows(&app).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in [
        "user.login_failed",
        "user.logged_in",
        "user.password_changed",
        "session.revoked",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let wrong = rows
        .iter()
        .find(|r| r["request_id"] == "rid-wrong")
        .unwrap();
    assert_eq!(wrong["kind"], "user.login_failed");
    assert_eq!(wrong["user_id"], ann.as_str());
    assert_eq!(wrong["ip"], "127.0.0.1");
    assert_eq!(wrong["user_agent"], "audit-test/1.0");
    // An unknown account has no user, but its attempt is on record.
    let unknown = rows
        .iter()
        .find(|r| r["request_id"] == "rid-unknown")
        .unwrap();
    assert_eq!(unknown["kind"], "user.login_failed");
    assert!(unknown["user_id"].is_null());
    assert_eq!(unknown["details"]["login"], "nobody@example.com");
    let login = rows
        .iter()
        .find(|r| r["request_id"] == "rid-login")
        .unwrap();
    assert_eq!(login["kind"], "user.logged_in");
    assert_eq!(login["details"]["session_id"], pair["session_id"]);
    let revoked = rows
        .iter()
        .find(|r| r["kind"] == "session.revoked")
        .unwrap();
    assert_eq!(revoked["details"]["session_id"], other["session_id"]);
    assert_eq!(revoked["details"]["reason"], "password_changed");
    // Every line names the request that caused it, and none holds a secret.
    assert!(rows
        .iter()
        .all(|r| r["request_id"].is_string() && r["ip"].is_string()));
    let all = serde_json::to_string(&rows).unwrap();
    assert!(
        !all.contains(PASSWORD)
            && !all.contains("wrong password!")
            && !all.contains("entirely new")
    );
}

#[actix_web::test]
async fn asvs_v16_4_2_the_audit_log_refuses_updates_and_deletes() {
    let app = spawn_app().await;
    app.login("ghost@example.com", "wrong password!").await;
    assert_eq!(audit_rows(&app).await.len(), 1);
    let backend = app.db.get_database_backend();
    for sql in [
        "UPDATE audit_log SET kind = 'rewritten'",
        "DELETE FROM audit_log",
    ] {
        let result = app
            .db
            .execute_raw(Statement::from_string(backend, sql))
            .await;
        assert!(result.is_err(), "{sql} was allowed");
    }
    assert_eq!(audit_rows(&app).await[0]["kind"], "user.login_failed");
}
