//! The access context through HTTP: roles from a preset and the admin API, grants and their
//! events, the check API, forward-auth with a permission, the lock-out and escalation rules,
//! and tokens that stay small however many roles a user holds.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::helpers::{admin, claims, member, problem, spawn_app_with, Options, TestApp, PASSWORD};

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

/// A refreshed access token names the roles its user holds at the refresh: one granted since
/// the login is in it, one revoked since is not.
#[actix_web::test]
async fn a_refreshed_token_names_the_roles_held_at_the_refresh() {
    let app = spawn_app_with(events_preset()).await;
    let (_, root) = admin(&app).await;
    app.verified_user("bo@example.com", None).await;
    let pair = app.login_ok("bo@example.com", PASSWORD).await;
    let roles_of = |pair: &Value| claims(pair["access_token"].as_str().unwrap())["roles"].clone();
    assert_eq!(roles_of(&pair), json!(["attendee"]));
    let bo = claims(pair["access_token"].as_str().unwrap())["sub"].clone();
    let bo = bo.as_str().unwrap();
    let mut refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    for (method, expected) in [
        (Method::PUT, json!(["attendee", "organizer"])),
        (Method::DELETE, json!(["attendee"])),
    ] {
        let path = format!("/v1/admin/users/{bo}/roles/organizer");
        let r = send(&app, method, &path, &root, None).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = app.refresh(&refresh).await;
        assert_eq!(r.status(), StatusCode::OK);
        let pair: Value = r.json().await.unwrap();
        assert_eq!(roles_of(&pair), expected);
        refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    }
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
async fn the_check_api_refuses_a_bad_or_ended_token_before_it_reads_the_body() {
    let app = spawn_app_with(events_preset()).await;
    let (di, di_token) = member(&app, "di@example.com").await;
    let good = json!({"user_id": di, "permission": "events:read"});
    let bad = json!({"checks": []});
    let refused = |r: Response| async move {
        let challenge = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, body) = problem(r).await;
        (status, body["code"].as_str().map(str::to_owned), challenge)
    };
    let invalid = (
        StatusCode::UNAUTHORIZED,
        Some("unauthenticated".to_owned()),
        Some(r#"Bearer error="invalid_token""#.to_owned()),
    );
    for body in [&good, &bad] {
        let r = send(
            &app,
            Method::POST,
            "/v1/access/check",
            "not.a.token",
            Some(body.clone()),
        );
        assert_eq!(refused(r.await).await, invalid, "{body}");
    }
    let r = app
        .client
        .post(app.url("/v1/access/check"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.0, StatusCode::UNAUTHORIZED);

    // A user asks about themself; once logged out, the same token is refused, body or not.
    let r = send(
        &app,
        Method::POST,
        "/v1/access/check",
        &di_token,
        Some(good.clone()),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"allowed": true}));
    let r = app.post_bearer("/v1/auth/logout", &di_token, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for body in [&good, &bad] {
        let r = send(
            &app,
            Method::POST,
            "/v1/access/check",
            &di_token,
            Some(body.clone()),
        );
        assert_eq!(refused(r.await).await, invalid, "{body}");
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

/// A client made as the CLI makes it: its id and secret.
async fn client(app: &TestApp, name: &str, scopes: &[&str]) -> (String, String) {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let c = keyward_actors::admin::create_client(&app.node.contexts.store, name, &scopes)
        .await
        .unwrap();
    (c.client.client_id, c.client_secret)
}

async fn token_request(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Response {
    let mut r = app.client.post(app.url("/v1/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    r.send().await.unwrap()
}

async fn oauth(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[actix_web::test]
async fn a_service_client_gets_a_short_lived_token_and_asks_the_check_api() {
    let app = spawn_app_with(events_preset()).await;
    let (ann, _) = member(&app, "ann@example.com").await;
    let (id, secret) = client(&app, "booking", &["access:check", "users:read"]).await;

    // client_secret_basic, every scope of the client.
    let r = token_request(
        &app,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        (t["token_type"].as_str(), t["expires_in"].as_u64()),
        (Some("Bearer"), Some(300))
    );
    assert_eq!(t["scope"], "access:check users:read");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some(id.as_str()), Some(id.as_str()))
    );
    assert!(c.get("sid").is_none() && c.get("email").is_none());

    let r = send(
        &app,
        Method::POST,
        "/v1/access/check",
        &token,
        Some(json!({"checks": [
        {"user_id": ann, "permission": "registrations:write"},
        {"user_id": ann, "permission": "events:write"}]})),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"results": [{"allowed": true}, {"allowed": false}]})
    );
    // A client's token is not a user's.
    assert_eq!(
        app.get_bearer("/v1/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_bearer("/v1/auth/verify", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // client_secret_post, one scope: without access:check the check API refuses it.
    let r = token_request(
        &app,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "users:read"),
        ],
    )
    .await;
    let narrow: Value = r.json().await.unwrap();
    assert_eq!(narrow["scope"], "users:read");
    let r = send(
        &app,
        Method::POST,
        "/v1/access/check",
        narrow["access_token"].as_str().unwrap(),
        Some(json!({"user_id": ann, "permission": "events:read"})),
    )
    .await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);

    // A client cannot mint itself scopes it was not given.
    let r = token_request(
        &app,
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "access:check users:delete"),
        ],
    )
    .await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
    let r = token_request(
        &app,
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "NOT A SCOPE"),
        ],
    )
    .await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
}

