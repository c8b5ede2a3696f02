//! Happy paths and the cross-cutting behaviour of every response: request ids, security headers,
//! 404/405 problems, the verification page.

use actix_web::test::TestRequest;
use serde_json::json;

use super::*;

#[actix_web::test]
async fn register_answers_202_and_passes_locale_and_request_meta() {
    let fake = Fake::default();
    let req = post_json(
        "/v1/auth/register",
        json!({"email": "alice@example.com", "password": "pw-long-enough"}),
    )
    .insert_header(("Accept-Language", "ru-RU,ru;q=0.9,en;q=0.8"))
    .insert_header(("User-Agent", "tests/1.0"))
    .insert_header(("X-Request-Id", "req-42"))
    .peer_addr("203.0.113.7:5555".parse().unwrap());
    let r = call(&fake, req).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json(), json!({"status": "verification_sent"}));
    let seen = fake.seen().join("\n");
    assert!(seen.contains("locale: Ru"), "{seen}");
    assert!(seen.contains("request_id: \"req-42\""), "{seen}");
    assert!(seen.contains("client_ip: Some(203.0.113.7)"), "{seen}");
    assert!(seen.contains("user_agent: Some(\"tests/1.0\")"), "{seen}");
    assert!(!seen.contains("pw-long-enough"), "the password never shows");
}

#[actix_web::test]
async fn login_answers_a_token_pair_that_caches_must_not_store() {
    let r = call(
        &Fake::default(),
        post_json(
            "/v1/auth/login",
            json!({"login": "alice", "password": "pw"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["session_id"], SESSION.to_string());
}

#[actix_web::test]
async fn refresh_answers_a_token_pair() {
    let r = call(
        &Fake::default(),
        post_json("/v1/auth/refresh", json!({"refresh_token": "rt"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json()["refresh_token"], "rt");
}

#[actix_web::test]
async fn verifying_by_post_answers_the_verified_account() {
    let r = call(
        &Fake::default(),
        post_json("/v1/auth/verify-email", json!({"token": "t"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"user_id": USER.to_string(), "email": "alice@example.com", "email_verified": true})
    );
}

#[actix_web::test]
async fn the_accepted_only_routes_answer_202() {
    for (path, status) in [
        ("/v1/auth/verify-email/resend", "verification_sent"),
        ("/v1/auth/password/forgot", "reset_sent"),
    ] {
        let r = call(
            &Fake::default(),
            post_json(path, json!({"email": "alice@example.com"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{path}");
        assert_eq!(r.json(), json!({"status": status}));
    }
}

#[actix_web::test]
async fn commands_without_a_reply_answer_204() {
    let reqs = [
        post_json(
            "/v1/auth/password/reset",
            json!({"token": "t", "password": "new-pass"}),
        ),
        bearer(
            post_json(
                "/v1/auth/password/change",
                json!({"current_password": "a", "new_password": "b"}),
            ),
            GOOD_TOKEN,
        ),
        bearer(TestRequest::post().uri("/v1/auth/logout"), GOOD_TOKEN),
        bearer(
            TestRequest::delete().uri(&format!("/v1/sessions/{SESSION}")),
            GOOD_TOKEN,
        ),
        bearer(TestRequest::delete().uri("/v1/sessions"), GOOD_TOKEN),
    ];
    for req in reqs {
        let r = call(&Fake::default(), req).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert!(r.body.is_empty());
    }
}

#[actix_web::test]
async fn revoking_a_session_sends_its_id_and_the_caller() {
    let fake = Fake::default();
    let req = bearer(
        TestRequest::delete().uri(&format!("/v1/sessions/{SESSION}")),
        GOOD_TOKEN,
    );
    call(&fake, req).await;
    let seen = fake.seen();
    assert!(seen[0].starts_with("Authenticate"));
    assert!(seen[1].starts_with("RevokeSession"), "{seen:?}");
    assert!(
        seen[1].contains(&format!("session_id: SessionId({SESSION})")),
        "{seen:?}"
    );
}

#[actix_web::test]
async fn sessions_are_listed() {
    let r = call(
        &Fake::default(),
        bearer(TestRequest::get().uri("/v1/sessions"), GOOD_TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body[0]["id"], SESSION.to_string());
    assert_eq!(body[0]["current"], true);
}

#[actix_web::test]
async fn jwks_is_public_and_cacheable() {
    let r = call(
        &Fake::default(),
        TestRequest::get().uri("/.well-known/jwks.json"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.json()["keys"][0]["kid"], "k1");
}

#[actix_web::test]
async fn a_valid_incoming_request_id_is_echoed() {
    let req = TestRequest::get()
        .uri("/nope")
        .insert_header(("X-Request-Id", "abc-123"));
    let r = call(&Fake::default(), req).await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
}

#[actix_web::test]
async fn a_request_id_is_generated_when_absent_or_invalid() {
    for req in [
        TestRequest::get().uri("/nope"),
        TestRequest::get()
            .uri("/nope")
            .insert_header(("X-Request-Id", "has space")),
        TestRequest::get()
            .uri("/nope")
            .insert_header(("X-Request-Id", "x".repeat(129))),
    ] {
        let r = call(&Fake::default(), req).await;
        let id = r.header("x-request-id").unwrap();
        assert!(Uuid::parse_str(id).is_ok(), "{id}");
    }
}

#[actix_web::test]
async fn every_response_carries_the_security_headers() {
    for req in [
        TestRequest::get().uri("/nope"),
        post_json(
            "/v1/auth/login",
            json!({"login": "alice", "password": "pw"}),
        ),
    ] {
        let r = call(&Fake::default(), req).await;
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("frame-ancestors 'none'")
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    }
}

#[actix_web::test]
async fn an_unknown_route_is_a_404_problem() {
    let r = call(&Fake::default(), TestRequest::get().uri("/v1/nothing/here")).await;
    r.assert_problem(404, "not_found");
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_path_is_a_405_problem_with_allow() {
    let r = call(&Fake::default(), TestRequest::get().uri("/v1/auth/login")).await;
    r.assert_problem(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[actix_web::test]
async fn the_verification_link_answers_an_html_page() {
    let fake = Fake::default();
    let r = call(
        &fake,
        TestRequest::get().uri("/v1/auth/verify-email?token=abc"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("Email verified"));
    assert!(fake.seen()[0].starts_with("VerifyEmail"));
}

#[actix_web::test]
async fn a_verification_link_without_a_token_is_a_400_page() {
    let fake = Fake::default();
    let r = call(&fake, TestRequest::get().uri("/v1/auth/verify-email")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(fake.seen().is_empty());
}

#[actix_web::test]
async fn an_expired_verification_link_is_a_400_page_that_echoes_nothing() {
    let fake = Fake::failing(CommandError::invalid_token("expired"));
    let r = call(
        &fake,
        TestRequest::get().uri("/v1/auth/verify-email?token=%3Cscript%3E"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("invalid or has expired"));
    assert!(!r.text().contains("<script>"));
}
