//! Social login against a real OpenID provider on the loopback (npm oidc-provider, started by
//! `scripts/services.sh oidc`): the browser's part is driven over HTTP, the provider's login
//! form included.

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{claims, member, problem, spawn_app_with, Options, TestApp, PASSWORD};
use crate::mfa::six_digits;

pub(crate) const APP: &str = "https://app.example/done";

fn issuer() -> String {
    std::env::var("KEYWARD_TEST_OIDC_ISSUER")
        .expect("needs KEYWARD_TEST_OIDC_ISSUER: run under scripts/services.sh oidc")
}

/// Keyward's client at the provider.
struct Registered {
    id: String,
    secret: String,
    callback: String,
}

/// A node with the provider `acme`, registered at the OpenID provider as a client of its own.
async fn oidc_app(issuer: String) -> TestApp {
    oidc_app_and_client(issuer).await.0
}

async fn oidc_app_and_client(issuer: String) -> (TestApp, Registered) {
    app_of_kind(issuer, "oidc").await
}

/// A node whose provider `acme` is of `kind` (`oidc`, or the `google` preset pointed at the
/// test provider through its issuer).
async fn app_of_kind(issuer: String, kind: &'static str) -> (TestApp, Registered) {
    app_with_native_apps(issuer, kind, vec![]).await
}

