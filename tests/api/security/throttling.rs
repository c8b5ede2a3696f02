//! Failed-login throttling, per account and per client IP, through the public API.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::helpers::{problem, spawn_app, spawn_app_with, Options, PASSWORD};

const WRONG: &str = "not the right password";

async fn throttled(r: reqwest::Response) -> (u64, Value) {
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = problem(r).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "too_many_requests");
    (retry, body)
}

#[actix_web::test]
async fn asvs_v6_3_1_five_failures_throttle_an_account_whatever_the_password_and_the_wait_grows() {
    let app = spawn_app().await;
    app.verified_user("tom@example.com", Some("tom")).await;
    for _ in 0..5 {
        assert_eq!(
            app.login("tom@example.com", WRONG).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Throttled: the right password gets the same answer as a wrong one, by email or username.
    let (r1, b1) = throttled(app.login("tom@example.com", PASSWORD).await).await;
    let (r2, b2) = throttled(app.login("TOM", WRONG).await).await;
    assert_eq!(b1, b2);
    assert_eq!((r1, r2), (30, 30));

    // After the wait one more try is allowed; failing it doubles the wait.
    app.advance(31);
    assert_eq!(
        app.login("tom@example.com", WRONG).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (r3, _) = throttled(app.login("tom@example.com", PASSWORD).await).await;
    assert_eq!(r3, 60);

    // A success after the wait clears the count.
    app.advance(61);
    app.login_ok("tom@example.com", PASSWORD).await;
    assert_eq!(
        app.login("tom@example.com", WRONG).await.status(),
        StatusCode::UNAUTHORIZED
    );

    app.wait_outbox_drained().await;
    assert_eq!(app.events_of_type("user.login_failed").await.len(), 7);
    let throttled_events = app.events_of_type("user.throttled").await;
    assert!(throttled_events.len() >= 2, "{throttled_events:?}");
    assert!(throttled_events
        .iter()
        .all(|e| e["data"]["retry_after_secs"].as_u64().is_some()));
}

#[actix_web::test]
async fn asvs_v6_3_8_an_unknown_account_is_throttled_exactly_like_a_known_one() {
    let app = spawn_app().await;
    app.verified_user("known@example.com", None).await;
    for login in ["known@example.com", "ghost@example.com"] {
        for _ in 0..5 {
            assert_eq!(
                app.login(login, WRONG).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
    }
    let known = throttled(app.login("known@example.com", WRONG).await).await;
    let ghost = throttled(app.login("ghost@example.com", WRONG).await).await;
    assert_eq!(
        known, ghost,
        "throttling does not reveal which accounts exist"
    );
    // Only the known account's failures are events.
    app.wait_outbox_drained().await;
    assert_eq!(app.events_of_type("user.login_failed").await.len(), 5);
    // Another account is not affected.
    app.verified_user("other@example.com", None).await;
    app.login_ok("other@example.com", PASSWORD).await;
}

#[actix_web::test]
async fn asvs_v6_3_1_a_password_reset_lifts_the_throttle() {
    let app = spawn_app().await;
    app.verified_user("uma@example.com", None).await;
    for _ in 0..6 {
        app.login("uma@example.com", WRONG).await;
    }
    throttled(app.login("uma@example.com", PASSWORD).await).await;
    app.post(
        "/v1/auth/password/forgot",
        serde_json::json!({"email": "uma@example.com"}),
    )
    .await;
    let token = app.wait_for_mail("uma@example.com", "Reset").await.token();
    let r = app
        .post(
            "/v1/auth/password/reset",
            serde_json::json!({"token": token, "password": "a fresh start passphrase"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.login_ok("uma@example.com", "a fresh start passphrase")
        .await;
}

#[actix_web::test]
async fn asvs_v6_3_1_failures_from_one_client_ip_add_up_across_accounts() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.throttle.ip_max_failures = 3)),
        ..Options::default()
    })
    .await;
    app.verified_user("vic@example.com", None).await;
    for login in ["a@example.com", "b@example.com", "c@example.com"] {
        assert_eq!(
            app.login(login, WRONG).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The IP is over its limit: even a right password on an untouched account waits.
    let (retry, _) = throttled(app.login("vic@example.com", PASSWORD).await).await;
    assert_eq!(retry, 30);
    app.advance(31);
    app.login_ok("vic@example.com", PASSWORD).await;
}

async fn login_from(
    app: &crate::helpers::TestApp,
    forwarded_for: &str,
    login: &str,
    password: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn asvs_v15_3_4_behind_a_trusted_proxy_the_forwarded_client_is_counted_and_recorded() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.http.trusted_proxies = "127.0.0.1".into();
            s.throttle.ip_max_failures = 2;
        })),
        ..Options::default()
    })
    .await;
    app.verified_user("wes@example.com", None).await;
    for login in ["x1@example.com", "x2@example.com"] {
        assert_eq!(
            login_from(&app, "203.0.113.1", login, WRONG).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // That client is throttled; another client behind the same proxy is not.
    throttled(login_from(&app, "203.0.113.1", "wes@example.com", PASSWORD).await).await;
    let r = login_from(&app, "203.0.113.2", "wes@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let sessions: Vec<Value> = app
        .get_bearer("/v1/sessions", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions[0]["ip"], "203.0.113.2");
}

#[actix_web::test]
async fn asvs_v15_3_4_without_trusted_proxies_x_forwarded_for_is_ignored() {
    let app = spawn_app().await;
    app.verified_user("xena@example.com", None).await;
    let r = login_from(&app, "203.0.113.9", "xena@example.com", PASSWORD).await;
    let pair: Value = r.json().await.unwrap();
    let sessions: Vec<Value> = app
        .get_bearer("/v1/sessions", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
}

#[actix_web::test]
async fn asvs_v6_3_1_guesses_spread_over_two_nodes_and_many_ips_count_together() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| s.http.trusted_proxies = "127.0.0.1".into())),
        ..Options::default()
    })
    .await;
    let peer = app.spawn_peer().await;
    app.verified_user("yan@example.com", None).await;
    let on_peer = |ip: &str, password: &str| {
        app.client
            .post(format!("http://{}/v1/auth/login", peer.public_addr))
            .header("x-forwarded-for", ip.to_owned())
            .json(&serde_json::json!({"login": "yan@example.com", "password": password}))
            .send()
    };
    // Five guesses, alternating nodes, each from another client address.
    for i in 0..5 {
        let ip = format!("198.51.100.{i}");
        let r = if i % 2 == 0 {
            login_from(&app, &ip, "yan@example.com", WRONG).await
        } else {
            on_peer(&ip, WRONG).await.unwrap()
        };
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // The account is throttled on both nodes, for yet another address, right password or not.
    throttled(login_from(&app, "198.51.100.50", "yan@example.com", PASSWORD).await).await;
    throttled(on_peer("198.51.100.51", PASSWORD).await.unwrap()).await;
    peer.stop().await;
}

