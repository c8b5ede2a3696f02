//! Accounts rows of the API table: registration, verification, login, passwords.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, PASSWORD};

#[actix_web::test]
async fn registering_an_existing_email_answers_the_same_and_mails_a_notice() {
    let app = spawn_app().await;
    let first = app.register("bob@example.com", PASSWORD, None).await;
    let first = (first.status(), first.json::<Value>().await.unwrap());
    let second = app
        .register("BOB@example.com", "another good passphrase", None)
        .await;
    let second = (second.status(), second.json::<Value>().await.unwrap());
    assert_eq!(first, second, "same reply whether or not the email exists");
    app.wait_for_mail("bob@example.com", "Someone tried to sign up")
        .await;
    // Still one account: the original password works after verification.
    let token = app
        .wait_for_mail("bob@example.com", "Confirm")
        .await
        .token();
    app.post("/v1/auth/verify-email", json!({"token": token}))
        .await;
    app.login_ok("bob@example.com", PASSWORD).await;
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);
}

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
async fn wrong_password_and_unknown_account_get_the_same_401() {
    let app = spawn_app().await;
    app.verified_user("gina@example.com", Some("gina")).await;
    let (s1, b1) = problem(app.login("gina@example.com", "wrong password here").await).await;
    let (s2, b2) = problem(app.login("ghost@example.com", "wrong password here").await).await;
    let (s3, b3) = problem(app.login("ghost", "wrong password here").await).await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(b1["code"], "invalid_credentials");
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!((s1, &b1), (s3, &b3));
}

#[actix_web::test]
async fn a_blocked_account_gets_403_only_with_the_right_password() {
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
async fn forgot_and_reset_password_ends_every_session() {
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
async fn changing_the_password_ends_the_other_sessions_only() {
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