/// A client registered at the OpenID provider, redirecting to `callback`.
async fn register_client(issuer: &str, callback: &str) -> Registered {
    let reg: Value = reqwest::Client::new()
        .post(format!("{issuer}/reg"))
        .json(&json!({
            "redirect_uris": [callback],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Registered {
        id: reg["client_id"].as_str().unwrap().to_owned(),
        secret: reg["client_secret"].as_str().unwrap().to_owned(),
        callback: callback.to_owned(),
    }
}

/// As [`app_of_kind`], with `native` as the native apps' client ids.
async fn app_with_native_apps(
    issuer: String,
    kind: &'static str,
    native: Vec<String>,
) -> (TestApp, Registered) {
    let port = crate::distributed::free_port();
    let callback = format!("http://127.0.0.1:{port}/v1/auth/oauth/acme/callback");
    let client = register_client(&issuer, &callback).await;
    let (id, secret) = (client.id.clone(), client.secret.clone());
    let native_client_ids = (!native.is_empty()).then(|| native.join(","));
    let app = spawn_app_with(Options {
        settings: Some(Box::new(move |s| {
            s.bind = format!("127.0.0.1:{port}");
            s.oauth.redirect_allowlist = APP.into();
            s.oauth.providers.insert(
                "acme".into(),
                keyward_config::ProviderSettings {
                    kind: kind.into(),
                    issuer: Some(issuer),
                    client_id: Some(id),
                    client_secret: Some(secret.into()),
                    native_client_ids,
                    ..Default::default()
                },
            );
        })),
        ..Options::default()
    })
    .await;
    (app, client)
}

/// A browser: cookies kept, redirects looked at one by one.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn location(r: &reqwest::Response) -> url::Url {
    let raw = r
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("{} without a Location", r.status()))
        .to_str()
        .unwrap();
    r.url().join(raw).unwrap()
}

/// Starts a sign-in at Keyward and logs in at the provider as `login`: the provider's
/// redirect to Keyward's callback (not yet followed).
async fn at_provider(app: &TestApp, b: &reqwest::Client, login: &str) -> url::Url {
    let r = b
        .get(format!(
            "{}/v1/auth/oauth/acme/start?redirect_uri={APP}&state=app-state-1",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    through_provider(app, b, location(&r), login).await
}

/// The browser at the provider's authorization URL, logging in as `login`: the redirect back
/// to Keyward's callback.
async fn through_provider(
    app: &TestApp,
    b: &reqwest::Client,
    to_provider: url::Url,
    login: &str,
) -> url::Url {
    let q: std::collections::HashMap<_, _> = to_provider.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(
        q.contains_key("nonce") && q.contains_key("state"),
        "{to_provider}"
    );
    let r = b.get(to_provider).send().await.unwrap();
    let interaction = location(&r);
    // Signed in at the provider already: straight back.
    if interaction.as_str().starts_with(&app.base) {
        return interaction;
    }
    let r = b
        .post(interaction)
        .form(&[("prompt", "login"), ("login", login), ("password", "x")])
        .send()
        .await
        .unwrap();
    let resume = location(&r);
    let r = b.get(resume).send().await.unwrap();
    let back = location(&r);
    assert!(back.as_str().starts_with(&app.base), "{back}");
    back
}

/// The whole browser part: the app's redirect URI with its query.
async fn sign_in(app: &TestApp, login: &str) -> url::Url {
    let b = browser();
    let back = at_provider(app, &b, login).await;
    let r = b.get(back).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    location(&r)
}

/// The app's side: the one-time code of its redirect, exchanged for tokens.
pub(crate) async fn exchange(app: &TestApp, done: &url::Url) -> Value {
    let code = param(done, "code").unwrap_or_else(|| panic!("no code: {done}"));
    let r = app
        .post("/v1/auth/oauth/exchange", json!({"code": code}))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{done}");
    r.json().await.unwrap()
}

/// A native app's sign-in: POST /v1/auth/oauth with `body`.
pub(crate) async fn native(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/v1/auth/oauth", body).await
}

/// GET /v1/users/me with the access token of `pair`.
pub(crate) async fn me(app: &TestApp, pair: &Value) -> Value {
    app.get_bearer("/v1/users/me", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap()
}

pub(crate) fn param(u: &url::Url, k: &str) -> Option<String> {
    u.query_pairs()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.into_owned())
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn a_new_user_signs_in_at_an_openid_provider_and_the_app_gets_tokens_through_a_one_time_code()
{
    let app = oidc_app(issuer()).await;
    let done = sign_in(&app, "ann").await;
    assert!(done.as_str().starts_with(APP), "{done}");
    assert_eq!(param(&done, "state").as_deref(), Some("app-state-1"));
    assert!(
        !done.as_str().contains("access_token") && !done.as_str().contains("eyJ"),
        "no token in a URL: {done}"
    );
    let code = param(&done, "code").expect("a one-time code");

    let r = app
        .post("/v1/auth/oauth/exchange", json!({"code": code}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["amr"],
        json!(["fed"])
    );
    let ann = me(&app, &pair).await;
    assert_eq!(ann["email"], "ann@example.com");
    // The provider's picture becomes the avatar, through the pipeline, in the background.
    let mut avatar = Value::Null;
    for _ in 0..100 {
        let profile: Value = app
            .get_bearer("/v1/users/me", pair["access_token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        avatar = profile["avatar"].clone();
        if !avatar.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let small = avatar["64"]
        .as_str()
        .unwrap_or_else(|| panic!("no avatar: {avatar}"));
    let r = reqwest::get(small).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{small}");
    assert_eq!(ann["email_verified"], true, "as the provider asserts");
    assert_eq!(ann["username"], "ann", "from the email's local part");
    let registered = app.events_of_type("user.registered").await;
    assert_eq!(
        registered[0]["data"]["method"], "oauth:acme",
        "{registered:?}"
    );
    assert_eq!(app.events_of_type("identity.linked").await.len(), 1);

    // The code is single use.
    let (status, p) = problem(
        app.post("/v1/auth/oauth/exchange", json!({"code": code}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["code"], "invalid_code");

    // The same identity again: the same account, no second registration.
    let pair = exchange(&app, &sign_in(&app, "ann").await).await;
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["sub"],
        ann["id"]
    );
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);

    // Another person whose email starts the same: a free variant of the name.
    let other = me(
        &app,
        &exchange(&app, &sign_in(&app, "ann@other.example").await).await,
    )
    .await;
    let name = other["username"].as_str().unwrap();
    assert!(name.starts_with("ann") && name != "ann", "{other}");

    // A provider that does not vouch for the email: the account starts unverified.
    let bob = me(
        &app,
        &exchange(&app, &sign_in(&app, "unverified-bob").await).await,
    )
    .await;
    assert_eq!(bob["email_verified"], false);

    // A code older than 60 seconds.
    let done = sign_in(&app, "ann").await;
    app.advance(61);
    let r = app
        .post(
            "/v1/auth/oauth/exchange",
            json!({"code": param(&done, "code").unwrap()}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn a_replayed_callback_a_tampered_state_and_a_foreign_redirect_are_refused() {
    let app = oidc_app(issuer()).await;
    let b = browser();
    let back = at_provider(&app, &b, "cy").await;
    assert_eq!(
        b.get(back.clone()).send().await.unwrap().status(),
        StatusCode::FOUND
    );
    let (status, p) = problem(b.get(back.clone()).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a replayed callback: {p}");
    assert_eq!(p["errors"][0]["code"], "invalid_state");

    let mut tampered = at_provider(&app, &b, "cy").await;
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, _) = problem(b.get(tampered).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a tampered state");

    // A provider code delivered with another sign-in's state: that flow's PKCE verifier does
    // not fit the code, so the provider refuses it.
    let first = at_provider(&app, &b, "cy").await;
    let second = at_provider(&app, &b, "cy").await;
    let mut mixed = second.clone();
    let code = param(&first, "code").unwrap();
    let state = param(&second, "state").unwrap();
    mixed
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let r = b.get(mixed).send().await.unwrap();
    let to_app = location(&r);
    assert_eq!(param(&to_app, "error").as_deref(), Some("provider_error"));
    assert!(param(&to_app, "code").is_none());

    // The ID token's nonce must be the flow's: with the stored nonce changed behind the
    // provider's back, the token (carrying the original) is refused and nobody signs in.
    let b2 = browser();
    let back = at_provider(&app, &b2, "nia").await;
    use sea_orm::ConnectionTrait as _;
    app.db
        .execute_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "UPDATE oauth_flows SET nonce = 'not-the-nonce-sent'",
        ))
        .await
        .unwrap();
    let to_app = location(&b2.get(back).send().await.unwrap());
    assert_eq!(
        param(&to_app, "error").as_deref(),
        Some("provider_error"),
        "a wrong nonce: {to_app}"
    );
    let nia = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT id FROM users WHERE email = 'nia@example.com'",
        ))
        .await
        .unwrap();
    assert!(nia.is_empty(), "no account made");

    let r = browser()
        .get(format!(
            "{}/v1/auth/oauth/acme/start?redirect_uri=https://evil.example/steal",
            app.base
        ))
        .send()
        .await
        .unwrap();
    let (status, p) = problem(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["code"], "redirect_not_allowed");
    let r = browser()
        .get(format!(
            "{}/v1/auth/oauth/nope/start?redirect_uri={APP}",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn an_identity_with_a_verified_accounts_email_links_only_after_its_password() {
    let app = oidc_app(issuer()).await;
    let (dee_id, _) = member(&app, "dee@example.com").await;
    let dee_id = json!(dee_id);
    let done = sign_in(&app, "dee").await;
    assert_eq!(param(&done, "error").as_deref(), Some("account_exists"));
    assert!(param(&done, "code").is_none(), "never signed in silently");
    let link_token = param(&done, "link_token").expect("a way to prove the account");
    assert!(app.events_of_type("identity.linked").await.is_empty());

    let (status, p) = problem(
        app.post(
            "/v1/auth/oauth/link",
            json!({"link_token": link_token, "password": "not-the-password"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "invalid_credentials");
    let (status, p) = problem(
        app.post(
            "/v1/auth/oauth/link",
            json!({"link_token": link_token, "password": PASSWORD, "code": "123456"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "exactly one proof: {p}");

    let r = app
        .post(
            "/v1/auth/oauth/link",
            json!({"link_token": link_token, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let c = claims(pair["access_token"].as_str().unwrap());
    assert_eq!(
        (c["sub"].clone(), c["amr"].clone()),
        (dee_id.clone(), json!(["fed"]))
    );
    assert_eq!(app.events_of_type("identity.linked").await.len(), 1);

    // Used once; and from now on the identity signs in to the account directly.
    let (status, p) = problem(
        app.post(
            "/v1/auth/oauth/link",
            json!({"link_token": link_token, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["code"], "invalid_link_token");
    let pair = exchange(&app, &sign_in(&app, "dee").await).await;
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["sub"],
        dee_id
    );
    // The password account is untouched.
    assert_eq!(
        app.login("dee@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn a_code_to_the_accounts_email_links_only_the_identity_it_was_sent_for() {
    let app = oidc_app(issuer()).await;
    let (fay_id, fay_token) = member(&app, "fay@example.com").await;
    // Two identities at the provider with fay's email, two pending links.
    let first = param(&sign_in(&app, "fay").await, "link_token").unwrap();
    let second = param(&sign_in(&app, "fay@example.com").await, "link_token").unwrap();
    let r = app
        .post("/v1/auth/oauth/link/code", json!({"link_token": first}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(sent["expires_in"], 600);
    let mail = app
        .wait_for_mail_n("fay@example.com", "Link a sign-in to your account", 1)
        .await;
    assert!(mail.text.contains("acme"), "{}", mail.text);
    let code = six_digits(&mail.text);
    // At most one code a minute.
    let r = app
        .post("/v1/auth/oauth/link/code", json!({"link_token": first}))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // The code proves fay's email for the first identity only.
    let (status, p) = problem(
        app.post(
            "/v1/auth/oauth/link",
            json!({"link_token": second, "code": code}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["code"], "invalid_code");
    let r = app
        .post(
            "/v1/auth/oauth/link",
            json!({"link_token": first, "code": code}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["sub"],
        json!(fay_id)
    );
    let ids: Value = app
        .get_bearer("/v1/users/me/identities", &fay_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids["identities"].as_array().unwrap().len(), 1, "{ids}");

    // Wrong answers use a pending link up: after five it is gone, even for the right one.
    for _ in 0..5 {
        let r = app
            .post(
                "/v1/auth/oauth/link",
                json!({"link_token": second, "code": "000000"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    let (_, p) = problem(
        app.post(
            "/v1/auth/oauth/link",
            json!({"link_token": second, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(p["errors"][0]["code"], "invalid_link_token", "{p}");
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn an_unverified_registration_never_reaches_the_emails_owner_who_comes_with_a_provider() {
    let app = oidc_app(issuer()).await;
    // Someone registers eve's address with a password of their own and never verifies it.
    let r = app
        .post(
            "/v1/auth/register",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let registered = app.events_of_type("user.registered").await;
    let squatter = registered[0]["data"]["user_id"].clone();
    assert_eq!(registered[0]["data"]["email"], "eve@example.com");

    // Eve signs in with a provider that vouches for her address: a new account, and the
    // unproved registration is erased, so nothing its maker set up reaches her.
    let done = sign_in(&app, "eve").await;
    let pair = exchange(&app, &done).await;
    let eve = me(&app, &pair).await;
    assert_ne!(eve["id"], squatter);
    assert_eq!(eve["email_verified"], true);
    let deleted = app.events_of_type("user.deleted").await;
    assert_eq!(deleted[0]["data"]["user_id"], squatter, "{deleted:?}");
    assert_eq!(
        app.login("eve@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "the squatter's password opens nothing"
    );

    // A provider that does not vouch for the address proves nothing: no account, no link.
    let r = app
        .post(
            "/v1/auth/register",
            json!({"email": "unverified-uma@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let done = sign_in(&app, "unverified-uma").await;
    assert_eq!(param(&done, "error").as_deref(), Some("account_exists"));
    assert!(
        param(&done, "link_token").is_none(),
        "never to an unverified account"
    );
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn a_signed_in_user_links_another_identity_and_signs_in_with_it() {
    let app = oidc_app(issuer()).await;
    let (gus_id, gus) = member(&app, "gus@example.com").await;
    let (_, hal) = member(&app, "hal@example.com").await;
    let start = |token: String, body: Value| {
        let app = &app;
        async move {
            app.post_bearer("/v1/users/me/identities/acme/start", &token, Some(body))
                .await
        }
    };
    let r = app
        .post(
            "/v1/users/me/identities/acme/start",
            json!({"redirect_uri": APP}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, p) = problem(
        start(
            gus.clone(),
            json!({"redirect_uri": "https://evil.example/x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["code"], "redirect_not_allowed");

    let r = start(gus.clone(), json!({"redirect_uri": APP, "state": "s-9"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let url: Value = r.json().await.unwrap();
    let to_provider = url::Url::parse(url["authorization_url"].as_str().unwrap()).unwrap();
    let b = browser();
    let back = through_provider(&app, &b, to_provider, "gus-at-work@corp.example").await;
    let r = b.get(back).send().await.unwrap();
    let done = location(&r);
    assert_eq!(param(&done, "linked").as_deref(), Some("acme"), "{done}");
    assert_eq!(param(&done, "state").as_deref(), Some("s-9"));
    assert!(param(&done, "code").is_none());
    assert_eq!(app.events_of_type("identity.linked").await.len(), 1);

    // That identity now signs in to gus's account (its email is not gus's).
    let pair = exchange(&app, &sign_in(&app, "gus-at-work@corp.example").await).await;
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["sub"],
        json!(gus_id)
    );

    // Another account cannot take it.
    let r = start(hal, json!({"redirect_uri": APP})).await;
    let url: Value = r.json().await.unwrap();
    let to_provider = url::Url::parse(url["authorization_url"].as_str().unwrap()).unwrap();
    let b = browser();
    let back = through_provider(&app, &b, to_provider, "gus-at-work@corp.example").await;
    let done = location(&b.get(back).send().await.unwrap());
    assert_eq!(
        param(&done, "error").as_deref(),
        Some("identity_in_use"),
        "{done}"
    );
    assert_eq!(app.events_of_type("identity.linked").await.len(), 1);
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn the_google_preset_signs_in_as_any_openid_provider_does() {
    let (app, _) = app_of_kind(issuer(), "google").await;
    let pair = exchange(&app, &sign_in(&app, "gwen").await).await;
    let gwen = me(&app, &pair).await;
    assert_eq!(gwen["email"], "gwen@example.com");
    assert_eq!(gwen["email_verified"], true);
}

#[actix_web::test]
async fn a_provider_that_does_not_answer_is_a_503_and_starts_nothing() {
    let port = crate::distributed::free_port();
    let app = spawn_app_with(Options {
        settings: Some(Box::new(move |s| {
            s.oauth.redirect_allowlist = APP.into();
            s.oauth.providers.insert(
                "acme".into(),
                keyward_config::ProviderSettings {
                    kind: "oidc".into(),
                    issuer: Some(format!("http://127.0.0.1:{port}")),
                    client_id: Some("keyward".into()),
                    client_secret: Some("secret".to_owned().into()),
                    ..Default::default()
                },
            );
        })),
        ..Options::default()
    })
    .await;
    let r = browser()
        .get(format!(
            "{}/v1/auth/oauth/acme/start?redirect_uri={APP}",
            app.base
        ))
        .send()
        .await
        .unwrap();
    let (status, p) = problem(r).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(p["code"], "provider_unavailable");
}

/// What a native app's provider SDK does: the code flow with PKCE straight at the provider,
/// as `login`, with `nonce`: the ID token it gets.
async fn sdk_id_token(issuer: &str, client: &Registered, login: &str, nonce: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let verifier = format!("v{}", uuid::Uuid::new_v4().simple()).repeat(2);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut auth = url::Url::parse(&format!("{issuer}/auth")).unwrap();
    auth.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", &client.callback)
        .append_pair("scope", "openid email profile")
        .append_pair("state", "sdk")
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let b = browser();
    let r = b.get(auth).send().await.unwrap();
    let interaction = location(&r);
    let r = b
        .post(interaction)
        .form(&[("prompt", "login"), ("login", login), ("password", "x")])
        .send()
        .await
        .unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    let code = param(&location(&r), "code").unwrap();
    let tokens: Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", client.callback.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"].as_str().unwrap().to_owned()
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn a_native_app_signs_in_with_its_sdks_id_token_once() {
    let issuer = issuer();
    let (app, client) = oidc_app_and_client(issuer.clone()).await;
    let id_token = sdk_id_token(&issuer, &client, "fox", "n-1").await;
    let r = native(
        &app,
        json!({"provider": "acme", "id_token": id_token, "nonce": "n-1"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["amr"],
        json!(["fed"])
    );

    // The same token again: refused, it signs in once.
    let (status, p) =
        problem(native(&app, json!({"provider": "acme", "id_token": id_token})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "invalid_id_token");

    // Another token of the same identity reaches the same account.
    let again = sdk_id_token(&issuer, &client, "fox", "n-2").await;
    let pair2: Value = native(&app, json!({"provider": "acme", "id_token": again}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(pair2["access_token"].as_str().unwrap())["sub"],
        claims(pair["access_token"].as_str().unwrap())["sub"]
    );

    // A wrong nonce, a forged signature, an unknown provider, no id_token.
    let other = sdk_id_token(&issuer, &client, "fox", "n-3").await;
    let (status, _) = problem(
        native(
            &app,
            json!({"provider": "acme", "id_token": other, "nonce": "n-4"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong nonce");
    let fresh = sdk_id_token(&issuer, &client, "fox", "n-5").await;
    let (head, sig) = fresh.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &sig[1..]);
    let (status, _) =
        problem(native(&app, json!({"provider": "acme", "id_token": forged})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a forged signature");
    let (status, _) =
        problem(native(&app, json!({"provider": "nope", "id_token": fresh})).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, p) =
        problem(native(&app, json!({"provider": "acme", "access_token": "at"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["field"], "id_token", "{p}");

    // An identity with a verified account's email: a 409 whose link_token proves the account.
    member(&app, "ivy@example.com").await;
    let token = sdk_id_token(&issuer, &client, "ivy", "n-6").await;
    let (status, p) =
        problem(native(&app, json!({"provider": "acme", "id_token": token})).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["code"], "account_exists");
    let r = app
        .post(
            "/v1/auth/oauth/link",
            json!({"link_token": p["link_token"], "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn identities_are_listed_and_the_last_way_to_log_in_is_not_unlinked() {
    let app = oidc_app(issuer()).await;
    let pair = exchange(&app, &sign_in(&app, "gil").await).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let list: Value = app
        .get_bearer("/v1/users/me/identities", &token)
        .await
        .json()
        .await
        .unwrap();
    let ids = list["identities"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{list}");
    assert_eq!(ids[0]["provider"], "acme");
    assert_eq!(ids[0]["email"], "gil@example.com");
    let id = ids[0]["id"].as_str().unwrap().to_owned();
    let user_id = claims(&token)["sub"].as_str().unwrap().to_owned();
    let (_, root) = crate::helpers::admin(&app).await;
    let detail: Value = app
        .get_bearer(&format!("/v1/admin/users/{user_id}"), &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["identities"][0]["provider"], "acme", "{detail}");

    // Its only way in: the password is one nobody knows.
    let (status, p) = problem(
        app.delete_bearer(&format!("/v1/users/me/identities/{id}"), &token)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["code"], "last_login_method");

    // With a password of its own (set through the reset mail), it may go.
    let r = app
        .post(
            "/v1/auth/password/forgot",
            json!({"email": "gil@example.com"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mail = app
        .wait_for_mail_n("gil@example.com", "Reset your password", 1)
        .await;
    let r = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": mail.token(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let pair = app.login_ok("gil@example.com", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.delete_bearer(&format!("/v1/users/me/identities/{id}"), token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.events_of_type("identity.unlinked").await.len(), 1);
    let list: Value = app
        .get_bearer("/v1/users/me/identities", token)
        .await
        .json()
        .await
        .unwrap();
    assert!(list["identities"].as_array().unwrap().is_empty());
    // Unlinked, the identity no longer reaches the account by itself.
    let done = sign_in(&app, "gil").await;
    assert_eq!(param(&done, "error").as_deref(), Some("account_exists"));
    assert!(param(&done, "link_token").is_some());
}

#[actix_web::test]
#[ignore = "needs an OpenID provider (scripts/services.sh oidc -- cargo test --test api -- --include-ignored)"]
async fn a_native_apps_id_token_is_accepted_for_a_configured_native_client_id_only() {
    let issuer = issuer();
    let ios = register_client(&issuer, "http://127.0.0.1/ios").await;
    let stranger = register_client(&issuer, "http://127.0.0.1/other").await;
    let (app, _) = app_with_native_apps(issuer.clone(), "google", vec![ios.id.clone()]).await;
    let token = sdk_id_token(&issuer, &ios, "ned", "n-1").await;
    let r = native(
        &app,
        json!({"provider": "acme", "id_token": token, "nonce": "n-1"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "the product's own iOS app");
    let theirs = sdk_id_token(&issuer, &stranger, "ned", "n-2").await;
    let (status, p) =
        problem(native(&app, json!({"provider": "acme", "id_token": theirs})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another app's token: {p}");
    assert_eq!(p["code"], "invalid_id_token");
    // A configured native app's token with a wrong nonce is still refused.
    let token = sdk_id_token(&issuer, &ios, "ned", "n-3").await;
    let (status, _) = problem(
        native(
            &app,
            json!({"provider": "acme", "id_token": token, "nonce": "n-4"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