/// Rows in `table`.
async fn rows(app: &crate::helpers::TestApp, table: &str) -> i64 {
    let r = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    r.try_get::<i64>("", "n").unwrap()
}

#[actix_web::test]
async fn sign_ins_begun_without_an_account_share_one_budget_per_client_ip() {
    use crate::federation::APP;
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.http.trusted_proxies = "127.0.0.1".into();
            s.throttle.ceremonies_per_ip_per_hour = 3;
            s.oauth.redirect_allowlist = APP.into();
            // A plain OAuth 2 kind: its start needs no answer from the provider.
            s.oauth.providers.insert(
                "vk".into(),
                keyward_config::ProviderSettings {
                    kind: "vk".into(),
                    client_id: Some("51234567".into()),
                    auth_url: Some("https://id.vk.example/authorize".into()),
                    token_url: Some("https://id.vk.example/oauth2/auth".into()),
                    userinfo_url: Some("https://id.vk.example/oauth2/user_info".into()),
                    ..Default::default()
                },
            );
        })),
        ..Options::default()
    })
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let passkey = |ip: &'static str| {
        app.client
            .post(app.url("/v1/auth/passkey/options"))
            .header("x-forwarded-for", ip)
            .send()
    };
    let oauth = |ip: &'static str| {
        no_redirects
            .get(app.url(&format!("/v1/auth/oauth/vk/start?redirect_uri={APP}")))
            .header("x-forwarded-for", ip)
            .send()
    };
    let one = "203.0.113.7";
    assert_eq!(passkey(one).await.unwrap().status(), StatusCode::OK);
    assert_eq!(oauth(one).await.unwrap().status(), StatusCode::FOUND);
    assert_eq!(passkey(one).await.unwrap().status(), StatusCode::OK);
    // The fourth of the hour, either kind, is refused and stores nothing.
    let (wait, _) = throttled(oauth(one).await.unwrap()).await;
    assert!((3000..=3600).contains(&wait), "{wait}");
    throttled(passkey(one).await.unwrap()).await;
    assert_eq!(rows(&app, "webauthn_ceremonies").await, 2);
    assert_eq!(rows(&app, "oauth_flows").await, 1);
    // Another client is not held back by it.
    assert_eq!(
        passkey("203.0.113.8").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        oauth("203.0.113.8").await.unwrap().status(),
        StatusCode::FOUND
    );
    // Once the first request is an hour old, one more may begin.
    app.advance(3601);
    assert_eq!(oauth(one).await.unwrap().status(), StatusCode::FOUND);
}
