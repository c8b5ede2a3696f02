//! Social login through the plain OAuth 2 kinds. VK ID and Yandex ID run against doubles in
//! this file that follow their published API descriptions (always run); GitHub and a generic
//! `oauth2` provider against npm oauth2-mock-server with GitHub's paths (`scripts/services.sh
//! oauth2`). The browser's part is driven over HTTP, redirects looked at one by one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::federation::{browser, exchange, location, me, native, param, APP};
use crate::helpers::{claims, problem, spawn_app_with, Options, TestApp};

// ---------------------------------------------------------------------------------------------
// The browser and the app

/// `u` with its query parameter `k` changed by `f` (None drops it).
fn with_param(u: &url::Url, k: &str, f: impl Fn(&str) -> Option<String>) -> url::Url {
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(key, v)| {
            if key == k {
                f(&v).map(|v| (key.into_owned(), v))
            } else {
                Some((key.into_owned(), v.into_owned()))
            }
        })
        .collect();
    let mut out = u.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// A node whose provider `name` is `p`; its callback is at a port known beforehand.
async fn app_with(name: &str, p: keyward_config::ProviderSettings) -> TestApp {
    let port = crate::distributed::free_port();
    let name = name.to_owned();
    spawn_app_with(Options {
        settings: Some(Box::new(move |s| {
            s.bind = format!("127.0.0.1:{port}");
            s.oauth.redirect_allowlist = APP.into();
            s.oauth.providers.insert(name, p);
        })),
        ..Options::default()
    })
    .await
}

