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
    // Each pair is measured back to back, so the load beside the test moves both alike.
    let mut paired: Vec<i128> = Vec::new();
    for i in 0..160 {
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
        paired.push(k.1 as i128 - u.1 as i128);
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
    paired.sort_unstable();
    let md = paired[paired.len() / 2];
    let summary = format!(
        "median µs: known {mk}, unknown {mu}, no hash {mb}, known − unknown in a pair {md}; \
         P(unknown > known) = {a:.2}"
    );
    // The measurement can see a hash: a path without one is clearly faster.
    assert!(
        mk > 3 * mb,
        "the hash does not dominate; inconclusive: {summary}"
    );
    // Neither is consistently slower, and within a pair they differ by far less than a hash.
    // NOTE: the history of the residue is in SECURITY.md ("Residual difference"). Until an
    // unknown account's failure wrote its event's row as a decoy, a known one's wrote one row
    // more: in 80 pairs beside a soak run, the pairs' median was 17 to 2,045 µs (2.6% of this
    // hash on average) before, -236 to 493 µs (0.5%) after. The group medians move with the
    // load beside the test (-8% to +14% in those runs), the pairs' median much less: with
    // 160 pairs after the fix, -33 to 1,455 µs on SQLite (up to 4.9% of a hash, one run with
    // the whole suite beside it) and -872 to 1,105 µs on PostgreSQL. Hence 10% on the pairs
    // (15% on the group medians before). A skipped or extra hash moves it by a whole hash.
    assert!((0.2..=0.8).contains(&a), "{summary}");
    assert!(md.unsigned_abs() * 100 < 10 * (mk - mb), "{summary}");
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
