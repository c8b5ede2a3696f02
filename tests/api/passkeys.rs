//! Passkeys through HTTP, with a software authenticator and WebAuthn client that are not
//! Keyward's (1Password's passkey-rs): registration, passwordless login, a passkey as the
//! second step of a login and for step-up, single-use challenges, origins, removal, a cloned
//! authenticator, and the peer bugs the issue names.

use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::{webauthn as pw, Passkey};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{claims, member, problem, spawn_app, TestApp, PASSWORD};

/// The user unlocks the passkey (user verification), as a PIN or fingerprint would.
struct Unlock;

#[async_trait::async_trait]
impl UserValidationMethod for Unlock {
    type PasskeyItem = Passkey;
    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        _presence: bool,
        _verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence: true,
            verification: true,
        })
    }
    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
    fn is_presence_enabled(&self) -> bool {
        true
    }
}

/// A device holding one discoverable passkey, used from pages of `origin`.
#[derive(Clone)]
pub(crate) struct Device {
    store: Option<Passkey>,
    origin: url::Url,
}

/// Browsers' `toJSON()` encodes binary fields as base64url; passkey-rs serialises them as
/// arrays of bytes.
fn to_browser_json(v: &mut Value) {
    use base64::Engine as _;
    match v {
        Value::Array(a)
            if !a.is_empty() && a.iter().all(|x| x.as_u64().is_some_and(|n| n < 256)) =>
        {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(Value::as_u64)
                .map(|n| n as u8)
                .collect();
            *v = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into();
        }
        Value::Array(a) => a.iter_mut().for_each(to_browser_json),
        Value::Object(o) => o.values_mut().for_each(to_browser_json),
        _ => {}
    }
}

impl Device {
    /// A device on the node's own origin (`http://localhost:PORT`, the default RP ID for a
    /// node on the loopback address).
    pub(crate) fn new(app: &TestApp) -> Self {
        let origin = app.base.replace("127.0.0.1", "localhost");
        Self::on(&origin)
    }

    fn on(origin: &str) -> Self {
        Device {
            store: None,
            origin: url::Url::parse(origin).unwrap(),
        }
    }

    fn authenticator(&mut self) -> Authenticator<Option<Passkey>, Unlock, RustCryptoBackend> {
        let mut a = Authenticator::new(
            Aaguid::new_empty(),
            self.store.take(),
            Unlock,
            RustCryptoBackend,
        );
        a.set_make_credentials_with_signature_counter(true);
        a
    }

    /// `navigator.credentials.create({publicKey})` and `toJSON()`.
    pub(crate) async fn create(&mut self, public_key: &Value) -> Value {
        let req: pw::CredentialCreationOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let mut client = Client::new(self.authenticator()).allows_insecure_localhost(true);
        let origin = self.origin.clone();
        let made = client.register(&origin, req, DefaultClientData).await;
        self.store = client.authenticator().store().clone();
        let mut v =
            serde_json::to_value(made.expect("the authenticator makes a credential")).unwrap();
        to_browser_json(&mut v);
        v
    }

    /// `navigator.credentials.get({publicKey})` and `toJSON()`.
    pub(crate) async fn get(&mut self, public_key: &Value) -> Value {
        let req: pw::CredentialRequestOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let mut client = Client::new(self.authenticator()).allows_insecure_localhost(true);
        let origin = self.origin.clone();
        let got = client.authenticate(&origin, req, DefaultClientData).await;
        self.store = client.authenticator().store().clone();
        let mut v = serde_json::to_value(got.expect("the authenticator signs")).unwrap();
        to_browser_json(&mut v);
        v
    }
}

