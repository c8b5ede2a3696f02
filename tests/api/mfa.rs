//! The mfa context through HTTP: TOTP enrolment, the two-step login, recovery codes, step-up
//! and its rules, an administrator's reset. TOTP codes are computed apart from Keyward, by
//! Python's standard library (RFC 6238 in a few lines), from the secret the API hands out.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{admin, member, problem, spawn_app, TestApp, PASSWORD};

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

/// The claims of a token, unverified.
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
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
