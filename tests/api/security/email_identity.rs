//! Email identity: one mailbox is one account. Every spelling of a mailbox is one canonical
//! address (stored, looked up, shown and mailed to), addresses the mail path cannot carry are
//! refused, and an unverified registration never blocks or captures an address.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};

const CONFIRM: &str = "Confirm your email";
const NOTICE: &str = "Someone tried to sign up";

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/v1/auth/verify-email", json!({"token": token}))
        .await
}

async fn me(app: &TestApp, login: &str, password: &str) -> Value {
    let pair = app.login_ok(login, password).await;
    app.get_bearer("/v1/users/me", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap()
}

/// Mails whose subject contains `subject`, to exactly `to`.
async fn mails_to(app: &TestApp, to: &str, subject: &str) -> usize {
    app.mails()
        .await
        .iter()
        .filter(|m| m.to == to && m.subject.contains(subject))
        .count()
}

#[actix_web::test]
async fn asvs_v2_3_1_a_kelvin_sign_registration_neither_blocks_nor_captures_the_mailbox() {
    let app = spawn_app().await;
    let attacker_password = "kelvin squatter passphrase";
    let owner_password = "the real kate's passphrase";

    // The attacker spells the K with KELVIN SIGN (U+212A). It is the same mailbox, so the
    // link goes to the real owner, at the canonical address.
    let r = app
        .register("\u{212A}ate@example.com", attacker_password, Some("kate"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let attackers_link = app.wait_for_mail("kate@example.com", CONFIRM).await;
    assert_eq!(attackers_link.to, "kate@example.com");

    // The owner registers: a link of their own, not an "account exists" notice, and the
    // unverified account's own username is no obstacle.
    let r = app
        .register("kate@example.com", owner_password, Some("kate"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let owners_link = app.wait_for_mail_n("kate@example.com", CONFIRM, 2).await;
    assert_eq!(owners_link.to, "kate@example.com");
    assert_ne!(owners_link.token(), attackers_link.token());

    let r = verify(&app, &owners_link.token()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let verified: Value = r.json().await.unwrap();
    assert_eq!(verified["email"], "kate@example.com");

    let me = me(&app, "kate@example.com", owner_password).await;
    assert_eq!(me["email"], "kate@example.com");
    assert_eq!(me["username"], "kate");
    let (status, body) = problem(app.login("kate@example.com", attacker_password).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_credentials");
    let (status, body) = problem(
        app.login("\u{212A}ate@example.com", attacker_password)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );

    // The attacker's registration died with the owner's verification.
    let (status, body) = problem(verify(&app, &attackers_link.token()).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_token");

    // One account, one verification, no notice: the owner never "already had" an account.
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);
    assert_eq!(app.events_of_type("user.email_verified").await.len(), 1);
    assert_eq!(mails_to(&app, "kate@example.com", NOTICE).await, 0);
}

#[actix_web::test]
async fn asvs_v2_3_1_a_resent_link_completes_the_latest_registration_and_ends_the_others() {
    let app = spawn_app().await;
    app.register("lena@example.com", "first registration pass", None)
        .await;
    let first = app.wait_for_mail("lena@example.com", CONFIRM).await;
    app.register("LENA@example.com", "second registration pass", Some("lena"))
        .await;
    app.wait_for_mail_n("lena@example.com", CONFIRM, 2).await;
    let r = app
        .post(
            "/v1/auth/verify-email/resend",
            json!({"email": "lena@Example.com"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let resent = app.wait_for_mail_n("lena@example.com", CONFIRM, 3).await;

    // The GET link (what the mail's button opens) works like the POST.
    let r = app
        .client
        .get(app.url(&format!("/v1/auth/verify-email?token={}", resent.token())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let me = me(&app, "lena", "second registration pass").await;
    assert_eq!(me["email"], "lena@example.com");
    let (status, _) = problem(
        app.login("lena@example.com", "first registration pass")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = problem(verify(&app, &first.token()).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token"))
    );
}

#[actix_web::test]
async fn asvs_v2_3_1_a_username_claimed_before_the_link_is_used_leaves_the_account_without_one() {
    let app = spawn_app().await;
    app.register("nina@example.com", "nina's first passphrase", Some("nina"))
        .await;
    app.wait_for_mail("nina@example.com", CONFIRM).await;

    // Another account's name is taken for a registration of an unverified address too.
    app.verified_user("omar@example.com", Some("omar")).await;
    let (status, body) = problem(
        app.register("nina@example.com", "nina's second passphrase", Some("OMAR"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "username_taken");

    // A registration asks for "zed"; before its link is used, another account takes "zed".
    app.register("nina@example.com", "nina's third passphrase", Some("zed"))
        .await;
    let link = app.wait_for_mail_n("nina@example.com", CONFIRM, 2).await;
    app.verified_user("zed@example.com", Some("zed")).await;

    let r = verify(&app, &link.token()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let me = me(&app, "nina@example.com", "nina's third passphrase").await;
    assert_eq!(me["username"], Value::Null);
    let zed = app.login_ok("zed", crate::helpers::PASSWORD).await;
    assert!(zed["access_token"].is_string());
    // "nina" went with the registration that asked for it.
    let (status, _) = problem(app.login("nina", "nina's first passphrase").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn asvs_v1_1_1_idn_punycode_and_fullwidth_spellings_are_one_account() {
    let app = spawn_app().await;
    let password = "one mailbox one account";
    let canonical = "x@xn--bcher-kva.example";

    let r = app.register("X@Bücher.example", password, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let link = app.wait_for_mail(canonical, CONFIRM).await;
    assert_eq!(link.to, canonical);
    assert_eq!(verify(&app, &link.token()).await.status(), StatusCode::OK);

    // The punycode spelling and a fullwidth spelling of the verified address: the same
    // reply, and a notice to the canonical address instead of a second account.
    for (n, spelling) in [
        "x@XN--BCHER-KVA.example",
        "\u{FF58}@\u{FF42}\u{FF55}\u{0308}cher.\u{FF45}xample",
    ]
    .into_iter()
    .enumerate()
    {
        let r = app
            .register(spelling, "another good passphrase", None)
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{spelling}");
        let notice = app.wait_for_mail_n(canonical, NOTICE, n + 1).await;
        assert_eq!(notice.to, canonical);
    }
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);
    let registered = &app.events_of_type("user.registered").await[0];
    assert_eq!(registered["data"]["email"], canonical);

    // Any spelling signs in to the one account, which shows the canonical address.
    for spelling in ["x@bücher.example", canonical, "\u{FF38}@BÜCHER.EXAMPLE"] {
        let me = me(&app, spelling, password).await;
        assert_eq!(me["email"], canonical, "{spelling}");
    }

    // Fullwidth letters in the local part are the ASCII letters too.
    let r = app
        .register(
            "\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}@example.com",
            password,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let link = app.wait_for_mail("alice@example.com", CONFIRM).await;
    assert_eq!(link.to, "alice@example.com");
    assert_eq!(verify(&app, &link.token()).await.status(), StatusCode::OK);
    assert_eq!(
        me(&app, "ALICE@example.com", password).await["email"],
        "alice@example.com"
    );
}

#[actix_web::test]
async fn asvs_v2_2_1_addresses_the_mail_path_cannot_carry_are_refused_naming_the_rule() {
    let app = spawn_app().await;
    for (email, code) in [
        ("\"a@b\"@example.com", "quoted_local_part_unsupported"),
        ("\"alice\"@example.com", "quoted_local_part_unsupported"),
        ("root@[127.0.0.1]", "ip_literal_unsupported"),
        ("root@[IPv6:2001:db8::1]", "ip_literal_unsupported"),
        ("root@192.0.2.1", "ip_literal_unsupported"),
        ("jörg@example.com", "non_ascii_local_part_unsupported"),
    ] {
        let (status, body) =
            problem(app.register(email, "a fine passphrase here", None).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{email}");
        assert_eq!(body["code"], "validation_failed", "{email}");
        assert_eq!(body["errors"][0]["field"], "email", "{email}");
        assert_eq!(body["errors"][0]["code"], code, "{email}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("name@example.com"), "{email}: {message}");

        // The same rule wherever an address is taken.
        for path in ["/v1/auth/verify-email/resend", "/v1/auth/password/forgot"] {
            let (status, body) = problem(app.post(path, json!({"email": email})).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {email}");
            assert_eq!(body["errors"][0]["field"], "email");
            assert_eq!(body["errors"][0]["code"], code);
        }
        let (status, body) = problem(app.login(email, "a fine passphrase here").await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "login {email}");
        assert_eq!(body["errors"][0]["field"], "login");
        assert_eq!(body["errors"][0]["code"], code);
    }
    assert!(app.events().await.is_empty(), "nothing was written");
    assert!(app.mails().await.is_empty(), "nothing was mailed");
}

#[actix_web::test]
async fn asvs_v2_3_1_two_links_of_one_address_used_at_once_make_exactly_one_registration_win() {
    let app = spawn_app().await;
    for round in 0..5 {
        let email = format!("race{round}@example.com");
        let passwords = ["first racing passphrase", "second racing passphrase"];
        let mut links = Vec::new();
        for (n, p) in passwords.into_iter().enumerate() {
            app.register(&email, p, None).await;
            links.push(app.wait_for_mail_n(&email, CONFIRM, n + 1).await.token());
        }
        let (a, b) = futures::join!(verify(&app, &links[0]), verify(&app, &links[1]));
        let statuses = [a.status(), b.status()];
        let winner = match statuses {
            [StatusCode::OK, StatusCode::BAD_REQUEST] => 0,
            [StatusCode::BAD_REQUEST, StatusCode::OK] => 1,
            other => panic!("round {round}: {other:?}"),
        };
        app.login_ok(&email, passwords[winner]).await;
        let (status, _) = problem(app.login(&email, passwords[1 - winner]).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "round {round}");
    }
    assert_eq!(app.events_of_type("user.email_verified").await.len(), 5);
}