/// Starts a sign-in at Keyward and signs in at the provider as `login` (the provider doubles
/// take the account from a `login` parameter instead of a form): the provider's redirect to
/// Keyward's callback, not yet followed.
async fn at_provider(app: &TestApp, b: &reqwest::Client, provider: &str, login: &str) -> url::Url {
    let r = b
        .get(format!(
            "{}/v1/auth/oauth/{provider}/start?redirect_uri={APP}&state=app-state-1",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let mut to_provider = location(&r);
    let q: HashMap<_, _> = to_provider.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code", "{to_provider}");
    assert_eq!(q["code_challenge_method"], "S256", "{to_provider}");
    assert!(
        q.contains_key("state") && q.contains_key("code_challenge"),
        "{to_provider}"
    );
    to_provider.query_pairs_mut().append_pair("login", login);
    let r = b.get(to_provider).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = location(&r);
    assert!(back.as_str().starts_with(&app.base), "{back}");
    back
}

/// The whole browser part: the app's redirect URI with its query.
async fn sign_in(app: &TestApp, provider: &str, login: &str) -> url::Url {
    let b = browser();
    let back = at_provider(app, &b, provider, login).await;
    let r = b.get(back).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    location(&r)
}

/// What a first sign-in as some login must make.
struct Expect<'a> {
    email: &'a str,
    email_verified: bool,
    username: &'a str,
}

/// A first sign-in makes an account (with the identity listed), a second reaches it; a code
/// older than 60 seconds is refused; a replayed callback and a tampered state are refused.
async fn signs_in_and_refuses_replays(
    app: &TestApp,
    provider: &str,
    login: &str,
    want: Expect<'_>,
) {
    let done = sign_in(app, provider, login).await;
    assert!(done.as_str().starts_with(APP), "{done}");
    assert_eq!(param(&done, "state").as_deref(), Some("app-state-1"));
    assert!(
        !done.as_str().contains("access_token"),
        "no token in a URL: {done}"
    );
    let pair = exchange(app, &done).await;
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["amr"], json!(["fed"]));
    let user = me(app, &pair).await;
    assert_eq!(user["email"], want.email, "{user}");
    assert_eq!(user["email_verified"], want.email_verified, "{user}");
    assert_eq!(user["username"], want.username, "{user}");
    let list: Value = app
        .get_bearer("/v1/users/me/identities", access)
        .await
        .json()
        .await
        .unwrap();
    let ids = list["identities"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{list}");
    assert_eq!(ids[0]["provider"], provider);
    assert_eq!(ids[0]["email"], want.email);
    assert_eq!(ids[0]["email_verified"], want.email_verified);
    let registered = app.events_of_type("user.registered").await;
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["data"]["method"], format!("oauth:{provider}"));
    assert_eq!(app.events_of_type("identity.linked").await.len(), 1);

    // The same identity again: the same account, no second registration.
    let again = exchange(app, &sign_in(app, provider, login).await).await;
    assert_eq!(
        claims(again["access_token"].as_str().unwrap())["sub"],
        user["id"]
    );
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);

    // A replayed callback finds its sign-in gone.
    let b = browser();
    let back = at_provider(app, &b, provider, login).await;
    assert_eq!(
        b.get(back.clone()).send().await.unwrap().status(),
        StatusCode::FOUND
    );
    let (status, p) = problem(b.get(back).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a replayed callback: {p}");
    assert_eq!(p["errors"][0]["code"], "invalid_state");

    // A tampered state matches no sign-in.
    let back = at_provider(app, &b, provider, login).await;
    let tampered = with_param(&back, "state", |s| Some(format!("{s}x")));
    let (status, p) = problem(b.get(tampered).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a tampered state: {p}");
    assert_eq!(p["errors"][0]["code"], "invalid_state");

    // A one-time code older than 60 seconds.
    let done = sign_in(app, provider, login).await;
    app.advance(61);
    let (status, p) = problem(
        app.post(
            "/v1/auth/oauth/exchange",
            json!({"code": param(&done, "code").unwrap()}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["code"], "invalid_code");
}

/// The callback of a sign-in whose provider fails behind it: the app gets `provider_error`,
/// and nobody is registered.
async fn callback_gives_provider_error(app: &TestApp, b: &reqwest::Client, back: url::Url) {
    let r = b.get(back).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let to_app = location(&r);
    assert!(to_app.as_str().starts_with(APP), "{to_app}");
    assert_eq!(
        param(&to_app, "error").as_deref(),
        Some("provider_error"),
        "{to_app}"
    );
    assert!(param(&to_app, "code").is_none());
    assert!(app.events_of_type("user.registered").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Doubles of VK ID and Yandex ID

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// https://id.vk.com/about/business/go/docs/ru/vkid/latest/vk-id/connection/api-description
    Vk,
    /// https://yandex.ru/dev/id/doc/ru/ (authorization code, /token, /info)
    Yandex,
}

/// An authorization, kept until its code is exchanged.
struct Grant {
    login: String,
    challenge: String,
    redirect_uri: String,
    state: String,
    device_id: String,
}

#[derive(Default)]
struct Books {
    grants: HashMap<String, Grant>,
    /// access token → (login, the client it was issued to)
    tokens: HashMap<String, (String, String)>,
    /// Each token request's form.
    token_requests: Vec<HashMap<String, String>>,
}

struct Fake {
    shape: Shape,
    client_id: String,
    client_secret: String,
    down: AtomicBool,
    books: Mutex<Books>,
}

/// A provider double on a loopback port.
struct FakeProvider {
    base: String,
    fake: Arc<Fake>,
}

impl FakeProvider {
    fn start(shape: Shape, client_id: &str, client_secret: &str) -> FakeProvider {
        let fake = Arc::new(Fake {
            shape,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            down: AtomicBool::new(false),
            books: Mutex::default(),
        });
        let f = fake.clone();
        let server = HttpServer::new(move || {
            let app = App::new()
                .app_data(web::Data::new(f.clone()))
                .route("/authorize", web::get().to(authorize));
            match f.shape {
                Shape::Vk => app
                    .route("/oauth2/auth", web::post().to(vk_token))
                    // VK ID's user_info is POST only.
                    .route("/oauth2/user_info", web::post().to(vk_user_info)),
                Shape::Yandex => app
                    .route("/token", web::post().to(yandex_token))
                    .route("/info", web::get().to(yandex_info)),
            }
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        actix_rt::spawn(server.run());
        FakeProvider {
            base: format!("http://{addr}"),
            fake,
        }
    }

    /// What a native app's SDK got from the provider: an access token of `login`, issued to
    /// the app `client_id`.
    fn issue(&self, login: &str, client_id: &str) -> String {
        let token = format!("at-{}", uuid::Uuid::new_v4().simple());
        self.fake
            .books
            .lock()
            .unwrap()
            .tokens
            .insert(token.clone(), (login.to_owned(), client_id.to_owned()));
        token
    }

    fn set_down(&self, down: bool) {
        self.fake.down.store(down, Ordering::SeqCst);
    }

    fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.fake.books.lock().unwrap().token_requests.clone()
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"error": error, "error_description": description}))
}

fn unavailable() -> HttpResponse {
    oauth_error(503, "temporarily_unavailable", "down for the test")
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// A stable numeric id for a login.
fn numeric_id(login: &str) -> u64 {
    let d = sha2::Sha256::digest(login.as_bytes());
    u64::from_be_bytes([0, 0, 0, d[0], d[1], d[2], d[3], d[4]])
}

/// The address of `login`: none for `noemail…`, a Yandex mailbox for `ya…`.
fn email_of(login: &str) -> Option<String> {
    if login.starts_with("noemail") {
        None
    } else if login.starts_with("ya") {
        Some(format!("{login}@yandex.ru"))
    } else {
        Some(format!("{login}@example.com"))
    }
}

/// Both providers' authorization endpoint: checks the request as documented (code flow,
/// PKCE S256, state), and sends the browser back with a code at once.
async fn authorize(
    fake: web::Data<Arc<Fake>>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if fake.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let (Some(redirect_uri), Some(state), Some(challenge)) =
        (get("redirect_uri"), get("state"), get("code_challenge"))
    else {
        return oauth_error(
            400,
            "invalid_request",
            "redirect_uri, state and code_challenge are required",
        );
    };
    if get("response_type").as_deref() != Some("code")
        || get("client_id").as_deref() != Some(fake.client_id.as_str())
        || !get("code_challenge_method").is_some_and(|m| m.eq_ignore_ascii_case("s256"))
    {
        return oauth_error(
            400,
            "invalid_request",
            "response_type=code, the client_id and code_challenge_method=S256",
        );
    }
    let code = format!("c-{}", uuid::Uuid::new_v4().simple());
    let device_id = format!("d-{}", uuid::Uuid::new_v4().simple());
    let mut to = url::Url::parse(&redirect_uri).unwrap();
    {
        let mut pairs = to.query_pairs_mut();
        pairs
            .append_pair("code", &code)
            .append_pair("state", &state);
        if fake.shape == Shape::Vk {
            // VK ID's redirect: code, state, device_id, type, expires_in.
            pairs
                .append_pair("device_id", &device_id)
                .append_pair("type", "code_v2")
                .append_pair("expires_in", "600");
        }
    }
    fake.books.lock().unwrap().grants.insert(
        code,
        Grant {
            login: get("login").unwrap_or_else(|| "ann".to_owned()),
            challenge,
            redirect_uri,
            state,
            device_id,
        },
    );
    HttpResponse::Found()
        .insert_header(("location", to.to_string()))
        .finish()
}

/// The grant of a token request's code (taken: a code works once) if its code_verifier fits;
/// else the 400's error and description.
fn take_grant(
    fake: &Fake,
    form: &HashMap<String, String>,
) -> Result<Grant, (&'static str, &'static str)> {
    let mut books = fake.books.lock().unwrap();
    books.token_requests.push(form.clone());
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err(("unsupported_grant_type", "authorization_code"));
    }
    let Some(verifier) = form.get("code_verifier") else {
        return Err(("invalid_request", "code_verifier is required"));
    };
    let grant = form
        .get("code")
        .and_then(|c| books.grants.remove(c))
        .ok_or(("invalid_grant", "the code is unknown or used"))?;
    if s256(verifier) != grant.challenge {
        return Err((
            "invalid_grant",
            "code_verifier does not match code_challenge",
        ));
    }
    Ok(grant)
}

fn new_token(fake: &Fake, login: &str) -> String {
    let token = format!("at-{}", uuid::Uuid::new_v4().simple());
    fake.books
        .lock()
        .unwrap()
        .tokens
        .insert(token.clone(), (login.to_owned(), fake.client_id.clone()));
    token
}

/// VK ID `POST /oauth2/auth`: grant_type, code, code_verifier, client_id, device_id,
/// redirect_uri and state, all required; no client secret.
async fn vk_token(
    fake: web::Data<Arc<Fake>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    if fake.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let form = form.into_inner();
    let grant = match take_grant(&fake, &form) {
        Ok(g) => g,
        Err((error, description)) => return oauth_error(400, error, description),
    };
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("device_id") != Some(grant.device_id.as_str()) {
        return oauth_error(
            400,
            "invalid_request",
            "device_id is required and must be the redirect's",
        );
    }
    if field("client_id") != Some(fake.client_id.as_str())
        || field("redirect_uri") != Some(grant.redirect_uri.as_str())
        || field("state") != Some(grant.state.as_str())
    {
        return oauth_error(
            400,
            "invalid_request",
            "client_id, redirect_uri and state must be the authorization's",
        );
    }
    let token = new_token(&fake, &grant.login);
    HttpResponse::Ok().json(json!({
        "refresh_token": format!("rt-{}", uuid::Uuid::new_v4().simple()),
        "access_token": token,
        "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "token_type": "Bearer",
        "expires_in": 3600,
        "user_id": numeric_id(&grant.login),
        "state": grant.state,
        "scope": "email",
    }))
}

/// VK ID `POST /oauth2/user_info` with client_id and access_token in the body; a token works
/// only with the client it was issued to.
async fn vk_user_info(
    fake: web::Data<Arc<Fake>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    if fake.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let books = fake.books.lock().unwrap();
    let found = form
        .get("access_token")
        .and_then(|t| books.tokens.get(t))
        .filter(|(_, client)| Some(client) == form.get("client_id"));
    let Some((login, _)) = found else {
        return oauth_error(
            401,
            "invalid_token",
            "access token is missing, invalid or expired",
        );
    };
    let mut user = json!({
        "user_id": numeric_id(login).to_string(),
        "first_name": login,
        "last_name": "Test",
        "avatar": format!("https://avatars.vk.example/{login}.jpg"),
        "sex": 2,
        "verified": false,
        "birthday": "01.01.2000",
    });
    if let Some(e) = email_of(login) {
        user["email"] = json!(e);
    }
    HttpResponse::Ok().json(json!({ "user": user }))
}

/// Yandex `POST /token`: the client by HTTP Basic (or client_id and client_secret in the body),
/// grant_type, code and code_verifier.
async fn yandex_token(
    fake: web::Data<Arc<Fake>>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    if fake.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let form = form.into_inner();
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{}:{}", fake.client_id, fake.client_secret);
    let in_body = form.get("client_id") == Some(&fake.client_id)
        && form.get("client_secret") == Some(&fake.client_secret);
    if basic.as_deref() != Some(expected.as_str()) && !in_body {
        return oauth_error(401, "invalid_client", "Client not found");
    }
    let grant = match take_grant(&fake, &form) {
        Ok(g) => g,
        Err((error, description)) => return oauth_error(400, error, description),
    };
    let token = new_token(&fake, &grant.login);
    HttpResponse::Ok().json(json!({
        "token_type": "bearer",
        "access_token": token,
        "expires_in": 31_536_000,
        "refresh_token": format!("rt-{}", uuid::Uuid::new_v4().simple()),
    }))
}

/// Yandex `GET /info?format=json` with `Authorization: OAuth <token>`; answers for any app's
/// token, naming the app in `client_id`.
async fn yandex_info(
    fake: web::Data<Arc<Fake>>,
    req: HttpRequest,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if fake.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let books = fake.books.lock().unwrap();
    let found = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("OAuth "))
        .and_then(|t| books.tokens.get(t));
    let Some((login, client)) = found else {
        return HttpResponse::Unauthorized().body("OAuth token is invalid or expired");
    };
    if q.get("format").map(String::as_str) != Some("json") {
        return HttpResponse::BadRequest().body("this double speaks format=json only");
    }
    let id = numeric_id(login).to_string();
    let mut info = json!({
        "id": id,
        "login": login,
        "client_id": client,
        "display_name": login,
        "real_name": format!("{login} Test"),
        "first_name": login,
        "last_name": "Test",
        "sex": null,
        "default_avatar_id": format!("{}/{login}-1", id.len()),
        "is_avatar_empty": false,
        "psuid": format!("1.{id}"),
    });
    if let Some(e) = email_of(login) {
        info["default_email"] = json!(e);
        info["emails"] = json!([e]);
    }
    HttpResponse::Ok().json(info)
}

fn vk_settings(vk: &FakeProvider) -> keyward_config::ProviderSettings {
    keyward_config::ProviderSettings {
        kind: "vk".into(),
        client_id: Some(VK_CLIENT.into()),
        auth_url: Some(format!("{}/authorize", vk.base)),
        token_url: Some(format!("{}/oauth2/auth", vk.base)),
        userinfo_url: Some(format!("{}/oauth2/user_info", vk.base)),
        ..Default::default()
    }
}

fn yandex_settings(ya: &FakeProvider) -> keyward_config::ProviderSettings {
    keyward_config::ProviderSettings {
        kind: "yandex".into(),
        client_id: Some(YANDEX_CLIENT.into()),
        client_secret: Some(YANDEX_SECRET.to_owned().into()),
        auth_url: Some(format!("{}/authorize", ya.base)),
        token_url: Some(format!("{}/token", ya.base)),
        userinfo_url: Some(format!("{}/info", ya.base)),
        ..Default::default()
    }
}

const VK_CLIENT: &str = "51234567";
const YANDEX_CLIENT: &str = "4760187d81bc4b7799476b42b5103713";
const YANDEX_SECRET: &str = "ya-secret";

// ---------------------------------------------------------------------------------------------
// VK ID

#[actix_web::test]
async fn a_vk_id_sign_in_makes_an_account_the_next_one_reaches_and_replays_are_refused() {
    let vk = FakeProvider::start(Shape::Vk, VK_CLIENT, "");
    let app = app_with("vk", vk_settings(&vk)).await;
    signs_in_and_refuses_replays(
        &app,
        "vk",
        "ann",
        Expect {
            email: "ann@example.com",
            // VK ID does not say the address is confirmed.
            email_verified: false,
            username: "ann",
        },
    )
    .await;
    // The token request as VK ID documents it, without a client secret.
    let first = &vk.token_requests()[0];
    for k in [
        "grant_type",
        "code",
        "code_verifier",
        "client_id",
        "device_id",
        "redirect_uri",
        "state",
    ] {
        assert!(first.contains_key(k), "{k} in {first:?}");
    }
    assert!(!first.contains_key("client_secret"), "{first:?}");
}

#[actix_web::test]
async fn a_vk_id_callback_without_device_id_or_with_vk_down_makes_nobody() {
    let vk = FakeProvider::start(Shape::Vk, VK_CLIENT, "");
    let app = app_with("vk", vk_settings(&vk)).await;
    let b = browser();

    let back = at_provider(&app, &b, "vk", "bea").await;
    assert!(param(&back, "device_id").is_some(), "{back}");
    callback_gives_provider_error(&app, &b, with_param(&back, "device_id", |_| None)).await;
    assert!(
        vk.token_requests().is_empty(),
        "no token request without device_id"
    );

    let back = at_provider(&app, &b, "vk", "bea").await;
    vk.set_down(true);
    callback_gives_provider_error(&app, &b, back).await;
    vk.set_down(false);

    // Up again: the same person signs in.
    let done = sign_in(&app, "vk", "bea").await;
    assert!(param(&done, "code").is_some(), "{done}");
}

#[actix_web::test]
async fn a_native_app_signs_in_once_with_a_vk_id_access_token_of_its_own_client() {
    let vk = FakeProvider::start(Shape::Vk, VK_CLIENT, "");
    let app = app_with("vk", vk_settings(&vk)).await;
    let token = vk.issue("nat", VK_CLIENT);
    let r = native(&app, json!({"provider": "vk", "access_token": token})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["amr"],
        json!(["fed"])
    );
    let nat = me(&app, &pair).await;
    assert_eq!(nat["email"], "nat@example.com");
    assert_eq!(nat["email_verified"], false);

    // The same token again: it signs in once.
    let (status, p) =
        problem(native(&app, json!({"provider": "vk", "access_token": token})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");

    // Another token of the same person reaches the same account.
    let pair2: Value = native(
        &app,
        json!({"provider": "vk", "access_token": vk.issue("nat", VK_CLIENT)}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        claims(pair2["access_token"].as_str().unwrap())["sub"],
        nat["id"]
    );

    // A token VK ID issued to another app, and one it never issued.
    for token in [vk.issue("nat", "99999999"), "at-unknown".to_owned()] {
        let (status, p) =
            problem(native(&app, json!({"provider": "vk", "access_token": token})).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
        assert_eq!(p["code"], "invalid_access_token");
    }

    // An ID token is not what a plain OAuth 2 provider takes.
    let (status, p) =
        problem(native(&app, json!({"provider": "vk", "id_token": "eyJ.e30.x"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["field"], "access_token", "{p}");

    // VK ID down: unavailable, try later.
    vk.set_down(true);
    let (status, p) = problem(
        native(
            &app,
            json!({"provider": "vk", "access_token": vk.issue("nat", VK_CLIENT)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(p["code"], "provider_unavailable");
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Yandex ID

#[actix_web::test]
async fn a_yandex_id_sign_in_makes_an_account_the_next_one_reaches_and_replays_are_refused() {
    let ya = FakeProvider::start(Shape::Yandex, YANDEX_CLIENT, YANDEX_SECRET);
    let app = app_with("yandex", yandex_settings(&ya)).await;
    signs_in_and_refuses_replays(
        &app,
        "yandex",
        "yan",
        Expect {
            email: "yan@yandex.ru",
            // A Yandex mailbox: Yandex's to vouch for.
            email_verified: true,
            username: "yan",
        },
    )
    .await;
    // An outside address Yandex never says it confirmed.
    let bo = me(
        &app,
        &exchange(&app, &sign_in(&app, "yandex", "bo").await).await,
    )
    .await;
    assert_eq!(
        (bo["email"].clone(), bo["email_verified"].clone()),
        (json!("bo@example.com"), json!(false))
    );
    let first = &ya.token_requests()[0];
    assert!(first.contains_key("code_verifier"), "{first:?}");
}

#[actix_web::test]
async fn a_yandex_id_that_is_down_or_unreachable_at_the_callback_makes_nobody() {
    let ya = FakeProvider::start(Shape::Yandex, YANDEX_CLIENT, YANDEX_SECRET);
    let app = app_with("yandex", yandex_settings(&ya)).await;
    let b = browser();
    let back = at_provider(&app, &b, "yandex", "yul").await;
    ya.set_down(true);
    callback_gives_provider_error(&app, &b, back).await;
    ya.set_down(false);

    // A token endpoint nobody listens on.
    let mut settings = yandex_settings(&ya);
    settings.token_url = Some(format!(
        "http://127.0.0.1:{}/token",
        crate::distributed::free_port()
    ));
    let app = app_with("yandex", settings).await;
    let back = at_provider(&app, &b, "yandex", "yul").await;
    callback_gives_provider_error(&app, &b, back).await;
}

#[actix_web::test]
async fn a_native_app_signs_in_once_with_a_yandex_id_access_token_of_its_own_app() {
    let ya = FakeProvider::start(Shape::Yandex, YANDEX_CLIENT, YANDEX_SECRET);
    let app = app_with("yandex", yandex_settings(&ya)).await;
    let token = ya.issue("yas", YANDEX_CLIENT);
    let r = native(&app, json!({"provider": "yandex", "access_token": token})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let yas = me(&app, &pair).await;
    assert_eq!(yas["email"], "yas@yandex.ru");
    assert_eq!(yas["email_verified"], true);
    assert_eq!(yas["username"], "yas");

    let (status, _) =
        problem(native(&app, json!({"provider": "yandex", "access_token": token})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "it signs in once");

    // Yandex answers for another app's token too, naming that app: refused.
    let (status, p) = problem(
        native(
            &app,
            json!({"provider": "yandex", "access_token": ya.issue("yas", "another-app")}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "invalid_access_token");

    // No email: a new identity cannot make an account.
    let (status, p) = problem(
        native(
            &app,
            json!({"provider": "yandex", "access_token": ya.issue("noemail-yo", YANDEX_CLIENT)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "email_required");

    ya.set_down(true);
    let (status, p) = problem(
        native(
            &app,
            json!({"provider": "yandex", "access_token": ya.issue("yas", YANDEX_CLIENT)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(p["code"], "provider_unavailable");
}

// ---------------------------------------------------------------------------------------------
// GitHub and a generic OAuth 2 provider, against oauth2-mock-server

fn github_url() -> String {
    std::env::var("KEYWARD_TEST_GITHUB_URL")
        .expect("needs KEYWARD_TEST_GITHUB_URL: run under scripts/services.sh oauth2")
}

fn github_settings(base: &str) -> keyward_config::ProviderSettings {
    keyward_config::ProviderSettings {
        kind: "github".into(),
        client_id: Some("Iv1.keyward".into()),
        client_secret: Some("gh-secret".to_owned().into()),
        auth_url: Some(format!("{base}/login/oauth/authorize")),
        token_url: Some(format!("{base}/login/oauth/access_token")),
        userinfo_url: Some(format!("{base}/user")),
        ..Default::default()
    }
}

fn generic_settings(base: &str) -> keyward_config::ProviderSettings {
    keyward_config::ProviderSettings {
        kind: "oauth2".into(),
        client_id: Some("keyward".into()),
        client_secret: Some("acme-secret".to_owned().into()),
        auth_url: Some(format!("{base}/login/oauth/authorize")),
        token_url: Some(format!("{base}/login/oauth/access_token")),
        userinfo_url: Some(format!("{base}/userinfo")),
        // The server's numeric `id` and its `mail`, not the defaults `sub` and `email`.
        subject_claim: Some("id".into()),
        email_claim: Some("mail".into()),
        ..Default::default()
    }
}

/// What a native app's SDK does at the mock server: the code flow with PKCE as `login`, for
/// the access token.
async fn sdk_access_token(base: &str, login: &str) -> String {
    sdk_access_token_of(base, login, "Iv1.keyward").await
}

/// The same, for the app `client`.
async fn sdk_access_token_of(base: &str, login: &str, client: &str) -> String {
    let verifier = format!("v{}", uuid::Uuid::new_v4().simple()).repeat(2);
    let mut auth = url::Url::parse(&format!("{base}/login/oauth/authorize")).unwrap();
    auth.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", "http://127.0.0.1/sdk")
        .append_pair("state", "sdk")
        .append_pair("code_challenge", &s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("login", login);
    let r = browser().get(auth).send().await.unwrap();
    let code = param(&location(&r), "code").unwrap();
    let tokens: Value = reqwest::Client::new()
        .post(format!("{base}/login/oauth/access_token"))
        .header("accept", "application/json")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client),
            ("client_secret", "gh-secret"),
            ("redirect_uri", "http://127.0.0.1/sdk"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

#[actix_web::test]
#[ignore = "needs oauth2-mock-server (scripts/services.sh oauth2 -- cargo test --test api -- --include-ignored)"]
async fn a_github_sign_in_makes_an_account_the_next_one_reaches_and_replays_are_refused() {
    let base = github_url();
    let app = app_with("github", github_settings(&base)).await;
    signs_in_and_refuses_replays(
        &app,
        "github",
        "octo",
        Expect {
            // The primary address of /user/emails, verified as GitHub says.
            email: "octo@example.com",
            email_verified: true,
            username: "octo",
        },
    )
    .await;
    let unverified = me(
        &app,
        &exchange(&app, &sign_in(&app, "github", "unverified-gus").await).await,
    )
    .await;
    assert_eq!(unverified["email"], "unverified-gus@example.com");
    assert_eq!(unverified["email_verified"], false);
    let done = sign_in(&app, "github", "noemail-gia").await;
    assert_eq!(
        param(&done, "error").as_deref(),
        Some("email_required"),
        "{done}"
    );
}

#[actix_web::test]
#[ignore = "needs oauth2-mock-server (scripts/services.sh oauth2 -- cargo test --test api -- --include-ignored)"]
async fn a_github_whose_api_is_unreachable_at_the_callback_makes_nobody() {
    let base = github_url();
    let mut settings = github_settings(&base);
    settings.userinfo_url = Some(format!(
        "http://127.0.0.1:{}/user",
        crate::distributed::free_port()
    ));
    let app = app_with("github", settings).await;
    let b = browser();
    let back = at_provider(&app, &b, "github", "gwen").await;
    callback_gives_provider_error(&app, &b, back).await;

    let (status, p) = problem(
        native(
            &app,
            json!({"provider": "github", "access_token": sdk_access_token(&base, "gwen").await}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
}

#[actix_web::test]
#[ignore = "needs oauth2-mock-server (scripts/services.sh oauth2 -- cargo test --test api -- --include-ignored)"]
async fn a_native_app_signs_in_once_with_a_github_access_token() {
    let base = github_url();
    let app = app_with("github", github_settings(&base)).await;
    let token = sdk_access_token(&base, "nat").await;
    let r = native(&app, json!({"provider": "github", "access_token": token})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let nat = me(&app, &r.json().await.unwrap()).await;
    assert_eq!(nat["email"], "nat@example.com");
    let (status, p) =
        problem(native(&app, json!({"provider": "github", "access_token": token})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "it signs in once");
    assert_eq!(p["code"], "invalid_access_token");
    let (status, p) = problem(
        native(
            &app,
            json!({"provider": "github", "access_token": "gho_unknown"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "invalid_access_token");
    // GitHub's /user answers for any app's token: another app's is refused.
    let theirs = sdk_access_token_of(&base, "nat", "Iv1.another-app").await;
    let (status, p) =
        problem(native(&app, json!({"provider": "github", "access_token": theirs})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "invalid_access_token");
}

#[actix_web::test]
#[ignore = "needs oauth2-mock-server (scripts/services.sh oauth2 -- cargo test --test api -- --include-ignored)"]
async fn a_generic_oauth2_sign_in_reads_the_configured_members() {
    let base = github_url();
    let app = app_with("acme", generic_settings(&base)).await;
    signs_in_and_refuses_replays(
        &app,
        "acme",
        "oli",
        Expect {
            email: "oli@example.com",
            email_verified: true,
            username: "oli",
        },
    )
    .await;
    let unverified = me(
        &app,
        &exchange(&app, &sign_in(&app, "acme", "unverified-ola").await).await,
    )
    .await;
    assert_eq!(unverified["email_verified"], false);

    let mut settings = generic_settings(&base);
    settings.token_url = Some(format!(
        "http://127.0.0.1:{}/token",
        crate::distributed::free_port()
    ));
    let down = app_with("acme", settings).await;
    let b = browser();
    let back = at_provider(&down, &b, "acme", "oli").await;
    callback_gives_provider_error(&down, &b, back).await;

    // Its userinfo answers for any app's token: no native sign-in with it.
    let token = sdk_access_token(&base, "oli").await;
    let (status, p) =
        problem(native(&app, json!({"provider": "acme", "access_token": token})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["code"], "native_unsupported");
}
