//! The access context through HTTP: roles from a preset and the admin API, grants and their
//! events, the check API, forward-auth with a permission, the lock-out and escalation rules,
//! and tokens that stay small however many roles a user holds.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::helpers::{admin, problem, spawn_app_with, Options, TestApp, PASSWORD};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let mut r = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

/// A verified user: their id and an access token.
async fn member(app: &TestApp, email: &str) -> (String, String) {
    app.verified_user(email, None).await;
    let pair = app.login_ok(email, PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    (me["id"].as_str().unwrap().to_owned(), token)
}

async fn permissions(app: &TestApp, token: &str) -> Vec<String> {
    let r = app.get_bearer("/v1/users/me/permissions", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_value(r.json::<Value>().await.unwrap()["permissions"].clone()).unwrap()
}

async fn forward_auth(app: &TestApp, token: &str, permission: &str) -> StatusCode {
    app.get_bearer(&format!("/v1/auth/verify?permission={permission}"), token)
        .await
        .status()
}

/// The claims of a token, unverified.
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn events_preset() -> Options {
    Options {
        settings: Some(Box::new(|s| {
            s.access.preset = "events".into();
            s.access.default_roles = "attendee".into();
        })),
        ..Options::default()
    }
}

#[actix_web::test]
async fn a_new_account_gets_the_default_roles_of_the_preset_with_their_events() {
    let app = spawn_app_with(events_preset()).await;
    let (id, token) = member(&app, "ann@example.com").await;
    assert_eq!(
        permissions(&app, &token).await,
        ["events:read", "registrations:write"]
    );
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["attendee"]));
    let granted = app.events_of_type("role.granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["data"]["user_id"], id.as_str());
    assert_eq!(granted[0]["data"]["role"], "attendee");
    assert_eq!(
        forward_auth(&app, &token, "registrations:write").await,
        StatusCode::OK
    );
    assert_eq!(
        forward_auth(&app, &token, "events:write").await,
        StatusCode::FORBIDDEN
    );
    let (status, body) = problem(
        app.get_bearer("/v1/auth/verify?permission=events", &token)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("permission"))
    );
}

