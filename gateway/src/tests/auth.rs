//! The bearer extractor and forward-auth: who gets in, and what a refused caller is told.

use actix_web::test::TestRequest;

use super::*;

fn me() -> TestRequest {
    TestRequest::get().uri("/v1/users/me")
}

#[actix_web::test]
async fn a_missing_bearer_is_a_401_with_a_bearer_challenge() {
    let fake = Fake::default();
    let r = call(&fake, me()).await;
    r.assert_problem(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(fake.seen().is_empty());
}

#[actix_web::test]
async fn another_authorization_scheme_is_a_401() {
    let req = me().insert_header(("Authorization", "Basic YWxpY2U6cHc="));
    let r = call(&Fake::default(), req).await;
    r.assert_problem(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
}

#[actix_web::test]
async fn a_refused_token_is_a_401_with_an_invalid_token_challenge() {
    let r = call(&Fake::default(), bearer(me(), "stale")).await;
    r.assert_problem(401, "invalid_token");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[actix_web::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let req = me().insert_header(("Authorization", format!("bEaReR {GOOD_TOKEN}")));
    let r = call(&Fake::default(), req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["email"], "alice@example.com");
}

#[actix_web::test]
async fn a_token_with_a_space_or_a_control_byte_is_refused_without_asking() {
    let fake = Fake::default();
    for value in [
        format!("Bearer {GOOD_TOKEN} x"),
        format!("Bearer {GOOD_TOKEN}\tx"),
        format!("Bearer\t{GOOD_TOKEN}"),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
    ] {
        let r = call(&fake, me().insert_header(("Authorization", value.as_str()))).await;
        r.assert_problem(401, "unauthenticated");
    }
    assert!(fake.seen().is_empty());
    // Space around the credentials is not part of the token.
    let r = call(
        &fake,
        me().insert_header(("Authorization", format!("  Bearer   {GOOD_TOKEN} "))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[actix_web::test]
async fn a_token_over_8_kib_is_refused_without_asking() {
    let fake = Fake::default();
    let r = call(&fake, bearer(me(), &"t".repeat(8 * 1024 + 1))).await;
    r.assert_problem(401, "unauthenticated");
    assert!(fake.seen().is_empty());
}

#[actix_web::test]
async fn forward_auth_answers_200_with_the_identity_headers() {
    let r = call(
        &Fake::default(),
        bearer(TestRequest::get().uri("/v1/auth/verify"), GOOD_TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("x-keyward-user-id"),
        Some(USER.to_string().as_str())
    );
    assert_eq!(
        r.header("x-keyward-session-id"),
        Some(SESSION.to_string().as_str())
    );
    assert_eq!(r.header("x-keyward-roles"), Some("user,admin"));
}

#[actix_web::test]
async fn forward_auth_without_a_bearer_is_a_401_problem() {
    let r = call(&Fake::default(), TestRequest::get().uri("/v1/auth/verify")).await;
    r.assert_problem(401, "unauthenticated");
    assert!(r.header("x-keyward-user-id").is_none());
}

#[actix_web::test]
async fn a_silent_sessions_actor_makes_authentication_a_503_not_a_401() {
    let fake = Fake {
        delay: Some(Duration::from_millis(500)),
        ..Fake::default()
    };
    let req = bearer(TestRequest::get().uri("/v1/sessions"), GOOD_TOKEN);
    // Authenticate answers at once; the ListSessions send then times out.
    let r = call_with(&fake, Duration::from_millis(20), req).await;
    r.assert_problem(503, "service_unavailable");
}

fn forward_auth(query: &str) -> TestRequest {
    TestRequest::get().uri(&format!("/v1/auth/verify{query}"))
}

#[actix_web::test]
async fn forward_auth_with_a_permission_is_one_message_to_the_access_context() {
    let fake = Fake::default();
    let r = call(
        &fake,
        bearer(forward_auth("?permission=events:write"), GOOD_TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("x-keyward-user-id"),
        Some(USER.to_string().as_str())
    );
    assert_eq!(r.header("x-keyward-roles"), Some("user,admin"));
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("Authorize"), "{seen:?}");
    assert!(seen[0].contains("events:write"), "{seen:?}");
    assert!(
        !seen[0].contains(GOOD_TOKEN),
        "the token is not in Debug: {seen:?}"
    );
}

#[actix_web::test]
async fn forward_auth_with_a_permission_and_a_refused_token_is_a_401_challenge() {
    let r = call(
        &Fake::default(),
        bearer(forward_auth("?permission=events:write"), "stale"),
    )
    .await;
    r.assert_problem(401, "invalid_token");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert!(r.header("x-keyward-user-id").is_none());
}

#[actix_web::test]
async fn forward_auth_names_a_malformed_permission_only_to_a_valid_token() {
    // A caller learns that its token is bad before what is wrong with its query.
    for query in ["?permission=events", "?permission=a:b&permission=c:d"] {
        let r = call(&Fake::default(), bearer(forward_auth(query), "stale")).await;
        r.assert_problem(401, "invalid_token");
    }
    let r = call(
        &Fake::default(),
        bearer(forward_auth("?permission=events"), GOOD_TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains("permission"),
        "{:?}",
        r.body
    );
    let r = call(
        &Fake::default(),
        bearer(forward_auth("?permission=a:b&permission=c:d"), GOOD_TOKEN),
    )
    .await;
    r.assert_problem(400, "validation_failed");
    assert!(
        String::from_utf8_lossy(&r.body).contains(r#""field":"permission""#),
        "{:?}",
        r.body
    );
}

#[actix_web::test]
async fn me_is_one_message_that_carries_the_token() {
    let fake = Fake::default();
    let r = call(&fake, bearer(me(), GOOD_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["id"], USER.to_string());
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("GetMe"), "{seen:?}");
    assert!(
        !seen[0].contains(GOOD_TOKEN),
        "the token is not in Debug: {seen:?}"
    );
}

#[actix_web::test]
async fn an_actor_on_the_workers_thread_answers_before_the_asks_timer_is_armed() {
    // With a zero timeout, only an answer that came within the worker's first turn can get
    // through: the ask arms no timer before then.
    let fake = Fake::default();
    let r = call_with(&fake, Duration::ZERO, bearer(forward_auth(""), GOOD_TOKEN)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
}