#[actix_web::test]
async fn the_token_endpoint_answers_bad_requests_in_rfc_6749_terms_and_throttles_guessing() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.throttle.account_max_failures = 3;
            s.throttle.base_delay_secs = 60;
        })),
        ..Options::default()
    })
    .await;
    let (id, secret) = client(&app, "catalog", &["access:check"]).await;
    let r = token_request(
        &app,
        Some((&id, "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"keyward\"");
    assert_eq!(
        oauth(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = token_request(
        &app,
        Some(("kwc_nobody", &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = token_request(&app, None, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = token_request(&app, Some((&id, &secret)), &[("grant_type", "password")]).await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::BAD_REQUEST, "unsupported_grant_type".into())
    );
    let r = token_request(&app, Some((&id, &secret)), &[]).await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let r = token_request(
        &app,
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        oauth(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let r = app
        .client
        .post(app.url("/v1/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        oauth(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );

    // Guessing: after the limit the client's right secret waits too.
    for _ in 0..3 {
        token_request(
            &app,
            Some((&id, "guess")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    }
    let r = token_request(
        &app,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        oauth(r).await,
        (StatusCode::TOO_MANY_REQUESTS, "too_many_requests".into())
    );
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT details FROM audit_log WHERE kind = 'client.auth_failed'",
        ))
        .await
        .unwrap();
    assert!(rows.len() >= 4, "{}", rows.len());
}

#[actix_web::test]
async fn clients_are_managed_through_the_admin_api_and_a_deleted_one_is_refused() {
    let app = spawn_app_with(Options::default()).await;
    let (root_id, root) = admin(&app).await;
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/clients",
        &root,
        Some(json!({"name": "chat", "scopes": ["access:check"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let (id, secret) = (
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    );
    assert!(id.starts_with("kwc_") && secret.len() >= 43, "{created}");

    let list: Value = app
        .get_bearer("/v1/admin/clients", &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["clients"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains(&secret),
        "a secret is shown once"
    );

    for (body, field) in [
        (
            json!({"name": "chat", "scopes": ["bookings:write"]}),
            "scopes[0]",
        ),
        (json!({"name": "chat", "scopes": []}), "scopes"),
        (
            json!({"name": "Chat Service", "scopes": ["access:check"]}),
            "name",
        ),
    ] {
        let (status, b) = problem(
            send(
                &app,
                Method::POST,
                "/v1/admin/clients",
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

    // A new secret: the old one stops working at once.
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/admin/clients/{id}/secret"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh = r.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = token_request(
        &app,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(oauth(r).await.1, "invalid_client");
    let r = token_request(
        &app,
        Some((&id, &fresh)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask = json!({"user_id": root_id, "permission": "users:read"});
    let r = send(
        &app,
        Method::POST,
        "/v1/access/check",
        &token,
        Some(ask.clone()),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"allowed": true}));

    // Deleted: its unexpired token is refused.
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/clients/{id}"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(&app, Method::POST, "/v1/access/check", &token, Some(ask)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/clients/{id}"),
        &root,
        None,
    )
    .await;
    assert_eq!(problem(r).await.1["code"], "client_not_found");
    let updated = app.events_of_type("client.updated").await;
    assert_eq!(updated.len(), 2);
    assert!(
        !serde_json::to_string(&app.events().await)
            .unwrap()
            .contains(&fresh),
        "no secret in events"
    );

    // A plain user may not manage clients.
    let (_, plain) = member(&app, "pat@example.com").await;
    let r = app.get_bearer("/v1/admin/clients", &plain).await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn administrators_list_invite_inspect_log_out_and_erase_users_each_on_the_record() {
    let app = spawn_app_with(events_preset()).await;
    let (root_id, root) = admin(&app).await;
    // The CLI's grant is an event like any other.
    let granted = app.events_of_type("role.granted").await;
    assert!(granted
        .iter()
        .any(|e| e["data"]["user_id"] == root_id.as_str()
            && e["data"]["role"] == "admin"
            && e["data"]["by"].is_null()));
    let (bo, bo_token) = member(&app, "bo@example.com").await;
    let (cy, _) = member(&app, "cy@example.com").await;
    app.post_bearer(
        &format!("/v1/admin/users/{cy}/block"),
        &root,
        Some(json!({})),
    )
    .await;

    // Listing, with filters and cursors.
    let page = |query: String| {
        let app = &app;
        let root = root.clone();
        async move {
            let r = app
                .get_bearer(&format!("/v1/admin/users{query}"), &root)
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{query}");
            r.json::<Value>().await.unwrap()
        }
    };
    let all = page(String::new()).await;
    let emails: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        ["root@example.com", "bo@example.com", "cy@example.com"]
    );
    assert_eq!(all["items"][1]["roles"], json!(["attendee"]));
    assert!(all["items"][1]["last_login_at"].is_string());
    assert_eq!(
        page("?status=blocked".into()).await["items"][0]["id"],
        cy.as_str()
    );
    assert_eq!(
        page("?q=BO".into()).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        page("?role=admin".into()).await["items"][0]["id"],
        root_id.as_str()
    );
    let first = page("?limit=2".into()).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = page(format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(
        (
            second["items"][0]["email"].as_str(),
            second["next_cursor"].is_null()
        ),
        (Some("cy@example.com"), true)
    );
    for (q, field) in [
        ("?status=gone", "status"),
        ("?role=Bad%20Role", "role"),
        ("?created_after=yesterday", "created_after"),
        ("?limit=0", "limit"),
        ("?cursor=nonsense", "cursor"),
    ] {
        let (status, b) =
            problem(app.get_bearer(&format!("/v1/admin/users{q}"), &root).await).await;
        assert_eq!(
            (status, b["errors"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{q}"
        );
    }

    // Detail.
    let d: Value = app
        .get_bearer(&format!("/v1/admin/users/{bo}"), &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (d["status"].as_str(), d["profile"]["email"].as_str()),
        (Some("active"), Some("bo@example.com"))
    );
    assert_eq!(d["sessions"].as_array().unwrap().len(), 1);
    assert!(d["recent_audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["type"] == "user.logged_in"));
    assert_eq!(
        (d["factors"].clone(), d["identities"].clone()),
        (json!([]), json!([]))
    );

    // Force logout: bo's session ends at once.
    let r = app
        .post_bearer(&format!("/v1/admin/users/{bo}/logout"), &root, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/v1/users/me", &bo_token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Invitation: an unverified account with its roles; the mailed link sets the password.
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/users",
        &root,
        Some(json!({"email": "dee@example.com", "username": "dee", "roles": ["organizer"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let dee: Value = r.json().await.unwrap();
    assert_eq!(
        (dee["status"].as_str(), dee["roles"].clone()),
        (Some("unverified"), json!(["organizer"]))
    );
    let again = send(
        &app,
        Method::POST,
        "/v1/admin/users",
        &root,
        Some(json!({"email": "DEE@example.com"})),
    )
    .await;
    assert_eq!(
        refused(again).await,
        (StatusCode::CONFLICT, "email_taken".to_owned())
    );
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/users",
        &root,
        Some(json!({"email": "x@example.com", "roles": ["nope"]})),
    )
    .await;
    assert_eq!(
        refused(r).await,
        (StatusCode::NOT_FOUND, "role_not_found".to_owned())
    );
    for (body, field) in [
        (json!({"email": "x@example.com", "roles": [{}]}), "roles[0]"),
        (json!({"email": "x@example.com", "roles": "admin"}), "roles"),
        (json!({"email": "not an email"}), "email"),
    ] {
        let r = send(
            &app,
            Method::POST,
            "/v1/admin/users",
            &root,
            Some(body.clone()),
        )
        .await;
        let (status, b) = problem(r).await;
        assert_eq!(
            (status, b["errors"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}"
        );
    }
    let mail = app.wait_for_mail("dee@example.com", "invited").await;
    let r = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": mail.token(), "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let pair = app.login_ok("dee", "a brand new passphrase").await;
    assert_eq!(
        forward_auth(&app, pair["access_token"].as_str().unwrap(), "events:write").await,
        StatusCode::OK
    );

    // Erasure: 202, sessions end, the account is gone within a moment.
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/users/{root_id}"),
        &root,
        None,
    )
    .await;
    assert_eq!(
        refused(r).await,
        (StatusCode::CONFLICT, "self_lockout".to_owned())
    );
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/users/{bo}"),
        &root,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let started = Instant::now();
    while app.events_of_type("user.deleted").await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "not erased");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app
        .get_bearer(&format!("/v1/admin/users/{bo}"), &root)
        .await;
    assert_eq!(
        refused(r).await,
        (StatusCode::NOT_FOUND, "user_not_found".to_owned())
    );

    // The audit log names the actor of every admin action, filters and pages.
    let audit = |q: String| {
        let app = &app;
        let root = root.clone();
        async move {
            app.get_bearer(&format!("/v1/admin/audit{q}"), &root)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let by_root = audit(format!("?actor_id={root_id}&limit=100")).await;
    let kinds: Vec<&str> = by_root["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    for k in [
        "user.blocked",
        "session.revoked",
        "user.invited",
        "role.granted",
        "user.deletion_requested",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(by_root["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["actor_id"] == root_id.as_str()));
    let one = audit("?type=user.blocked".into()).await;
    assert_eq!(
        (
            one["items"].as_array().unwrap().len(),
            one["items"][0]["user_id"].as_str()
        ),
        (1, Some(cy.as_str()))
    );
    let first = audit("?limit=1".into()).await;
    let next = audit(format!(
        "?limit=1&cursor={}",
        first["next_cursor"].as_str().unwrap()
    ))
    .await;
    assert_ne!(first["items"][0], next["items"][0]);

    // Each route needs its permission.
    let (_, plain) = member(&app, "pat@example.com").await;
    for path in [
        "/v1/admin/users",
        "/v1/admin/audit",
        &format!("/v1/admin/users/{cy}"),
    ] {
        assert_eq!(
            problem(app.get_bearer(path, &plain).await).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let r = app
        .post_bearer(&format!("/v1/admin/users/{cy}/logout"), &plain, None)
        .await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/admin/users/{cy}"),
        &plain,
        None,
    )
    .await;
    assert_eq!(problem(r).await.0, StatusCode::FORBIDDEN);
}

/// A client's token with every scope it holds, or with `scope` only.
async fn client_token(app: &TestApp, id: &str, secret: &str, scope: Option<&str>) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let r = token_request(app, Some((id, secret)), &form).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn a_service_client_manages_users_by_its_scopes_and_is_named_on_the_record() {
    let app = spawn_app_with(events_preset()).await;
    let (_, root) = admin(&app).await;
    let (ann, ann_token) = member(&app, "ann@example.com").await;
    let (bo, bo_token) = member(&app, "bo@example.com").await;
    let scopes = [
        "users:read",
        "users:block",
        "users:delete",
        "audit:read",
        "roles:write",
    ];
    let (id, secret) = client(&app, "admin-service", &scopes).await;
    let full = client_token(&app, &id, &secret, None).await;
    let narrow = client_token(&app, &id, &secret, Some("users:read")).await;

    // A scope is the permission: reading needs users:read, blocking users:block.
    let r = app.get_bearer("/v1/admin/users", &narrow).await;
    assert_eq!(r.status(), StatusCode::OK);
    let listed = r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 3);
    let r = app
        .post_bearer(
            &format!("/v1/admin/users/{ann}/block"),
            &narrow,
            Some(json!({})),
        )
        .await;
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("this needs the permission users:block")
        )
    );
    let r = app
        .get_bearer(&format!("/v1/admin/users/{ann}"), &full)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = r.json::<Value>().await.unwrap();
    // The whole profile, as an administrator sees it.
    assert_eq!(d["profile"]["email"], "ann@example.com");

    // Blocking: the user's sessions end, the event and the audit line name the client.
    let r = app
        .post_bearer(
            &format!("/v1/admin/users/{ann}/block"),
            &full,
            Some(json!({"reason": "fraud"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/v1/users/me", &ann_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let blocked = app.events_of_type("user.blocked").await;
    assert_eq!(blocked.len(), 1);
    assert_eq!(
        (&blocked[0]["data"]["by"], &blocked[0]["data"]["by_client"]),
        (&Value::Null, &json!(id))
    );

    // Roles: only those whose built-in permissions the client's scopes cover.
    let r = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{bo}/roles/organizer"),
        &full,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let granted = app.events_of_type("role.granted").await;
    assert!(granted.iter().any(|e| e["data"]["user_id"] == bo.as_str()
        && e["data"]["role"] == "organizer"
        && e["data"]["by_client"] == id.as_str()));
    let r = send(
        &app,
        Method::PUT,
        &format!("/v1/admin/users/{bo}/roles/admin"),
        &full,
        None,
    )
    .await;
    let (status, body) = problem(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["detail"].as_str().unwrap().contains("admin has"),
        "{body}"
    );
    assert!(permissions(&app, &bo_token)
        .await
        .contains(&"events:write".to_owned()));
    assert!(!permissions(&app, &bo_token)
        .await
        .contains(&"users:read".to_owned()));

    // Logging out and erasing.
    let r = app
        .post_bearer(&format!("/v1/admin/users/{bo}/logout"), &full, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/v1/users/me", &bo_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .delete_bearer(&format!("/v1/admin/users/{bo}"), &full)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // The audit log: every action of the client, found by the client's id, no user as actor.
    let r = app
        .get_bearer(&format!("/v1/admin/audit?actor_client_id={id}"), &full)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let lines = r.json::<Value>().await.unwrap()["items"].clone();
    let kinds: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    for kind in [
        "user.blocked",
        "role.granted",
        "session.revoked",
        "user.deletion_requested",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(lines
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["actor_client_id"] == id.as_str() && l["actor_id"].is_null()));
    let (status, body) = problem(
        app.get_bearer("/v1/admin/audit?actor_client_id=not%20a%20client", &root)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("actor_client_id"))
    );

    // What stays with users: clients, roles' definitions and invitations.
    assert_eq!(
        app.get_bearer("/v1/admin/clients", &full).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .post_bearer(
            "/v1/admin/users",
            &full,
            Some(json!({"email": "new@example.com"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