#[actix_web::test]
async fn roles_are_created_listed_replaced_and_deleted_through_the_admin_api() {
    let app = spawn_app_with(events_preset()).await;
    let (_, root) = admin(&app).await;

    let r = send(
        &app,
        Method::POST,
        "/v1/admin/roles",
        &root,
        Some(json!({
        "name": "checkin", "description": "Scans tickets at the door",
        "permissions": ["tickets:scan", "events:read", "tickets:scan"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["location"], "/v1/admin/roles/checkin");
    let role: Value = r.json().await.unwrap();
    assert_eq!(role["permissions"], json!(["events:read", "tickets:scan"]));
    assert_eq!(role["source"], "api");

    let again = send(
        &app,
        Method::POST,
        "/v1/admin/roles",
        &root,
        Some(json!({"name": "checkin", "permissions": []})),
    )
    .await;
    assert_eq!(problem(again).await.1["code"], "role_exists");

    let list: Value = app
        .get_bearer("/v1/admin/roles", &root)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "attendee", "checkin", "organizer"]);
    let admin_role = &list["roles"][0];
    assert_eq!(
        (
            admin_role["source"].as_str(),
            admin_role["holders"].as_u64()
        ),
        (Some("builtin"), Some(1))
    );

    let r = send(
        &app,
        Method::PUT,
        "/v1/admin/roles/checkin",
        &root,
        Some(json!({"permissions": ["tickets:scan"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = app
        .get_bearer("/v1/admin/roles/checkin", &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (got["permissions"].clone(), got["description"].as_str()),
        (json!(["tickets:scan"]), Some(""))
    );
    let r = send(
        &app,
        Method::PUT,
        "/v1/admin/roles/volunteer",
        &root,
        Some(json!({"permissions": []})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Declared roles are changed where they are declared.
    for (path, code) in [
        ("/v1/admin/roles/organizer", "role_declared"),
        ("/v1/admin/roles/admin", "role_built_in"),
    ] {
        let r = send(
            &app,
            Method::PUT,
            path,
            &root,
            Some(json!({"permissions": []})),
        )
        .await;
        assert_eq!(
            refused(r).await,
            (StatusCode::CONFLICT, code.to_owned()),
            "{path}"
        );
        let r = send(&app, Method::DELETE, path, &root, None).await;
        assert_eq!(problem(r).await.1["code"], code, "{path}");
    }

    // A role someone holds is not deleted under them.
    let (kim, _) = member(&app, "kim@example.com").await;
    let r = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{kim}/roles/checkin"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(&app, Method::DELETE, "/v1/admin/roles/checkin", &root, None).await;
    assert_eq!(problem(r).await.1["code"], "role_in_use");
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/users/{kim}/roles/checkin"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(&app, Method::DELETE, "/v1/admin/roles/checkin", &root, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get_bearer("/v1/admin/roles/checkin", &root).await;
    assert_eq!(problem(r).await.1["code"], "role_not_found");

    let updated = app.events_of_type("role.updated").await;
    assert!(updated
        .iter()
        .any(|e| e["data"]["role"] == "checkin" && e["data"]["deleted"] == true));
}

/// A problem's status and code.
async fn refused(r: Response) -> (StatusCode, String) {
    let (status, body) = problem(r).await;
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[actix_web::test]
async fn bad_role_input_is_refused_naming_each_field() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let cases = [
        (json!({"name": "Bad Name", "permissions": []}), vec!["name"]),
        (
            json!({"name": "ok", "permissions": ["fine:x", "nocolon", 7]}),
            vec!["permissions[1]", "permissions[2]"],
        ),
        (
            json!({"name": "ok", "permissions": "users:read"}),
            vec!["permissions"],
        ),
        (json!({"name": "ok"}), vec!["permissions"]),
        (
            json!({"name": "ok", "permissions": [], "colour": "red"}),
            vec!["colour"],
        ),
        (
            json!({"name": "ok", "description": "x".repeat(201), "permissions": []}),
            vec!["description"],
        ),
    ];
    for (body, fields) in cases {
        let (status, b) = problem(
            send(
                &app,
                Method::POST,
                "/v1/admin/roles",
                &root,
                Some(body.clone()),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let got: Vec<&str> = b["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{body}");
    }
    let (status, b) = problem(
        send(
            &app,
            Method::PUT,
            "/v1/admin/users/nope/roles/Admin",
            &root,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(b["errors"].as_array().unwrap().len(), 2, "{b}");
    let (status, b) = problem(
        send(
            &app,
            Method::PUT,
            &format!("/v1/admin/users/{}/roles/admin", uuid::Uuid::new_v4()),
            &root,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("user_not_found"))
    );
    let roles: Value = app
        .get_bearer("/v1/admin/roles", &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        roles["roles"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
}

#[actix_web::test]
async fn a_revoked_role_is_refused_at_once_even_for_a_token_issued_before() {
    let app = spawn_app_with(events_preset()).await;
    let (root_id, root) = admin(&app).await;
    let (bo, token) = member(&app, "bo@example.com").await;
    let r = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{bo}/roles/organizer"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Granting twice changes nothing and emits nothing more.
    send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{bo}/roles/organizer"),
        &root,
        None,
    )
    .await;
    assert_eq!(
        forward_auth(&app, &token, "events:write").await,
        StatusCode::OK
    );
    let check = |token: String, body: Value| {
        let app = &app;
        async move {
            send(app, Method::POST, "/v1/access/check", &token, Some(body))
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        check(
            token.clone(),
            json!({"user_id": bo, "permission": "events:write"})
        )
        .await,
        json!({"allowed": true})
    );

    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/users/{bo}/roles/organizer"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        forward_auth(&app, &token, "events:write").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        check(
            token.clone(),
            json!({"user_id": bo, "permission": "events:write"})
        )
        .await,
        json!({"allowed": false})
    );
    // The default role stays.
    assert_eq!(
        forward_auth(&app, &token, "events:read").await,
        StatusCode::OK
    );

    let granted: Vec<Value> = app
        .events_of_type("role.granted")
        .await
        .into_iter()
        .filter(|e| e["data"]["role"] == "organizer")
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["data"]["by"], root_id.as_str());
    let revoked = app.events_of_type("role.revoked").await;
    assert_eq!(
        (revoked.len(), revoked[0]["data"]["user_id"].as_str()),
        (1, Some(bo.as_str()))
    );

    // Both admin actions are in the audit log with their actor.
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT user_id, actor_id FROM audit_log WHERE kind LIKE 'role.%' AND actor_id IS NOT NULL ORDER BY id",
        ))
        .await
        .unwrap();
    let lines: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let id = |c: &str| r.try_get::<uuid::Uuid>("", c).unwrap().to_string();
            (id("user_id"), id("actor_id"))
        })
        .collect();
    assert_eq!(lines, vec![(bo.clone(), root_id.clone()); 2]);
}

#[actix_web::test]
async fn the_check_api_answers_about_others_only_with_access_check_and_in_batches() {
    let app = spawn_app_with(events_preset()).await;
    let (_, root) = admin(&app).await;
    let (cy, cy_token) = member(&app, "cy@example.com").await;
    let (di, _) = member(&app, "di@example.com").await;

    let asks_about_di = send(
        &app,
        Method::POST,
        "/v1/access/check",
        &cy_token,
        Some(json!({"user_id": di, "permission": "events:read"})),
    )
    .await;
    assert_eq!(problem(asks_about_di).await.1["code"], "forbidden");

    let r = send(
        &app,
        Method::POST,
        "/v1/access/check",
        &root,
        Some(json!({"checks": [
            {"user_id": cy, "permission": "events:read"},
            {"user_id": di, "permission": "events:write"},
            {"user_id": uuid::Uuid::new_v4(), "permission": "events:read"},
        ]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"results": [{"allowed": true}, {"allowed": false}, {"allowed": false}]})
    );

    // A blocked user is allowed nothing.
    let r = app
        .post_bearer(
            &format!("/v1/admin/users/{cy}/block"),
            &root,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(
        &app,
        Method::POST,
        "/v1/access/check",
        &root,
        Some(json!({"user_id": cy, "permission": "events:read"})),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"allowed": false}));

    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"user_id": di, "permission": "events:read"}))
        .collect();
    for (body, field) in [
        (json!({"checks": too_many}), "checks"),
        (json!({"checks": []}), "checks"),
        (
            json!({"checks": [{"user_id": "x", "permission": "events:read"}]}),
            "checks[0].user_id",
        ),
        (
            json!({"checks": [{"user_id": di, "permission": "EVENTS"}]}),
            "checks[0].permission",
        ),
        (json!({"user_id": di}), "permission"),
        (
            json!({"user_id": di, "permission": "a:b", "extra": 1}),
            "extra",
        ),
    ] {
        let (status, b) = problem(
            send(
                &app,
                Method::POST,
                "/v1/access/check",
                &root,
                Some(body.clone()),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, b["errors"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn an_administrator_cannot_lock_themself_out_or_hand_out_what_they_lack() {
    let app = spawn_app_with(events_preset()).await;
    let (root_id, root) = admin(&app).await;
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/users/{root_id}/roles/admin"),
        &root,
        None,
    )
    .await;
    assert_eq!(
        refused(r).await,
        (StatusCode::CONFLICT, "self_lockout".to_owned())
    );

    // A role manager holds roles:write but not the rest of admin's permissions.
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/roles",
        &root,
        Some(json!({"name": "roles-manager", "permissions": ["roles:read", "roles:write"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (eve, eve_token) = member(&app, "eve@example.com").await;
    send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{eve}/roles/roles-manager"),
        &root,
        None,
    )
    .await;
    let r = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{eve}/roles/admin"),
        &eve_token,
        None,
    )
    .await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/roles",
        &eve_token,
        Some(json!({"name": "sneaky", "permissions": ["users:delete"]})),
    )
    .await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);
    // Product permissions are hers to hand out.
    let r = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{eve}/roles/organizer"),
        &eve_token,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Editing her own role so that it loses roles:write would lock her out.
    let r = send(
        &app,
        Method::PUT,
        "/v1/admin/roles/roles-manager",
        &eve_token,
        Some(json!({"permissions": ["roles:read"]})),
    )
    .await;
    assert_eq!(
        refused(r).await,
        (StatusCode::CONFLICT, "self_lockout".to_owned())
    );

    // A plain user reaching any admin route gets 403.
    let (_, plain) = member(&app, "pat@example.com").await;
    for (method, path) in [
        (Method::GET, "/v1/admin/roles".to_owned()),
        (Method::GET, "/v1/admin/roles/admin".to_owned()),
        (Method::DELETE, "/v1/admin/roles/organizer".to_owned()),
        (Method::PUT, format!("/v1/admin/users/{eve}/roles/admin")),
        (
            Method::DELETE,
            format!("/v1/admin/users/{eve}/roles/organizer"),
        ),
        (Method::POST, format!("/v1/admin/users/{eve}/block")),
    ] {
        let body =
            (method != Method::GET && method != Method::DELETE).then(|| json!({"permissions": []}));
        let body = if path.ends_with("/block") {
            Some(json!({}))
        } else {
            body
        };
        let r = send(&app, method.clone(), &path, &plain, body).await;
        assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN, "{method} {path}");
    }
}

#[actix_web::test]
async fn a_token_stays_under_a_kilobyte_however_many_roles_its_user_holds() {
    let app = spawn_app_with(Options::default()).await;
    let (_, root) = admin(&app).await;
    let (zo, _) = member(&app, "zo@example.com").await;
    for i in 0..40 {
        let name = format!("a-rather-long-role-name-for-department-{i:03}");
        let r = send(
            &app,
            Method::PUT,
            &format!("/v1/admin/roles/{name}"),
            &root,
            Some(json!({"permissions": [format!("dept{i}:read")]})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = send(
            &app,
            Method::PUT,
            &format!("/v1/admin/users/{zo}/roles/{name}"),
            &root,
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let pair = app.login_ok("zo@example.com", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    assert!(token.len() <= 1024, "{} bytes", token.len());
    let zo_claims = claims(token);
    assert_eq!(zo_claims["roles_truncated"], true);
    assert!(!zo_claims["roles"].as_array().unwrap().is_empty());
    // Every permission is still answered.
    assert_eq!(permissions(&app, token).await.len(), 40);
    assert_eq!(
        forward_auth(&app, token, "dept39:read").await,
        StatusCode::OK
    );
    // A user with few roles gets them all, and no truncation mark.
    let root_claims = claims(&root);
    assert_eq!(
        (
            root_claims["roles"].clone(),
            root_claims.get("roles_truncated")
        ),
        (json!(["admin"]), None)
    );
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn a_revoke_on_one_node_is_refused_on_another_within_a_second() {
    let _broker = crate::helpers::broker_lock().await;
    let a = spawn_app_with(Options {
        amqp: true,
        settings: Some(Box::new(|s| s.access.preset = "events".into())),
        ..Options::default()
    })
    .await;
    let (_, root) = admin(&a).await;
    // B reads the outbox feed only once an hour: the grant and the revoke reach it through
    // keyward.broadcast. (The feed alone is tested in actors/src/caches.rs.)
    let b = a
        .spawn_peer_with_recheck(Some(Duration::from_secs(3600)))
        .await;
    let (fay, token) = member(&a, "fay@example.com").await;
    for round in 0..3 {
        let r = send(
            &a,
            Method::PUT,
            &format!("/v1/admin/users/{fay}/roles/organizer"),
            &root,
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let on_b = || async {
            a.client
                .get(format!(
                    "http://{}/v1/auth/verify?permission=events:write",
                    b.public_addr
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
        };
        let started = Instant::now();
        while on_b().await != StatusCode::OK {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "round {round}: B does not see the grant after a second"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = send(
            &a,
            Method::DELETE,
            &format!("/v1/admin/users/{fay}/roles/organizer"),
            &root,
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let started = Instant::now();
        while on_b().await != StatusCode::FORBIDDEN {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "round {round}: B still allows a revoked role after a second"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    b.stop().await;
}
