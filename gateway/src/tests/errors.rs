//! Every `CommandError` kind, and a silent actor, become the documented status and code.

use std::time::Duration;

use keyward_messages::FieldError;
use serde_json::json;

use super::*;

async fn login_failing_with(e: CommandError) -> Reply {
    let body = json!({"login": "alice", "password": "correct horse"});
    call(&Fake::failing(e), post_json("/v1/auth/login", body)).await
}

#[actix_web::test]
async fn each_command_error_kind_answers_its_status_and_code() {
    let cases = [
        (
            CommandError::field("login", "invalid_username", "nope"),
            400,
            "validation_failed",
        ),
        (
            CommandError::invalid_token("bad link"),
            400,
            "invalid_token",
        ),
        (
            CommandError::unauthenticated(codes::INVALID_CREDENTIALS, "wrong login or password"),
            401,
            "invalid_credentials",
        ),
        (
            CommandError::Forbidden {
                code: codes::EMAIL_NOT_VERIFIED,
                detail: "verify first".into(),
            },
            403,
            "email_not_verified",
        ),
        (
            CommandError::NotFound {
                code: codes::SESSION_NOT_FOUND,
                detail: "no such session".into(),
            },
            404,
            "session_not_found",
        ),
        (
            CommandError::Conflict {
                code: codes::USERNAME_TAKEN,
                detail: "taken".into(),
                field: None,
            },
            409,
            "username_taken",
        ),
        (
            CommandError::RateLimited {
                retry_after_secs: 30,
            },
            429,
            "too_many_requests",
        ),
        (CommandError::overloaded(5), 503, "overloaded"),
        (CommandError::Internal, 500, "internal_error"),
    ];
    for (error, status, code) in cases {
        login_failing_with(error).await.assert_problem(status, code);
    }
}

#[actix_web::test]
async fn a_validation_error_from_an_actor_keeps_its_fields() {
    let e = CommandError::invalid(vec![FieldError::new(
        "password",
        "too_common",
        "pick another",
    )]);
    let r = login_failing_with(e).await;
    assert_eq!(
        r.field_errors(),
        [("password".to_owned(), "too_common".to_owned())]
    );
}

#[actix_web::test]
async fn a_conflict_names_its_field() {
    let e = CommandError::Conflict {
        code: codes::USERNAME_TAKEN,
        detail: "this username is taken".into(),
        field: Some("username".into()),
    };
    let r = login_failing_with(e).await;
    r.assert_problem(409, "username_taken");
    assert_eq!(
        r.field_errors(),
        [("username".to_owned(), "username_taken".to_owned())]
    );
}

#[actix_web::test]
async fn rate_limiting_says_when_to_retry() {
    let r = login_failing_with(CommandError::RateLimited {
        retry_after_secs: 30,
    })
    .await;
    r.assert_problem(429, "too_many_requests");
    assert_eq!(r.header("retry-after"), Some("30"));
}

#[actix_web::test]
async fn an_overloaded_backend_says_when_to_retry() {
    let r = login_failing_with(CommandError::overloaded(5)).await;
    r.assert_problem(503, "overloaded");
    assert_eq!(r.header("retry-after"), Some("5"));
}

#[actix_web::test]
async fn an_internal_error_shows_only_a_generic_detail() {
    let r = login_failing_with(CommandError::Internal).await;
    r.assert_problem(500, "internal_error");
    assert_eq!(
        r.json()["detail"],
        "an internal error occurred; it has been logged"
    );
}

/// A login whose actor answers after `delay`, asked with `timeout`.
async fn login_answered_after(delay: Duration, timeout: Duration) -> Reply {
    let fake = Fake {
        delay: Some(delay),
        ..Fake::default()
    };
    let body = json!({"login": "alice", "password": "correct horse"});
    call_with(&fake, timeout, post_json("/v1/auth/login", body)).await
}

#[actix_web::test]
async fn an_actor_that_does_not_answer_in_time_is_a_503_with_retry_after() {
    let r = login_answered_after(Duration::from_millis(500), Duration::from_millis(20)).await;
    r.assert_problem(503, "service_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[actix_web::test]
async fn an_actor_that_answers_after_a_wait_within_the_timeout_is_answered() {
    // The answer comes after the worker's first turn, so the ask's timer is armed and must
    // not fire early or lose the answer.
    let r = login_answered_after(Duration::from_millis(30), Duration::from_secs(5)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["access_token"], "at");
}
