//! Accounts rows of the API table: registration, verification, login, passwords.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, PASSWORD};

#[actix_web::test]
async fn a_taken_username_is_a_409_naming_the_field() {
    let app = spawn_app().await;
    app.register("c1@example.com", PASSWORD, Some("carol"))
        .await;
    let (status, body) = problem(
        app.register("c2@example.com", PASSWORD, Some("CAROL"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "username_taken");
    assert_eq!(body["errors"][0]["field"], "username");
}

#[actix_web::test]
async fn bad_registration_input_names_each_field_and_the_fix() {
    let app = spawn_app().await;
    let (status, body) = problem(
        app.post(
            "/v1/auth/register",
            json!({"email": "nope", "username": "a/b"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "validation_failed");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"password") && fields.contains(&"username"),
        "{body}"
    );

    for (pw, code) in [
        ("short1", "too_short"),
        ("password1", "too_common"),
        ("dave@example.com", "derived_from_account"),
    ] {
        let (status, body) = problem(app.register("dave@example.com", pw, None).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pw}");
        assert_eq!(body["errors"][0]["field"], "password");
        assert_eq!(body["errors"][0]["code"], code, "{pw}");
        assert!(!body["errors"][0]["message"].as_str().unwrap().is_empty());
    }
    assert!(app.events().await.is_empty(), "nothing was written");
}

#[actix_web::test]
async fn an_invalid_verification_token_is_a_400_and_a_used_one_too() {
    let app = spawn_app().await;
    let (status, body) = problem(
        app.post(
            "/v1/auth/verify-email",
            json!({"token": "not-a-real-token"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token"))
    );

    app.register("eve@example.com", PASSWORD, None).await;
    let token = app
        .wait_for_mail("eve@example.com", "Confirm")
        .await
        .token();
    let r = app
        .post("/v1/auth/verify-email", json!({"token": token}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["email_verified"], true);
    assert_eq!(body["email"], "eve@example.com");
    let (status, _) = problem(
        app.post("/v1/auth/verify-email", json!({"token": token}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let r = app
        .client
        .get(app.url("/v1/auth/verify-email?token=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[actix_web::test]
async fn an_expired_verification_link_is_refused_and_resend_issues_a_new_one() {
    let app = spawn_app().await;
    app.register("frank@example.com", PASSWORD, None).await;
    let old = app
        .wait_for_mail("frank@example.com", "Confirm")
        .await
        .token();
    app.advance(24 * 3600 + 1);
    let (status, _) = problem(
        app.post("/v1/auth/verify-email", json!({"token": old}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for email in ["frank@example.com", "nobody@example.com"] {
        let r = app
            .post("/v1/auth/verify-email/resend", json!({"email": email}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "same reply for {email}");
    }
    let fresh = app
        .wait_for_mail_n("frank@example.com", "Confirm", 2)
        .await
        .token();
    assert_ne!(fresh, old);
    let r = app
        .post("/v1/auth/verify-email", json!({"token": fresh}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(app.mails().await.iter().all(|m| !m.to.contains("nobody")));
}

#[actix_web::test]
async fn mail_requests_are_budgeted_per_address_and_per_ip_and_say_nothing_about_accounts() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        settings: Some(Box::new(|s| {
            s.throttle.mail_per_address_per_hour = 5;
            s.throttle.mail_per_ip_per_hour = 30;
        })),
        ..Default::default()
    })
    .await;
    crate::helpers::member(&app, "kim@example.com").await;
    // Her own registration an hour ago no longer counts.
    app.advance(3601);
    // Register, resend and forgot share one budget per address, known or not: the same
    // answers either way.
    for email in ["kim@example.com", "nobody@example.com"] {
        let requests = [
            ("/v1/auth/password/forgot", json!({"email": email})),
            ("/v1/auth/verify-email/resend", json!({"email": email})),
            (
                "/v1/auth/register",
                json!({"email": email, "password": PASSWORD}),
            ),
            ("/v1/auth/password/forgot", json!({"email": email})),
        ];
        for (path, body) in requests {
            let r = app.post(path, body).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{email} {path}");
        }
        let r = app
            .post("/v1/auth/password/forgot", json!({"email": email}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{email}: the fifth");
        let r = app
            .post("/v1/auth/password/forgot", json!({"email": email}))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{email}: the sixth"
        );
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&wait), "{wait}");
    }
    // Kim's inbox got the verification mail of her account and at most five more.
    let resets = app
        .wait_for_mail_n("kim@example.com", "Reset your password", 2)
        .await;
    assert!(resets.text.contains("token="));

    // An hour later the address may ask again.
    app.advance(3601);
    let r = app
        .post(
            "/v1/auth/password/forgot",
            json!({"email": "kim@example.com"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // One client IP may not mail thirty different addresses within the hour.
    let mut refused = None;
    for i in 0..40 {
        let r = app
            .post(
                "/v1/auth/password/forgot",
                json!({"email": format!("n{i}@example.com")}),
            )
            .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(i);
            break;
        }
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    // The first hour's requests no longer count: kim's and 29 more make the thirty.
    assert_eq!(
        refused,
        Some(29),
        "the 31st request of the hour from one IP"
    );
}
