//! Bad bodies: every one is a precise 4xx naming what is wrong, never a 500.

use actix_web::test::TestRequest;
use serde_json::json;

use super::*;

fn raw(path: &str, content_type: &str, body: impl Into<actix_web::web::Bytes>) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("content-type", content_type))
        .set_payload(body)
}

#[actix_web::test]
async fn a_missing_field_is_a_400_naming_it() {
    let fake = Fake::default();
    let r = call(
        &fake,
        post_json("/v1/auth/register", json!({"email": "alice@example.com"})),
    )
    .await;
    r.assert_problem(400, "validation_failed");
    assert_eq!(
        r.field_errors(),
        [("password".to_owned(), "required".to_owned())]
    );
    assert_eq!(r.json()["errors"][0]["message"], "password is required");
    assert!(fake.seen().is_empty(), "nothing is sent for a bad body");
}

#[actix_web::test]
async fn a_null_field_counts_as_missing() {
    let r = call(
        &Fake::default(),
        post_json("/v1/auth/login", json!({"login": null, "password": "x"})),
    )
    .await;
    r.assert_problem(400, "validation_failed");
    assert_eq!(
        r.field_errors(),
        [("login".to_owned(), "required".to_owned())]
    );
}

#[actix_web::test]
async fn several_bad_fields_are_all_listed_in_one_answer() {
    let body = json!({"email": "not-an-email", "username": "_x/"});
    let r = call(&Fake::default(), post_json("/v1/auth/register", body)).await;
    r.assert_problem(400, "validation_failed");
    let fields: Vec<_> = r.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["email", "password", "username"]);
    assert_eq!(r.json()["detail"], "some fields are invalid; see errors");
}

#[actix_web::test]
async fn a_field_of_the_wrong_type_is_named() {
    let body = json!({"email": "alice@example.com", "password": 12345678});
    let r = call(&Fake::default(), post_json("/v1/auth/register", body)).await;
    r.assert_problem(400, "validation_failed");
    assert_eq!(
        r.field_errors(),
        [("password".to_owned(), "invalid_type".to_owned())]
    );
    assert_eq!(
        r.json()["errors"][0]["message"],
        "password must be a string"
    );
}

#[actix_web::test]
async fn an_over_long_token_is_refused_before_it_is_sent() {
    let fake = Fake::default();
    let body = json!({"refresh_token": "r".repeat(513)});
    let r = call(&fake, post_json("/v1/auth/refresh", body)).await;
    r.assert_problem(400, "validation_failed");
    assert_eq!(
        r.field_errors(),
        [(
            "refresh_token".to_owned(),
            "invalid_token_format".to_owned()
        )]
    );
    assert!(fake.seen().is_empty());
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_a_400_invalid_json() {
    let r = call(
        &Fake::default(),
        raw("/v1/auth/login", "application/json", "{\"login\": "),
    )
    .await;
    r.assert_problem(400, "invalid_json");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("the body is not valid JSON: "),
        "{detail}"
    );
    assert!(detail.contains("line 1"), "{detail}");
}

#[actix_web::test]
async fn an_empty_body_is_a_400_invalid_json() {
    let r = call(
        &Fake::default(),
        raw("/v1/auth/login", "application/json", ""),
    )
    .await;
    r.assert_problem(400, "invalid_json");
}

#[actix_web::test]
async fn json_that_is_not_an_object_is_a_400_invalid_json() {
    let r = call(
        &Fake::default(),
        post_json("/v1/auth/login", json!(["alice", "pw"])),
    )
    .await;
    r.assert_problem(400, "invalid_json");
    assert_eq!(r.json()["detail"], "expected a JSON object");
}

#[actix_web::test]
async fn a_body_of_another_content_type_is_a_415() {
    let r = call(&Fake::default(), raw("/v1/auth/login", "text/plain", "{}")).await;
    r.assert_problem(415, "unsupported_media_type");
}

#[actix_web::test]
async fn a_body_without_a_content_type_is_a_415() {
    let req = TestRequest::post().uri("/v1/auth/login").set_payload("{}");
    let r = call(&Fake::default(), req).await;
    r.assert_problem(415, "unsupported_media_type");
}

#[actix_web::test]
async fn a_body_over_the_limit_is_a_413() {
    let big = json!({"login": "alice", "password": "p".repeat(LIMIT)});
    let r = call(&Fake::default(), post_json("/v1/auth/login", big)).await;
    r.assert_problem(413, "payload_too_large");
}

#[actix_web::test]
async fn a_non_uuid_session_id_is_a_400_naming_id() {
    let req = bearer(
        TestRequest::delete().uri("/v1/sessions/not-a-uuid"),
        GOOD_TOKEN,
    );
    let r = call(&Fake::default(), req).await;
    r.assert_problem(400, "validation_failed");
    assert_eq!(
        r.field_errors(),
        [("id".to_owned(), "invalid_id".to_owned())]
    );
}

#[actix_web::test]
async fn a_check_body_nested_past_the_parsers_limit_is_a_400_invalid_json() {
    // Well-formed (the raw body's syntax check passes), but deeper than serde_json reads.
    let body = format!(r#"{{"checks":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    let r = call(
        &Fake::default(),
        raw("/v1/access/check", "application/json", body)
            .insert_header(("authorization", format!("Bearer {GOOD_TOKEN}"))),
    )
    .await;
    r.assert_problem(400, "invalid_json");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("the body is not valid JSON: ") && detail.contains("recursion"),
        "{detail}"
    );
}

#[actix_web::test]
async fn a_query_string_that_cannot_be_read_is_a_problem_naming_the_parameter() {
    let fake = Fake::default();
    let r = call(
        &fake,
        TestRequest::get().uri("/v1/users/search?q=alice&q=bob"),
    )
    .await;
    r.assert_problem(400, "validation_failed");
    assert_eq!(r.json()["errors"][0]["field"], "q", "{}", r.text());
    assert!(
        fake.seen().is_empty(),
        "nothing is asked: {:?}",
        fake.seen()
    );
}
