//! The mfa context through HTTP: TOTP enrolment, the two-step login, recovery codes, step-up
//! and its rules, an administrator's reset. TOTP codes are computed apart from Keyward, by
//! Python's standard library (RFC 6238 in a few lines), from the secret the API hands out.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{admin, claims, member, problem, spawn_app, TestApp, PASSWORD};

const TOTP_PY: &str = r#"
import base64, hashlib, hmac, struct, sys
s = sys.argv[1]; t = int(sys.argv[2]) // 30
k = base64.b32decode(s + '=' * (-len(s) % 8))
h = hmac.new(k, struct.pack('>Q', t), hashlib.sha1).digest()
o = h[-1] & 15
print('%06d' % ((struct.unpack('>I', h[o:o + 4])[0] & 0x7fffffff) % 1000000))
"#;

/// The code an authenticator app shows now, by the node's clock.
fn code(app: &TestApp, secret: &str) -> String {
    let now = chrono::Utc::now().timestamp() + app.clock_offset.load(Ordering::SeqCst);
    let out = std::process::Command::new("python3")
        .args(["-c", TOTP_PY, secret, &now.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The code an authenticator app shows now (for other test modules).
pub(crate) fn totp_code(app: &TestApp, secret: &str) -> String {
    code(app, secret)
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.post_bearer(path, token, Some(body)).await
}

/// Enrols TOTP for the holder of `token`: the secret, the factor id and the recovery codes.
async fn enrol(app: &TestApp, token: &str) -> (String, String, Vec<String>) {
    let r = app.post_bearer("/v1/users/me/mfa/totp", token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.json().await.unwrap();
    let secret = e["secret"].as_str().unwrap().to_owned();
    let r = post(
        app,
        "/v1/users/me/mfa/totp/confirm",
        token,
        json!({"code": code(app, &secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let codes: Value = r.json().await.unwrap();
    let codes = codes["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    // The next code is of the next time step: the one just used is spent.
    app.advance(30);
    (secret, e["factor_id"].as_str().unwrap().to_owned(), codes)
}

/// A password login that must ask for the second step: its `mfa_token`.
async fn first_step(app: &TestApp, email: &str) -> Value {
    let r = app.login(email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
    assert!(
        v.get("access_token").is_none(),
        "no tokens before the second step"
    );
    v
}

async fn verify(app: &TestApp, mfa_token: &str, factor: &str, code: &str) -> reqwest::Response {
    app.post(
        "/v1/auth/mfa/verify",
        json!({"mfa_token": mfa_token, "factor_id": factor, "code": code}),
    )
    .await
}

#[actix_web::test]
async fn a_totp_factor_turns_login_into_two_steps_with_amr_and_acr() {
    let app = spawn_app().await;
    let (_, token) = member(&app, "ann@example.com").await;
    assert_eq!(claims(&token)["amr"], json!(["pwd"]));
    assert_eq!(claims(&token)["acr"], "aal1");

    let r = app.post_bearer("/v1/users/me/mfa/totp", &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.json().await.unwrap();
    let secret = e["secret"].as_str().unwrap().to_owned();
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(
        uri.contains("ann%40example.com") && uri.contains(&secret),
        "{uri}"
    );
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    // Not active before it is confirmed.
    let r = app.login("ann@example.com", PASSWORD).await;
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());

    let first = code(&app, &secret);
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, p) = problem(
        post(
            &app,
            "/v1/users/me/mfa/totp/confirm",
            &token,
            json!({"code": wrong}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, p["errors"][0]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_code")),
        "{p}"
    );
    let r = post(
        &app,
        "/v1/users/me/mfa/totp/confirm",
        &token,
        json!({"code": first}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let codes: Value = r.json().await.unwrap();
    let codes: Vec<String> = codes["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let list: Value = app
        .get_bearer("/v1/users/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["factors"][0]["type"], "totp");
    assert_eq!(list["recovery_codes_left"], 10);
    let enrolled = app.events_of_type("mfa.enrolled").await;
    assert_eq!(enrolled.len(), 1);

    let step = first_step(&app, "ann@example.com").await;
    let factors = step["factors"].as_array().unwrap();
    assert_eq!(factors[0]["type"], "totp");
    assert_eq!(factors[1]["id"], "recovery");
    let factor = factors[0]["id"].as_str().unwrap().to_owned();
    let mfa_token = step["mfa_token"].as_str().unwrap();
    // The code that confirmed the factor is spent: a replay is refused.
    let (status, p) = problem(verify(&app, mfa_token, &factor, &first).await).await;
    assert_eq!(
        (status, p["errors"][0]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_code"))
    );
    app.advance(30);
    let r = verify(&app, mfa_token, &factor, &code(&app, &secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let c = claims(pair["access_token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["pwd", "otp"]));
    assert_eq!(c["acr"], "aal2");
    // A refresh keeps the session's level.
    let r = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    let refreshed: Value = r.json().await.unwrap();
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["acr"],
        "aal2"
    );
    // The challenge is used up.
    app.advance(30);
    let (status, p) = problem(verify(&app, mfa_token, &factor, &code(&app, &secret)).await).await;
    assert_eq!(
        (status, p["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_mfa_token"))
    );

    // A recovery code works once, typed in any case and without its dash.
    let step = first_step(&app, "ann@example.com").await;
    let typed = codes[0].replace('-', "").to_uppercase();
    let r = verify(
        &app,
        step["mfa_token"].as_str().unwrap(),
        "recovery",
        &typed,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let step = first_step(&app, "ann@example.com").await;
    let r = verify(
        &app,
        step["mfa_token"].as_str().unwrap(),
        "recovery",
        &codes[0],
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a recovery code is single use"
    );
    let logins = app.events_of_type("user.logged_in").await;
    assert!(
        logins
            .iter()
            .any(|e| e["data"]["amr"] == json!(["pwd", "otp"])),
        "{logins:?}"
    );
}

#[actix_web::test]
async fn once_a_factor_exists_changing_it_the_password_or_deleting_the_account_needs_step_up() {
    let app = spawn_app().await;
    let (_, token) = member(&app, "ann@example.com").await;
    let (secret, factor, _) = enrol(&app, &token).await;

    // The token from before the factor is aal1.
    let refused = |r: reqwest::Response| async move {
        let (status, p) = problem(r).await;
        assert_eq!(
            (status, p["code"].clone()),
            (StatusCode::FORBIDDEN, json!("step_up_required")),
            "{p}"
        );
    };
    refused(
        app.delete_bearer(&format!("/v1/users/me/mfa/{factor}"), &token)
            .await,
    )
    .await;
    refused(app.post_bearer("/v1/users/me/mfa/totp", &token, None).await).await;
    refused(
        app.post_bearer("/v1/users/me/mfa/recovery-codes", &token, None)
            .await,
    )
    .await;
    let change = json!({"current_password": PASSWORD, "new_password": "amber falcon meadow"});
    refused(post(&app, "/v1/auth/password/change", &token, change.clone()).await).await;
    let r = app
        .client
        .delete(app.url("/v1/users/me"))
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD}))
        .send()
        .await
        .unwrap();
    refused(r).await;

    // Step-up: a wrong code is refused, a right one gives an aal2 token for the same session.
    let (status, _) = problem(
        post(
            &app,
            "/v1/auth/step-up",
            &token,
            json!({"factor_id": factor, "code": "12345x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let r = post(
        &app,
        "/v1/auth/step-up",
        &token,
        json!({"factor_id": factor, "code": code(&app, &secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let up: Value = r.json().await.unwrap();
    let strong = up["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&strong)["acr"], "aal2");
    assert_eq!(claims(&strong)["sid"], claims(&token)["sid"]);
    assert_eq!(claims(&strong)["amr"], json!(["pwd", "otp"]));

    let r = app
        .post_bearer("/v1/users/me/mfa/recovery-codes", &strong, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.delete_bearer(&format!("/v1/users/me/mfa/{factor}"), &strong)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.events_of_type("mfa.removed").await.len(), 1);
    let list: Value = app
        .get_bearer("/v1/users/me/mfa", &strong)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"factors": [], "recovery_codes_left": 0}));
    // Without a factor, a password login gives tokens again and aal1 suffices.
    let r = app.login("ann@example.com", PASSWORD).await;
    let pair: Value = r.json().await.unwrap();
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["acr"],
        "aal1"
    );
    let r = post(&app, "/v1/auth/password/change", &token, change).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn wrong_second_factors_end_the_challenge_and_throttle_the_account_like_wrong_passwords() {
    let app = spawn_app().await;
    let (_, token) = member(&app, "ann@example.com").await;
    let (secret, factor, _) = enrol(&app, &token).await;
    let right = code(&app, &secret);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };

    let step = first_step(&app, "ann@example.com").await;
    let mfa_token = step["mfa_token"].as_str().unwrap();
    for _ in 0..5 {
        let r = verify(&app, mfa_token, &factor, wrong).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()),
            "{}",
            r.status()
        );
    }
    let r = verify(&app, mfa_token, &factor, &right).await;
    assert!(
        [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()),
        "the right code after five wrong ones: {}",
        r.status()
    );
    assert!(app.events_of_type("user.login_failed").await.len() >= 5);
    // The account is throttled: even the right password waits.
    let r = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // A bad factor id is named.
    let (status, p) = problem(verify(&app, "x", "not-a-factor", "123456").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["field"], "factor_id");
}

#[actix_web::test]
async fn an_administrator_resets_a_users_factors_and_the_audit_log_names_them() {
    let app = spawn_app().await;
    let (_, root) = admin(&app).await;
    let (ann, token) = member(&app, "ann@example.com").await;
    let (_, bob_token) = member(&app, "bob@example.com").await;
    enrol(&app, &token).await;

    let detail: Value = app
        .get_bearer(&format!("/v1/admin/users/{ann}"), &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["factors"][0]["type"], "totp", "{detail}");
    let path = format!("/v1/admin/users/{ann}/mfa");
    assert_eq!(
        app.delete_bearer(&path, &bob_token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete_bearer(&path, &root).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = app.login("ann@example.com", PASSWORD).await;
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
    let audit: Value = app
        .get_bearer(
            &format!("/v1/admin/audit?user_id={ann}&type=mfa.removed"),
            &root,
        )
        .await
        .json()
        .await
        .unwrap();
    let line = &audit["items"][0];
    assert_eq!(line["type"], "mfa.removed", "{audit}");
    assert!(line["actor_id"].is_string(), "{line}");
    let unknown = format!("/v1/admin/users/{}/mfa", uuid::Uuid::now_v7());
    assert_eq!(
        app.delete_bearer(&unknown, &root).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The 6-digit code in a text.
pub(crate) fn six_digits(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_owned()
}

async fn send_code(app: &TestApp, mfa_token: &str, factor: &str) -> reqwest::Response {
    app.post(
        "/v1/auth/mfa/challenge",
        json!({"mfa_token": mfa_token, "factor_id": factor}),
    )
    .await
}

fn factor_of(step: &Value, kind: &str) -> String {
    step["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} factor in {step}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn sms_and_email_codes_are_second_factors_but_an_email_code_after_an_email_reset_is_not_aal2()
{
    let app = spawn_app().await;
    let phone = "+79161234567";
    let (_, token) = crate::sms::with_phone(&app, "ann@example.com", phone).await;

    // The proven phone becomes the first factor, with recovery codes.
    let r = app.post_bearer("/v1/users/me/mfa/sms", &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "sms");
    assert_eq!(e["recovery_codes"].as_array().unwrap().len(), 10);

    let step = first_step(&app, "ann@example.com").await;
    let sms = factor_of(&step, "sms");
    let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
    let r = send_code(&app, &mfa_token, &sms).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let text = crate::sms::wait_text(&app, phone, 2).await;
    assert!(
        text["text"].as_str().unwrap().contains("sign-in code"),
        "{text}"
    );
    // Another code at once is refused; the one sent works.
    assert_eq!(
        send_code(&app, &mfa_token, &sms).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = verify(
        &app,
        &mfa_token,
        &sms,
        &six_digits(text["text"].as_str().unwrap()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let strong = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&strong)["amr"], json!(["pwd", "sms"]));
    assert_eq!(claims(&strong)["acr"], "aal2");

    // A second factor needs aal2; codes by email come from the mail.
    let r = app
        .post_bearer("/v1/users/me/mfa/email", &token, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post_bearer("/v1/users/me/mfa/email", &strong, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.json().await.unwrap();
    assert!(
        e.get("recovery_codes").is_none(),
        "only the first factor brings codes"
    );

    let email_login = |n: usize| {
        let app = &app;
        async move {
            let step = first_step(app, "ann@example.com").await;
            let factor = factor_of(&step, "email");
            let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
            assert_eq!(
                send_code(app, &mfa_token, &factor).await.status(),
                StatusCode::ACCEPTED
            );
            let mail = app
                .wait_for_mail_n("ann@example.com", "Your sign-in code", n)
                .await;
            let r = verify(app, &mfa_token, &factor, &six_digits(&mail.text)).await;
            assert_eq!(r.status(), StatusCode::OK);
            let pair: Value = r.json().await.unwrap();
            claims(pair["access_token"].as_str().unwrap())
        }
    };
    let c = email_login(1).await;
    assert_eq!(
        (c["amr"].clone(), c["acr"].clone()),
        (json!(["pwd", "email"]), json!("aal2"))
    );

    // After a reset by email link, the password and an email code both prove the mailbox.
    let r = app
        .post(
            "/v1/auth/password/forgot",
            json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mail = app
        .wait_for_mail("ann@example.com", "Reset your password")
        .await;
    let new_password = "a brand new passphrase";
    let r = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": mail.token(), "password": new_password}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let step = {
        let r = app.login("ann@example.com", new_password).await;
        r.json::<Value>().await.unwrap()
    };
    let factor = factor_of(&step, "email");
    app.advance(31);
    let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
    assert_eq!(
        send_code(&app, &mfa_token, &factor).await.status(),
        StatusCode::ACCEPTED
    );
    let mail = app
        .wait_for_mail_n("ann@example.com", "Your sign-in code", 2)
        .await;
    let r = verify(&app, &mfa_token, &factor, &six_digits(&mail.text)).await;
    let pair: Value = r.json().await.unwrap();
    let weak = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims(&weak)["acr"],
        "aal1",
        "email reset + email code is one kind of proof"
    );
    let r = app
        .post_bearer("/v1/users/me/mfa/recovery-codes", &weak, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn a_sent_code_dies_after_five_wrong_tries_and_cannot_be_asked_without_a_valid_login() {
    // The account throttle (5 failures) is raised here: this test is about the code.
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        settings: Some(Box::new(|s| s.throttle.account_max_failures = 50)),
        ..Default::default()
    })
    .await;
    let phone = "+79161234568";
    let (_, token) = crate::sms::with_phone(&app, "ann@example.com", phone).await;
    assert_eq!(
        app.post_bearer("/v1/users/me/mfa/sms", &token, None)
            .await
            .status(),
        StatusCode::OK
    );
    let step = first_step(&app, "ann@example.com").await;
    let sms = factor_of(&step, "sms");
    let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
    assert_eq!(
        send_code(&app, "not-a-token", &sms).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send_code(&app, &mfa_token, &sms).await.status(),
        StatusCode::ACCEPTED
    );
    let code = six_digits(
        crate::sms::wait_text(&app, phone, 2).await["text"]
            .as_str()
            .unwrap(),
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        assert_eq!(
            verify(&app, &mfa_token, &sms, wrong).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    // A fifth wrong try uses up the challenge; a new login's right code for the old text fails.
    assert_eq!(
        verify(&app, &mfa_token, &sms, wrong).await.status(),
        StatusCode::BAD_REQUEST
    );
    let step = first_step(&app, "ann@example.com").await;
    let r = verify(&app, step["mfa_token"].as_str().unwrap(), &sms, &code).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "the code died with five wrong tries"
    );
}

#[actix_web::test]
async fn a_code_sent_for_one_login_finishes_no_other() {
    // ASVS 6.6.2: an out-of-band code is bound to the request it was sent for.
    let app = spawn_app().await;
    let phone = "+79161234569";
    let (_, token) = crate::sms::with_phone(&app, "kim@example.com", phone).await;
    assert_eq!(
        app.post_bearer("/v1/users/me/mfa/sms", &token, None)
            .await
            .status(),
        StatusCode::OK
    );
    let first = first_step(&app, "kim@example.com").await;
    let sms = factor_of(&first, "sms");
    let first_token = first["mfa_token"].as_str().unwrap().to_owned();
    assert_eq!(
        send_code(&app, &first_token, &sms).await.status(),
        StatusCode::ACCEPTED
    );
    let code = six_digits(
        crate::sms::wait_text(&app, phone, 2).await["text"]
            .as_str()
            .unwrap(),
    );
    // Someone else's login (the password is known to them) with the code sent for the first.
    let second = first_step(&app, "kim@example.com").await;
    let r = verify(&app, second["mfa_token"].as_str().unwrap(), &sms, &code).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A wrong try is one of five: the code still finishes the login it was sent for.
    let r = verify(&app, &first_token, &sms, &code).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// What the model of one user knows: which factors exist, how the password was last set, and
/// the codes needed to pass each factor.
struct Model {
    password: String,
    via_reset: bool,
    totp: Option<(String, String)>,
    email: Option<String>,
    /// A device with a passkey, and the passkey's factor id.
    passkey: Option<(crate::passkeys::Device, String)>,
    recovery: Vec<String>,
    /// The best token the user holds, and whether the model says it is aal2.
    token: String,
    resets: usize,
    email_codes: usize,
}

/// A small deterministic generator (xorshift), so a failing sequence is replayed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What aal the model expects from `amr`: two kinds of proof, where a password set through an
/// email link and an email code are one kind (the mailbox), and a passkey (user-verified) is
/// possession and the PIN or biometric that unlocked it.
fn expected_acr(amr: &[&str], via_reset: bool) -> &'static str {
    let mut kinds: Vec<&str> = amr
        .iter()
        .flat_map(|a| match *a {
            "pwd" if via_reset => vec!["mailbox"],
            "pwd" => vec!["knowledge"],
            "email" => vec!["mailbox"],
            "hwk" => vec!["possession", "inherence"],
            _ => vec!["possession"],
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.len() >= 2 {
        "aal2"
    } else {
        "aal1"
    }
}

impl Model {
    fn factors(&self) -> usize {
        usize::from(self.totp.is_some())
            + usize::from(self.email.is_some())
            + usize::from(self.passkey.is_some())
    }
}

/// A second step with one of the user's factors, chosen by `pick`: the tokens, and the `amr`
/// value it proved.
async fn second_step(
    app: &TestApp,
    m: &mut Model,
    step: &Value,
    pick: usize,
) -> (Value, &'static str) {
    let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
    let mut options: Vec<&str> = Vec::new();
    if m.totp.is_some() {
        options.push("totp");
    }
    if m.email.is_some() {
        options.push("email");
    }
    if m.passkey.is_some() {
        options.push("passkey");
    }
    if !m.recovery.is_empty() {
        options.push("recovery");
    }
    if options[pick % options.len()] == "passkey" {
        let (device, id) = m.passkey.as_mut().unwrap();
        let id = id.clone();
        let r = send_code(app, &mfa_token, &id).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        let assertion = device.get(&v["publicKey"]).await;
        let r = app
            .post(
                "/v1/auth/mfa/verify",
                json!({"mfa_token": mfa_token, "factor_id": id, "credential": assertion}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "passkey");
        return (r.json().await.unwrap(), "hwk");
    }
    let (factor, code, amr) = match options[pick % options.len()] {
        "totp" => {
            let (secret, id) = m.totp.clone().unwrap();
            app.advance(30);
            (id, code(app, &secret), "otp")
        }
        "email" => {
            let id = m.email.clone().unwrap();
            app.advance(31);
            assert_eq!(
                send_code(app, &mfa_token, &id).await.status(),
                StatusCode::ACCEPTED
            );
            m.email_codes += 1;
            let mail = app
                .wait_for_mail_n("prop@example.com", "Your sign-in code", m.email_codes)
                .await;
            (id, six_digits(&mail.text), "email")
        }
        _ => ("recovery".to_owned(), m.recovery.pop().unwrap(), "otp"),
    };
    let r = verify(app, &mfa_token, &factor, &code).await;
    assert_eq!(r.status(), StatusCode::OK, "{factor}");
    (r.json().await.unwrap(), amr)
}

/// A second step whose tokens' acr must be the model's; the token becomes the user's, and
/// the answer names what was reached (`aal2+otp`, `aal1+email`, …).
async fn checked_second_step(
    app: &TestApp,
    m: &mut Model,
    step: &Value,
    pick: usize,
    ctx: &str,
) -> String {
    let (pair, amr) = second_step(app, m, step, pick).await;
    let c = claims(pair["access_token"].as_str().unwrap());
    assert_eq!(
        c["acr"],
        expected_acr(&["pwd", amr], m.via_reset),
        "{ctx}: {c}"
    );
    m.token = pair["access_token"].as_str().unwrap().to_owned();
    format!("{}+{amr}", c["acr"].as_str().unwrap())
}

#[actix_web::test]
async fn no_sequence_of_enrol_remove_login_reset_and_step_up_reaches_aal2_with_one_kind_of_proof() {
    // Which levels the sequences reached with a factor enrolled, so the test cannot pass by
    // never getting there.
    let mut reached = std::collections::BTreeSet::new();
    for seed in [
        0x9E37_79B9_7F4A_7C15u64,
        0xD1B5_4A32_D192_ED03,
        0xA076_1D64_78BD_642F,
        0xE703_7ED1_A0B4_28DB,
        0x8EBC_6AF0_9C88_C6E3,
    ] {
        let app = crate::helpers::spawn_app_with(crate::helpers::Options {
            settings: Some(Box::new(|s| {
                s.throttle.account_max_failures = 1000;
                s.throttle.ip_max_failures = 100_000;
            })),
            ..Default::default()
        })
        .await;
        let (_, token) = member(&app, "prop@example.com").await;
        let mut m = Model {
            password: PASSWORD.to_owned(),
            via_reset: false,
            totp: None,
            email: None,
            passkey: None,
            recovery: Vec::new(),
            token,
            resets: 0,
            email_codes: 0,
        };
        let mut rng = Rng(seed);
        let mut trail = Vec::new();
        for _ in 0..16 {
            let op = rng.below(8);
            trail.push(op);
            let ctx = format!("seed {seed}, ops {trail:?}");
            let aal2 = claims(&m.token)["acr"] == "aal2";
            let may_change = m.factors() == 0 || aal2;
            match op {
                // Enrol TOTP or email codes (the Supabase case: never without aal2 once a
                // factor exists).
                0 | 1 => {
                    let r = if op == 0 {
                        app.post_bearer("/v1/users/me/mfa/totp", &m.token, None)
                            .await
                    } else {
                        app.post_bearer("/v1/users/me/mfa/email", &m.token, None)
                            .await
                    };
                    if !may_change {
                        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{ctx}");
                        continue;
                    }
                    assert_eq!(r.status(), StatusCode::OK, "{ctx}");
                    let v: Value = r.json().await.unwrap();
                    let first = m.factors() == 0;
                    if op == 0 {
                        if m.totp.is_some() {
                            // Already enrolled: the pending one is left unconfirmed.
                            continue;
                        }
                        let secret = v["secret"].as_str().unwrap().to_owned();
                        app.advance(30);
                        let r = post(
                            &app,
                            "/v1/users/me/mfa/totp/confirm",
                            &m.token,
                            json!({"code": code(&app, &secret)}),
                        )
                        .await;
                        let body: Value = if r.status() == StatusCode::OK {
                            r.json().await.unwrap()
                        } else {
                            json!({})
                        };
                        if first {
                            m.recovery = body["recovery_codes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|c| c.as_str().unwrap().to_owned())
                                .collect();
                        }
                        m.totp = Some((secret, v["factor_id"].as_str().unwrap().to_owned()));
                    } else {
                        if first {
                            m.recovery = v["recovery_codes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|c| c.as_str().unwrap().to_owned())
                                .collect();
                        }
                        m.email = Some(v["factor_id"].as_str().unwrap().to_owned());
                    }
                }
                // Remove a factor.
                2 => {
                    let Some(id) = m
                        .email
                        .clone()
                        .or_else(|| m.passkey.as_ref().map(|p| p.1.clone()))
                        .or_else(|| m.totp.as_ref().map(|t| t.1.clone()))
                    else {
                        continue;
                    };
                    let r = app
                        .delete_bearer(&format!("/v1/users/me/mfa/{id}"), &m.token)
                        .await;
                    if !aal2 {
                        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{ctx}");
                        continue;
                    }
                    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{ctx}");
                    if m.email.as_deref() == Some(id.as_str()) {
                        m.email = None;
                    } else if m.passkey.as_ref().is_some_and(|p| p.1 == id) {
                        m.passkey = None;
                    } else {
                        m.totp = None;
                    }
                    if m.factors() == 0 {
                        m.recovery.clear();
                    }
                }
                // Log in: with a factor, never tokens before the second step (the Kratos
                // cases), and the tokens' acr is what the model expects.
                3 => {
                    if m.email.is_some() {
                        // Email codes are 5 an hour per account: space them out.
                        app.advance(13 * 60);
                    }
                    let r = app.login("prop@example.com", &m.password).await;
                    assert_eq!(r.status(), StatusCode::OK, "{ctx}");
                    let v: Value = r.json().await.unwrap();
                    if m.factors() == 0 {
                        assert!(v["access_token"].is_string(), "{ctx}");
                        assert_eq!(
                            claims(v["access_token"].as_str().unwrap())["acr"],
                            "aal1",
                            "{ctx}"
                        );
                        m.token = v["access_token"].as_str().unwrap().to_owned();
                        continue;
                    }
                    assert_eq!(v["mfa_required"], true, "{ctx}: {v}");
                    assert!(v.get("access_token").is_none(), "{ctx}");
                    let acr = checked_second_step(&app, &mut m, &v, rng.below(3), &ctx).await;
                    reached.insert(acr);
                }
                // Reset the password through the email link.
                4 => {
                    if m.email.is_some() {
                        app.advance(13 * 60);
                    }
                    let r = app
                        .post(
                            "/v1/auth/password/forgot",
                            json!({"email": "prop@example.com"}),
                        )
                        .await;
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                    m.resets += 1;
                    let mail = app
                        .wait_for_mail_n("prop@example.com", "Reset your password", m.resets)
                        .await;
                    m.password = format!("fresh meadow lantern {}", m.resets);
                    let r = app
                        .post(
                            "/v1/auth/password/reset",
                            json!({"token": mail.token(), "password": m.password}),
                        )
                        .await;
                    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{ctx}");
                    m.via_reset = true;
                    // Every session ended: log in again, with the model.
                    let r = app.login("prop@example.com", &m.password).await;
                    let v: Value = r.json().await.unwrap();
                    if m.factors() == 0 {
                        m.token = v["access_token"].as_str().unwrap().to_owned();
                    } else {
                        let acr = checked_second_step(&app, &mut m, &v, rng.below(3), &ctx).await;
                        reached.insert(acr);
                    }
                }
                // Register a passkey (the Supabase case again: not beside another factor
                // without aal2).
                6 => {
                    if m.passkey.is_some() {
                        continue;
                    }
                    let r = app
                        .post_bearer("/v1/users/me/passkeys/options", &m.token, Some(json!({})))
                        .await;
                    if !may_change {
                        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{ctx}");
                        continue;
                    }
                    let first = m.factors() == 0;
                    let mut device = crate::passkeys::Device::new(&app);
                    let v = crate::passkeys::register(&app, &mut device, &m.token, "Key").await;
                    if first {
                        m.recovery = v["recovery_codes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c.as_str().unwrap().to_owned())
                            .collect();
                    }
                    m.passkey = Some((device, v["factor_id"].as_str().unwrap().to_owned()));
                }
                // Log in without a password (the Kratos #4285 case: never below what the
                // account's factors demand).
                7 => {
                    let Some((device, _)) = m.passkey.as_mut() else {
                        continue;
                    };
                    let (_, r) = crate::passkeys::passkey_login(&app, device).await;
                    assert_eq!(r.status(), StatusCode::OK, "{ctx}");
                    let v: Value = r.json().await.unwrap();
                    let c = claims(v["access_token"].as_str().unwrap());
                    assert_eq!(c["acr"], expected_acr(&["hwk"], m.via_reset), "{ctx}: {c}");
                    reached.insert(format!("passkey {}", c["acr"].as_str().unwrap()));
                    m.token = v["access_token"].as_str().unwrap().to_owned();
                }
                // Step up with TOTP when there is one.
                _ => {
                    let Some((secret, id)) = m.totp.clone() else {
                        continue;
                    };
                    app.advance(30);
                    let r = post(
                        &app,
                        "/v1/auth/step-up",
                        &m.token,
                        json!({"factor_id": id, "code": code(&app, &secret)}),
                    )
                    .await;
                    assert_eq!(r.status(), StatusCode::OK, "{ctx}");
                    let v: Value = r.json().await.unwrap();
                    let c = claims(v["access_token"].as_str().unwrap());
                    let had: Vec<String> = claims(&m.token)["amr"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect();
                    let mut amr: Vec<&str> = had.iter().map(String::as_str).collect();
                    amr.push("otp");
                    assert_eq!(c["acr"], expected_acr(&amr, m.via_reset), "{ctx}: {c}");
                    reached.insert(format!("step-up {}", c["acr"].as_str().unwrap()));
                    m.token = v["access_token"].as_str().unwrap().to_owned();
                }
            }
        }
    }
    eprintln!("reached: {reached:?}");
    assert!(
        reached.contains("aal1+email"),
        "an email reset with an email code: {reached:?}"
    );
    assert!(reached.contains("aal2+otp"), "{reached:?}");
    assert!(reached.contains("aal2+hwk"), "{reached:?}");
    assert!(reached.contains("passkey aal2"), "{reached:?}");
    assert!(
        reached.iter().any(|r| r.starts_with("step-up")),
        "{reached:?}"
    );
}