/// GET /v1/users/me/mfa.
async fn factors(app: &TestApp, token: &str) -> Value {
    let r = app.get_bearer("/v1/users/me/mfa", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn options(app: &TestApp, path: &str, token: Option<&str>) -> Value {
    let r = match token {
        Some(t) => app.post_bearer(path, t, Some(json!({}))).await,
        None => app.post(path, json!({})).await,
    };
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let v: Value = r.json().await.unwrap();
    v["publicKey"].clone()
}

/// Registers a passkey on `device` for the holder of `token`: the reply.
pub(crate) async fn register(app: &TestApp, device: &mut Device, token: &str, name: &str) -> Value {
    let public_key = options(app, "/v1/users/me/passkeys/options", Some(token)).await;
    let mut credential = device.create(&public_key).await;
    credential["name"] = name.into();
    let r = app
        .post_bearer("/v1/users/me/passkeys", token, Some(credential))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

/// A passwordless login with `device`: the assertion sent, and the answer.
pub(crate) async fn passkey_login(
    app: &TestApp,
    device: &mut Device,
) -> (Value, reqwest::Response) {
    let public_key = options(app, "/v1/auth/passkey/options", None).await;
    let assertion = device.get(&public_key).await;
    let r = app.post("/v1/auth/passkey", assertion.clone()).await;
    (assertion, r)
}

#[actix_web::test]
async fn a_passkey_logs_in_without_a_password_at_aal2_and_each_answer_counts_once() {
    let app = spawn_app().await;
    let (id, token) = member(&app, "ann@example.com").await;
    let mut laptop = Device::new(&app);

    let public_key = options(&app, "/v1/users/me/passkeys/options", Some(&token)).await;
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(
        public_key["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert_eq!(
        public_key["authenticatorSelection"]["userVerification"],
        "required"
    );
    let mut credential = laptop.create(&public_key).await;
    credential["name"] = "Work laptop".into();
    let r = app
        .post_bearer("/v1/users/me/passkeys", &token, Some(credential.clone()))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let enrolled: Value = r.json().await.unwrap();
    assert_eq!(enrolled["type"], "passkey");
    assert_eq!(enrolled["recovery_codes"].as_array().unwrap().len(), 10);
    // Now that Ann has a factor, her password-only token may not add another.
    let (status, _) = problem(
        app.post_bearer("/v1/users/me/passkeys", &token, Some(credential.clone()))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let list = factors(&app, &token).await;
    assert_eq!(list["factors"][0]["type"], "passkey", "{list}");
    assert_eq!(list["factors"][0]["label"], "Work laptop", "{list}");

    let (assertion, r) = passkey_login(&app, &mut laptop).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let c = claims(pair["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], id.as_str());
    assert_eq!(c["amr"], json!(["hwk"]));
    assert_eq!(c["acr"], "aal2", "a user-verified passkey is two factors");
    let me = app
        .get_bearer("/v1/users/me", pair["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), StatusCode::OK);
    let list = factors(&app, &token).await;
    assert!(list["factors"][0]["last_used_at"].is_string(), "{list}");

    // The same registration answer again, with aal2: its options were used up.
    let aal2 = pair["access_token"].as_str().unwrap();
    let (status, p) = problem(
        app.post_bearer("/v1/users/me/passkeys", aal2, Some(credential))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["field"], "credential", "{p}");

    // A replayed assertion: its challenge was taken by the first answer.
    let (status, p) = problem(app.post("/v1/auth/passkey", assertion).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["code"], "invalid_credential", "{p}");
    let (status, p) = problem(app.post("/v1/auth/passkey", json!({"id": "x"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["field"], "response", "{p}");
}

#[actix_web::test]
async fn a_passkey_is_the_second_step_of_a_password_login_and_steps_a_session_up() {
    let app = spawn_app().await;
    let (_, aal1) = member(&app, "bea@example.com").await;
    let mut key = Device::new(&app);
    let enrolled = register(&app, &mut key, &aal1, "Security key").await;
    let factor = enrolled["factor_id"].as_str().unwrap().to_owned();

    let r = app.login("bea@example.com", PASSWORD).await;
    let step: Value = r.json().await.unwrap();
    assert_eq!(step["mfa_required"], true, "{step}");
    let offered: Vec<&str> = step["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"passkey"), "{step}");
    let mfa_token = step["mfa_token"].as_str().unwrap();

    // A code is not what a passkey factor takes.
    let (status, p) = problem(
        app.post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": mfa_token, "factor_id": factor, "code": "123456"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["field"], "credential", "{p}");

    let r = app
        .post(
            "/v1/auth/mfa/challenge",
            json!({"mfa_token": mfa_token, "factor_id": factor}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let challenge: Value = r.json().await.unwrap();
    assert_eq!(
        challenge["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let assertion = key.get(&challenge["publicKey"]).await;
    let r = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": mfa_token, "factor_id": factor, "credential": assertion}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let c = claims(pair["access_token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["pwd", "hwk"]));
    assert_eq!(c["acr"], "aal2");

    // Step-up of the session opened before the passkey existed (aal1).
    assert_eq!(
        app.delete_bearer(&format!("/v1/users/me/mfa/{factor}"), &aal1)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = app
        .post_bearer(
            "/v1/auth/mfa/challenge",
            &aal1,
            Some(json!({"factor_id": factor})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let challenge: Value = r.json().await.unwrap();
    let assertion = key.get(&challenge["publicKey"]).await;
    // An answer to the step-up options does not finish someone's login challenge.
    let r = app.login("bea@example.com", PASSWORD).await;
    let other: Value = r.json().await.unwrap();
    let (status, p) = problem(
        app.post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": other["mfa_token"], "factor_id": factor, "credential": assertion.clone()}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    let challenge: Value = app
        .post_bearer(
            "/v1/auth/mfa/challenge",
            &aal1,
            Some(json!({"factor_id": factor})),
        )
        .await
        .json()
        .await
        .unwrap();
    let assertion = key.get(&challenge["publicKey"]).await;
    let r = app
        .post_bearer(
            "/v1/auth/step-up",
            &aal1,
            Some(json!({"factor_id": factor, "credential": assertion})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let up: Value = r.json().await.unwrap();
    let stepped = up["access_token"].as_str().unwrap();
    let c = claims(stepped);
    assert_eq!(c["amr"], json!(["pwd", "hwk"]));
    assert_eq!(c["acr"], "aal2");

    // Removed with aal2, the passkey no longer logs in.
    assert_eq!(
        app.delete_bearer(&format!("/v1/users/me/mfa/{factor}"), stepped)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (_, r) = passkey_login(&app, &mut key).await;
    let (status, p) = problem(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "invalid_credentials", "{p}");
}

#[actix_web::test]
async fn a_password_only_session_cannot_add_a_passkey_beside_a_totp_factor() {
    // supabase discussion #51228: a password-only session registered the passkey that then
    // counted as the second factor.
    let app = spawn_app().await;
    let (_, aal1) = member(&app, "cal@example.com").await;
    let r = app.post_bearer("/v1/users/me/mfa/totp", &aal1, None).await;
    let secret = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = crate::mfa::totp_code(&app, &secret);
    let r = app
        .post_bearer(
            "/v1/users/me/mfa/totp/confirm",
            &aal1,
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = app
        .post_bearer("/v1/users/me/passkeys/options", &aal1, Some(json!({})))
        .await;
    let (status, p) = problem(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(p["code"], "step_up_required");
    // Not with a credential made for other options either.
    let mut device = Device::new(&app);
    let (_, other) = member(&app, "dan@example.com").await;
    let public_key = options(&app, "/v1/users/me/passkeys/options", Some(&other)).await;
    let credential = device.create(&public_key).await;
    let (status, _) = problem(
        app.post_bearer("/v1/users/me/passkeys", &aal1, Some(credential.clone()))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let list = factors(&app, &aal1).await;
    assert_eq!(list["factors"].as_array().unwrap().len(), 1, "{list}");
}

#[actix_web::test]
async fn a_passkey_login_of_a_totp_user_is_not_left_below_the_level_totp_demands() {
    // ory/kratos#4285: a passwordless login left the account below the level its TOTP
    // demanded. A passkey login is aal2 by itself, so what aal2 guards is open to it, and a
    // password alone still is not.
    let app = spawn_app().await;
    let (_, aal1) = member(&app, "eve@example.com").await;
    let mut phone = Device::new(&app);
    register(&app, &mut phone, &aal1, "Phone").await;
    let (_, r) = passkey_login(&app, &mut phone).await;
    let pair: Value = r.json().await.unwrap();
    let aal2 = pair["access_token"].as_str().unwrap().to_owned();
    let r = app.post_bearer("/v1/users/me/mfa/totp", &aal2, None).await;
    assert_eq!(r.status(), StatusCode::OK, "aal2 may add a factor");
    let secret = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = crate::mfa::totp_code(&app, &secret);
    let r = app
        .post_bearer(
            "/v1/users/me/mfa/totp/confirm",
            &aal2,
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "not the first factor");

    let (_, r) = passkey_login(&app, &mut phone).await;
    let pair: Value = r.json().await.unwrap();
    let c = claims(pair["access_token"].as_str().unwrap());
    assert_eq!(c["acr"], "aal2", "{c}");
    let r = app
        .post_bearer(
            "/v1/auth/password/change",
            pair["access_token"].as_str().unwrap(),
            Some(json!({"current_password": PASSWORD, "new_password": "quiet harbour compass"})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    // The password alone still asks for the second step.
    let r = app.login("eve@example.com", "quiet harbour compass").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
}

#[actix_web::test]
async fn a_credential_from_another_origin_or_a_cloned_authenticator_is_refused() {
    let app = spawn_app().await;
    let (_, token) = member(&app, "fay@example.com").await;
    // A page on another port of localhost: the RP ID fits, the origin is not Keyward's.
    let mut elsewhere = Device::on("http://localhost:1");
    let public_key = options(&app, "/v1/users/me/passkeys/options", Some(&token)).await;
    let credential = elsewhere.create(&public_key).await;
    let (status, p) = problem(
        app.post_bearer("/v1/users/me/passkeys", &token, Some(credential))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["code"], "invalid_credential", "{p}");

    let mut key = Device::new(&app);
    register(&app, &mut key, &token, "Key").await;
    let copy = key.clone();
    for _ in 0..2 {
        let (_, r) = passkey_login(&app, &mut key).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The copy's signature counter is behind the one Keyward saw last.
    let mut clone = copy;
    let (_, r) = passkey_login(&app, &mut clone).await;
    let (status, p) = problem(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
}
