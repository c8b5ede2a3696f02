//! Enumeration: the API does not tell whether an account exists, by reply or by timing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, spawn_app_with, Options, PASSWORD};

#[actix_web::test]
async fn asvs_v6_3_8_registering_an_existing_email_answers_the_same_and_mails_a_notice() {
    let app = spawn_app().await;
    let first = app.register("bob@example.com", PASSWORD, None).await;
    let first = (first.status(), first.json::<Value>().await.unwrap());
    // The notice is for an owner who proved the mailbox (an unverified address gets a link of
    // its own: security::email_identity).
    let token = app
        .wait_for_mail("bob@example.com", "Confirm")
        .await
        .token();
    app.post("/v1/auth/verify-email", json!({"token": token}))
        .await;
    let second = app
        .register("BOB@example.com", "another good passphrase", None)
        .await;
    let second = (second.status(), second.json::<Value>().await.unwrap());
    assert_eq!(first, second, "same reply whether or not the email exists");
    app.wait_for_mail("bob@example.com", "Someone tried to sign up")
        .await;
    // Still one account: the original password works.
    app.login_ok("bob@example.com", PASSWORD).await;
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);
}

#[actix_web::test]
async fn asvs_v6_3_8_wrong_password_and_unknown_account_get_the_same_401() {
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

/// Wall time of one request, in microseconds.
async fn timed(req: reqwest::RequestBuilder) -> (StatusCode, u128) {
    let started = std::time::Instant::now();
    let r = req.send().await.unwrap();
    let status = r.status();
    r.bytes().await.unwrap();
    (status, started.elapsed().as_micros())
}

fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// P(a sample of `a` exceeds one of `b`), ties counting half: 0.5 when the two distributions
/// are the same, near 0 or 1 when one is consistently slower (the Mann–Whitney statistic).
fn superiority(a: &[u128], b: &[u128]) -> f64 {
    let mut wins = 0.0;
    for x in a {
        for y in b {
            wins += match x.cmp(y) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    wins / (a.len() * b.len()) as f64
}

#[actix_web::test]
async fn asvs_v6_3_8_login_timing_does_not_tell_an_unknown_account_from_a_wrong_password() {
    // A real (if small) argon2 cost, so that skipping it for unknown accounts would show.
    let app = spawn_app_with(Options {
        hash_params: Some(keyward_actors::hasher::HashParams {
            memory_kib: 8192,
            iterations: 2,
            parallelism: 1,
        }),
        settings: Some(Box::new(|s| {
            s.throttle.account_max_failures = 10_000;
            s.throttle.ip_max_failures = 10_000;
        })),
        ..Options::default()
    })
    .await;
    app.verified_user("kim@example.com", None).await;
    let login = |who: String| {
        app.client
            .post(app.url("/v1/auth/login"))
            .json(&json!({"login": who, "password": "not the password at all"}))
    };
    // No hash at all: a body the gateway refuses. It shows what a skipped hash would look like.
    let no_hash = || {
        app.client
            .post(app.url("/v1/auth/login"))
            .json(&json!({"login": "kim@example.com"}))
    };
    for i in 0..5 {
        timed(login("kim@example.com".into())).await;
        timed(login(format!("warm{i}@example.com"))).await;
    }
    let (mut known, mut unknown, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..80 {
        // Interleaved, alternating which goes first, so drift hits both alike.
        let (first_known, k, u);
        first_known = i % 2 == 0;
        if first_known {
            k = timed(login("kim@example.com".into())).await;
            u = timed(login(format!("nobody{i}@example.com"))).await;
        } else {
            u = timed(login(format!("nobody{i}@example.com"))).await;
            k = timed(login("kim@example.com".into())).await;
        }
        assert_eq!(k.0, StatusCode::UNAUTHORIZED);
        assert_eq!(u.0, StatusCode::UNAUTHORIZED);
        known.push(k.1);
        unknown.push(u.1);
        let (s, t) = timed(no_hash()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        baseline.push(t);
    }
    let a = superiority(&unknown, &known);
    let (mk, mu, mb) = (
        median(&mut known),
        median(&mut unknown),
        median(&mut baseline),
    );
    let summary =
        format!("median µs: known {mk}, unknown {mu}, no hash {mb}; P(unknown > known) = {a:.2}");
    // The measurement can see a hash: a path without one is clearly faster.
    assert!(
        mk > 3 * mb,
        "the hash does not dominate; inconclusive: {summary}"
    );
    // Neither is consistently slower, and the medians differ by far less than a hash costs.
    // NOTE: a known account's failure writes one row more (its user.login_failed event), and
    // once woke the outbox relay, whose reads and publish ran beside the reply: known accounts
    // were slower in every run (by 1.5-4% of this hash on SQLite, 1-6% on PostgreSQL;
    // P(unknown > known) 0.27-0.46). The relay now publishes failures at its next tick. The
    // throttle check also loaded every failure row to count them, twice per login: this
    // account holds 85, a fresh unknown login none, and CI saw known 17% slower (P 0.39). The
    // database now counts them: beside the whole suite the medians differ by 3-4% (P
    // 0.44-0.47; 5.5% and P 0.39-0.41 before). The bounds leave room for a test suite running
    // beside this test. A skipped or extra hash moves the medians by a whole hash and fails
    // both checks.
    assert!((0.2..=0.8).contains(&a), "{summary}");
    assert!(mk.abs_diff(mu) * 100 < 15 * (mk - mb), "{summary}");
    eprintln!("{summary}");
}

#[actix_web::test]
async fn asvs_v6_3_8_resend_and_forgot_answer_the_same_for_known_unverified_and_unknown_emails() {
    let app = spawn_app().await;
    app.verified_user("vic@example.com", None).await;
    let r = app.register("una@example.com", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for path in ["/v1/auth/verify-email/resend", "/v1/auth/password/forgot"] {
        let mut replies = Vec::new();
        for email in ["vic@example.com", "una@example.com", "nobody@example.com"] {
            let r = app.post(path, json!({ "email": email })).await;
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            replies.push((status, body));
        }
        assert_eq!(replies[0].0, StatusCode::ACCEPTED, "{path}");
        assert!(
            replies.iter().all(|r| *r == replies[0]),
            "{path}: {replies:?}"
        );
    }
}
