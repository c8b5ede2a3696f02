//! Plain OAuth 2 providers: `github`, `vk` (VK ID), `yandex` (Yandex ID) and the generic
//! `oauth2`. The code flow with state and PKCE S256 (the `oauth2` crate), then the identity
//! from the provider's userinfo endpoint, read in that provider's own shape (or, for `oauth2`,
//! through the configured member names).
//!
//! Refuses: an identity without a subject; calling an email verified when the provider does
//! not vouch for it; a Yandex token issued to another app; tokens in logs or URLs (a token goes
//! only in a header or a POST body, to the configured endpoint).

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyward_config::ProviderSettings;
use keyward_messages::federation::{CallbackQuery, NativeOAuth};
use keyward_messages::CommandError;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::flow::{callback_url, internal, unavailable, Asserted, Authorize};
use super::{FederationDeps as Deps, Provider};
use crate::error::HandlerError;

/// How long a native sign-in's access token stays spent (the once-only record).
///
/// NOTE: a plain access token carries no expiry Keyward can read (only the token response
/// does, and a native app sends the bare token). An hour covers a replayed request, and is the
/// lifetime VK ID documents for its access tokens; GitHub's and Yandex's live longer, so the
/// same token may sign in again after an hour — whoever holds it can read the identity at the
/// provider anyway.
const SPENT_FOR: chrono::Duration = chrono::Duration::hours(1);

/// The most of a userinfo answer that is read.
const MAX_ANSWER: usize = 256 * 1024;

const UA: &str = concat!("keyward/", env!("CARGO_PKG_VERSION"));

/// Whose shape the endpoints speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    Github,
    Vk,
    Yandex,
    Generic,
}

/// The generic kind's userinfo member names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claims {
    subject: String,
    email: String,
    email_verified: String,
    username: String,
    avatar: String,
}

/// A plain OAuth 2 provider's endpoints and shape.
pub(super) struct Plain {
    preset: Preset,
    auth_url: AuthUrl,
    token_url: TokenUrl,
    userinfo_url: url::Url,
    claims: Claims,
}

impl Plain {
    /// From settings validated at load; Err names the field and says what is wrong.
    pub(super) fn new(p: &ProviderSettings) -> Result<Self, (&'static str, String)> {
        let (preset, defaults) = match p.kind.as_str() {
            "github" => (
                Preset::Github,
                Some([
                    "https://github.com/login/oauth/authorize",
                    "https://github.com/login/oauth/access_token",
                    "https://api.github.com/user",
                ]),
            ),
            // https://id.vk.com/about/business/go/docs/ru/vkid/latest/vk-id/connection/api-description
            "vk" => (
                Preset::Vk,
                Some([
                    "https://id.vk.com/authorize",
                    "https://id.vk.com/oauth2/auth",
                    "https://id.vk.com/oauth2/user_info",
                ]),
            ),
            // https://yandex.ru/dev/id/doc/ru/
            "yandex" => (
                Preset::Yandex,
                Some([
                    "https://oauth.yandex.ru/authorize",
                    "https://oauth.yandex.ru/token",
                    "https://login.yandex.ru/info",
                ]),
            ),
            _ => (Preset::Generic, None),
        };
        let pick = |field: &'static str, set: &Option<String>, i: usize| {
            set.clone()
                .or_else(|| defaults.map(|d| d[i].to_owned()))
                .ok_or((field, "is not set".to_owned()))
        };
        let auth_url = AuthUrl::new(pick("auth_url", &p.auth_url, 0)?)
            .map_err(|e| ("auth_url", e.to_string()))?;
        let token_url = TokenUrl::new(pick("token_url", &p.token_url, 1)?)
            .map_err(|e| ("token_url", e.to_string()))?;
        let userinfo_url = url::Url::parse(&pick("userinfo_url", &p.userinfo_url, 2)?)
            .map_err(|e| ("userinfo_url", e.to_string()))?;
        let claim =
            |set: &Option<String>, default: &str| set.clone().unwrap_or_else(|| default.to_owned());
        Ok(Plain {
            preset,
            auth_url,
            token_url,
            userinfo_url,
            claims: Claims {
                subject: claim(&p.subject_claim, "sub"),
                email: claim(&p.email_claim, "email"),
                email_verified: claim(&p.email_verified_claim, "email_verified"),
                username: claim(&p.username_claim, "preferred_username"),
                avatar: claim(&p.avatar_claim, "picture"),
            },
        })
    }

    /// The scopes asked for when `scopes` is not set. Yandex and a generic provider get none:
    /// Yandex then grants what the app was registered for, and a generic provider its default.
    pub(super) fn default_scopes(&self) -> &'static str {
        match self.preset {
            Preset::Github => "read:user user:email",
            Preset::Vk => "email",
            Preset::Yandex | Preset::Generic => "",
        }
    }
}

/// A token response, lenient where providers differ from RFC 6749: only `access_token` is
/// needed (VK ID's answer is its own shape; nothing here uses the rest).
#[derive(Debug, Deserialize, Serialize)]
struct Tokens {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

impl TokenResponse for Tokens {
    type TokenType = BasicTokenType;
    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        None
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        None
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

type Client = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

fn client(deps: &Deps, p: &Provider, k: &Plain) -> Result<Client, HandlerError> {
    let redirect = RedirectUrl::new(callback_url(deps, p))
        .map_err(|e| internal("the callback URL does not parse", e))?;
    let client = oauth2::Client::new(ClientId::new(p.client_id.clone()))
        .set_auth_uri(k.auth_url.clone())
        .set_token_uri(k.token_url.clone())
        .set_redirect_uri(redirect);
    let secret = || ClientSecret::new(p.client_secret.expose_secret().to_owned());
    Ok(match k.preset {
        // VK ID's token request names the client in its body and has no secret.
        Preset::Vk => client.set_auth_type(AuthType::RequestBody),
        // GitHub documents client_id and client_secret as parameters of the request.
        Preset::Github => client
            .set_client_secret(secret())
            .set_auth_type(AuthType::RequestBody),
        // HTTP Basic, which RFC 6749 (2.3.1) has every server support; Yandex documents it.
        Preset::Yandex | Preset::Generic => client.set_client_secret(secret()),
    })
}

/// The authorization request: the code flow with state and PKCE S256. The nonce is random
/// and kept with the flow like any other, though no ID token will carry it.
pub(super) fn authorize(deps: &Deps, p: &Provider, k: &Plain) -> Result<Authorize, HandlerError> {
    let client = client(deps, p, k)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge);
    for s in &p.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, state) = req.url();
    Ok(Authorize {
        url,
        state: state.secret().clone(),
        nonce: CsrfToken::new_random().secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// Exchanges the provider's code (with the PKCE verifier; VK ID also wants the callback's
/// device_id and state), then reads the identity at the userinfo endpoint.
pub(super) async fn identity(
    deps: &Deps,
    p: &Provider,
    k: &Plain,
    verifier: String,
    code: String,
    query: &CallbackQuery,
) -> Result<Asserted, String> {
    let client = client(deps, p, k).map_err(|_| "the callback URL does not parse")?;
    let mut req = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier));
    if k.preset == Preset::Vk {
        let device_id = query
            .device_id
            .as_deref()
            .filter(|d| !d.is_empty())
            .ok_or("VK ID's callback carries no device_id, which its token request needs")?;
        let state = query.state.as_deref().unwrap_or_default();
        req = req
            .add_extra_param("device_id", device_id)
            .add_extra_param("state", state);
    }
    let tokens = req
        .request_async(&deps.http)
        .await
        .map_err(|e| format!("the token request: {}", crate::error::chain(&e)))?;
    userinfo(deps, p, k, tokens.access_token().secret())
        .await
        .map_err(|e| format!("the userinfo request: {e}"))
}

fn bad_access_token(detail: impl Into<String>) -> HandlerError {
    HandlerError::from(CommandError::unauthenticated(
        "invalid_access_token",
        detail,
    ))
}

/// A native app's access token: the identity its userinfo endpoint answers, and when the
/// once-only record of the token may go.
pub(super) async fn native(
    deps: &Deps,
    p: &Provider,
    k: &Plain,
    m: &NativeOAuth,
) -> Result<(Asserted, DateTime<Utc>), HandlerError> {
    let Some(token) = m.access_token.as_deref() else {
        return Err(HandlerError::from(CommandError::field(
            "access_token",
            "required",
            "this provider has no ID token: send the access token its SDK returned",
        )));
    };
    let checked = match k.preset {
        // Its userinfo answers for any app's token; nothing says whose it is.
        Preset::Generic => {
            return Err(HandlerError::from(CommandError::field(
                "access_token",
                "native_unsupported",
                "a generic OAuth 2 provider cannot tell whether an access token was issued to this app: sign in through the web flow (GET /v1/auth/oauth/{provider}/start)",
            )))
        }
        Preset::Github => match github_token_is_ours(deps, p, k, token).await {
            Ok(()) => userinfo(deps, p, k, token).await,
            Err(e) => Err(e),
        },
        Preset::Vk | Preset::Yandex => userinfo(deps, p, k, token).await,
    };
    match checked {
        Ok(a) => Ok((a, (deps.clock)() + SPENT_FOR)),
        Err(Refused::Token(why)) => {
            tracing::info!(provider = %p.name, error = %why, "a native sign-in's access token was refused");
            Err(bad_access_token(
                "the provider does not accept this access token (expired, revoked, or issued to another app)",
            ))
        }
        Err(Refused::Down(why) | Refused::Bad(why)) => Err(unavailable(p, &why)),
    }
}

/// Why a userinfo request gave no identity (never with the token in it).
#[derive(Debug)]
enum Refused {
    /// The provider refused the token (401, or RFC 6750's `invalid_token`), or it was issued
    /// to another app.
    Token(String),
    /// Not reached, or a 5xx.
    Down(String),
    /// An answer with no identity in it.
    Bad(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Token(why) => write!(f, "the token was refused: {why}"),
            Refused::Down(why) => write!(f, "the provider did not answer: {why}"),
            Refused::Bad(why) => write!(f, "the provider answered badly: {why}"),
        }
    }
}

/// Sends `req` and reads its answer: the status and the JSON body (None when it is not JSON).
async fn call(req: reqwest::RequestBuilder) -> Result<(StatusCode, Option<Value>), Refused> {
    let mut r = req
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, UA)
        .send()
        .await
        .map_err(|e| Refused::Down(crate::error::chain(&e)))?;
    let status = r.status();
    if status.is_server_error() {
        return Err(Refused::Down(format!("it answered {status}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| Refused::Down(crate::error::chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(Refused::Bad(format!("an answer over {MAX_ANSWER} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, serde_json::from_slice(&body).ok()))
}

/// A successful answer's JSON object, or why not.
fn object(status: StatusCode, body: Option<Value>) -> Result<Value, Refused> {
    answer(status, body)?
        .as_object()
        .map(|o| Value::Object(o.clone()))
        .ok_or_else(|| Refused::Bad("the answer is not a JSON object".to_owned()))
}

/// A successful answer's JSON, or why not.
fn answer(status: StatusCode, body: Option<Value>) -> Result<Value, Refused> {
    let error = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if status == StatusCode::UNAUTHORIZED || error.as_deref() == Some("invalid_token") {
        return Err(Refused::Token(format!(
            "{status} {}",
            error.unwrap_or_default()
        )));
    }
    if !status.is_success() {
        return Err(Refused::Bad(format!(
            "it answered {status} {}",
            error.unwrap_or_default()
        )));
    }
    if let Some(e) = error {
        return Err(Refused::Bad(format!("it answered error {e}")));
    }
    body.ok_or_else(|| Refused::Bad("the answer is not JSON".to_owned()))
}

/// A member that is a non-empty string, or a whole number as its decimal string.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn subject(v: &Value, what: &str) -> Result<String, Refused> {
    text(v).ok_or_else(|| Refused::Bad(format!("the answer has no {what}")))
}

async fn userinfo(deps: &Deps, p: &Provider, k: &Plain, token: &str) -> Result<Asserted, Refused> {
    match k.preset {
        Preset::Github => github(deps, k, token).await,
        Preset::Vk => vk(deps, p, k, token).await,
        Preset::Yandex => yandex(deps, p, k, token).await,
        Preset::Generic => {
            let (status, body) =
                call(deps.http.get(k.userinfo_url.clone()).bearer_auth(token)).await?;
            generic(&k.claims, &object(status, body)?)
        }
    }
}

/// GitHub's `/user` answers for any app's token, so a native app's token is first checked to
/// be this app's: `POST /applications/{client_id}/token` with the app's credentials answers 404
/// for a token of another app (GitHub's check-token API, beside `/user` on the API host).
async fn github_token_is_ours(
    deps: &Deps,
    p: &Provider,
    k: &Plain,
    token: &str,
) -> Result<(), Refused> {
    let mut url = k.userinfo_url.clone();
    url.path_segments_mut()
        .map_err(|_| Refused::Bad("the userinfo URL cannot have a path".to_owned()))?
        .pop_if_empty()
        .pop()
        .extend(["applications", p.client_id.as_str(), "token"]);
    let req = deps
        .http
        .post(url)
        .basic_auth(&p.client_id, Some(p.client_secret.expose_secret()))
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "access_token": token }).to_string());
    let (status, _) = call(req).await?;
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => Err(Refused::Token(
            "GitHub says the token is not this app's".to_owned(),
        )),
        other => Err(Refused::Bad(format!(
            "the check-token API answered {other} (are the client id and secret right?)"
        ))),
    }
}

/// GitHub: `GET /user` for the id, login and picture; `GET /user/emails` for the primary
/// address and whether GitHub verified it.
async fn github(deps: &Deps, k: &Plain, token: &str) -> Result<Asserted, Refused> {
    let get = |url: url::Url| {
        deps.http
            .get(url)
            .bearer_auth(token)
            .header("X-GitHub-Api-Version", "2022-11-28")
    };
    let (status, body) = call(get(k.userinfo_url.clone())).await?;
    let user = object(status, body)?;
    let mut emails_url = k.userinfo_url.clone();
    emails_url
        .path_segments_mut()
        .map_err(|_| Refused::Bad("the userinfo URL cannot have a path".to_owned()))?
        .pop_if_empty()
        .push("emails");
    let (status, body) = call(get(emails_url)).await?;
    // NOTE: without the user:email scope GitHub answers 403 or 404 here: the sign-in goes on
    // without an address (a linked identity still signs in; a new one is asked for it).
    let emails = match status {
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Value::Array(vec![]),
        _ => answer(status, body)?,
    };
    github_identity(&user, &emails)
}

fn github_identity(user: &Value, emails: &Value) -> Result<Asserted, Refused> {
    let primary = emails
        .as_array()
        .ok_or_else(|| Refused::Bad("the emails answer is not a list".to_owned()))?
        .iter()
        .find(|e| e["primary"].as_bool() == Some(true));
    Ok(Asserted {
        subject: subject(&user["id"], "id")?,
        email: primary.and_then(|e| text(&e["email"])),
        email_verified: primary.is_some_and(|e| e["verified"].as_bool() == Some(true)),
        username: text(&user["login"]),
        avatar_url: text(&user["avatar_url"]),
    })
}

/// VK ID: `POST user_info` with the app's client_id and the token in the body (its tokens are
/// bound to the app that got them).
async fn vk(deps: &Deps, p: &Provider, k: &Plain, token: &str) -> Result<Asserted, Refused> {
    let req = deps
        .http
        .post(k.userinfo_url.clone())
        .form(&[("client_id", p.client_id.as_str()), ("access_token", token)]);
    let (status, body) = call(req).await?;
    vk_identity(&object(status, body)?)
}

fn vk_identity(answer: &Value) -> Result<Asserted, Refused> {
    let user = &answer["user"];
    Ok(Asserted {
        subject: subject(&user["user_id"], "user.user_id")?,
        email: text(&user["email"]),
        // NOTE: VK ID's user_info documents `email` as the account's address and says nothing
        // of its being confirmed, and no member says so: Keyward does not vouch for it either,
        // so the new account starts unverified and the user confirms it by mail.
        email_verified: false,
        // VK ID gives no login name; the username comes from the email.
        username: None,
        avatar_url: text(&user["avatar"]),
    })
}

/// Yandex ID: `GET /info?format=json` with `Authorization: OAuth <token>`.
async fn yandex(deps: &Deps, p: &Provider, k: &Plain, token: &str) -> Result<Asserted, Refused> {
    let mut url = k.userinfo_url.clone();
    url.query_pairs_mut().append_pair("format", "json");
    let req = deps
        .http
        .get(url)
        .header(AUTHORIZATION, format!("OAuth {token}"));
    let (status, body) = call(req).await?;
    yandex_identity(&p.client_id, &object(status, body)?)
}

/// An address at one of Yandex's own mail domains.
fn yandex_mailbox(email: &str) -> bool {
    const DOMAINS: [&str; 8] = [
        "yandex.ru",
        "ya.ru",
        "yandex.com",
        "yandex.by",
        "yandex.kz",
        "yandex.ua",
        "yandex.com.tr",
        "narod.ru",
    ];
    email
        .rsplit_once('@')
        .is_some_and(|(_, d)| DOMAINS.iter().any(|y| d.eq_ignore_ascii_case(y)))
}

fn yandex_identity(client_id: &str, answer: &Value) -> Result<Asserted, Refused> {
    // NOTE: Yandex's /info takes a token of any app ("an OAuth token with permissions to
    // access any of the Yandex services", https://yandex.ru/dev/id/doc/en/user-information)
    // and names the app it was issued to in `client_id`: another app's token, which that app
    // could replay here, is refused.
    match answer["client_id"].as_str() {
        Some(c) if c == client_id => {}
        Some(_) => return Err(Refused::Token("issued to another app".to_owned())),
        None => return Err(Refused::Token("the answer names no client_id".to_owned())),
    }
    let email = text(&answer["default_email"]);
    let avatar = match (
        answer["is_avatar_empty"].as_bool(),
        text(&answer["default_avatar_id"]),
    ) {
        (Some(false) | None, Some(id)) => Some(format!(
            "https://avatars.yandex.net/get-yapic/{id}/islands-200"
        )),
        _ => None,
    };
    Ok(Asserted {
        subject: subject(&answer["id"], "id")?,
        // NOTE: Yandex ID documents `default_email` as "the default email address for
        // contacting the user" (https://yandex.ru/dev/id/doc/en/user-information), chosen from
        // the account's addresses, and never says whether an outside address was confirmed.
        // Only Yandex's own mailboxes are vouched for: an account's mailbox at Yandex is
        // Yandex's to know. Any other address starts unverified (Keyward's mail confirms it).
        email_verified: email.as_deref().is_some_and(yandex_mailbox),
        email,
        username: text(&answer["login"]),
        avatar_url: avatar,
    })
}

/// A generic provider's answer through the configured member names; `email_verified` is true
/// only for `true` (or the string "true"), absent is false.
fn generic(c: &Claims, answer: &Value) -> Result<Asserted, Refused> {
    Ok(Asserted {
        subject: subject(&answer[&c.subject], &c.subject)?,
        email: text(&answer[&c.email]),
        email_verified: match &answer[&c.email_verified] {
            Value::Bool(b) => *b,
            Value::String(s) => s.eq_ignore_ascii_case("true"),
            _ => false,
        },
        username: text(&answer[&c.username]),
        avatar_url: text(&answer[&c.avatar]),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn defaults() -> Claims {
        Plain::new(&ProviderSettings {
            kind: "oauth2".into(),
            auth_url: Some("https://id.example/authorize".into()),
            token_url: Some("https://id.example/token".into()),
            userinfo_url: Some("https://id.example/userinfo".into()),
            ..Default::default()
        })
        .unwrap()
        .claims
    }

    #[test]
    fn a_numeric_id_becomes_its_decimal_string() {
        assert_eq!(text(&json!(583924)).as_deref(), Some("583924"));
        assert_eq!(text(&json!("abc")).as_deref(), Some("abc"));
        assert_eq!(text(&json!(1.5)), None);
        assert_eq!(text(&json!("  ")), None);
        assert_eq!(text(&json!(null)), None);
    }

    #[test]
    fn github_takes_the_primary_address_and_its_verified_flag() {
        let user = json!({"id": 42, "login": "octo", "avatar_url": "https://a.example/42"});
        let emails = json!([
            {"email": "old@example.com", "primary": false, "verified": true},
            {"email": "octo@example.com", "primary": true, "verified": false},
        ]);
        let a = github_identity(&user, &emails).unwrap();
        assert_eq!(a.subject, "42");
        assert_eq!(a.email.as_deref(), Some("octo@example.com"));
        assert!(!a.email_verified);
        assert_eq!(a.username.as_deref(), Some("octo"));
        let none = github_identity(&user, &json!([])).unwrap();
        assert_eq!(none.email, None);
        assert!(!none.email_verified);
    }

    #[test]
    fn a_vk_email_is_never_taken_as_verified() {
        let a = vk_identity(&json!({"user": {"user_id": 1234567890, "email": "v@example.com", "avatar": "https://vk.example/a.jpg"}})).unwrap();
        assert_eq!(a.subject, "1234567890");
        assert_eq!(a.email.as_deref(), Some("v@example.com"));
        assert!(!a.email_verified);
        assert!(vk_identity(&json!({"user": {}})).is_err());
    }

    #[test]
    fn a_yandex_token_of_another_app_is_refused() {
        let answer = json!({"id": "1000034426", "login": "vasya", "client_id": "other", "default_email": "vasya@yandex.ru"});
        assert!(matches!(
            yandex_identity("mine", &answer),
            Err(Refused::Token(_))
        ));
        let mine = json!({"id": "1000034426", "login": "vasya", "client_id": "mine", "default_email": "vasya@yandex.ru", "default_avatar_id": "131652443", "is_avatar_empty": false});
        let a = yandex_identity("mine", &mine).unwrap();
        assert!(a.email_verified, "a Yandex mailbox");
        let outside =
            json!({"id": "1000034427", "client_id": "mine", "default_email": "vasya@example.com"});
        assert!(
            !yandex_identity("mine", &outside).unwrap().email_verified,
            "an outside address Yandex never vouches for"
        );
        assert_eq!(
            a.avatar_url.as_deref(),
            Some("https://avatars.yandex.net/get-yapic/131652443/islands-200")
        );
    }

    #[test]
    fn a_generic_answer_is_read_through_the_member_names() {
        let a = generic(
            &defaults(),
            &json!({"sub": "s-1", "email": "g@example.com"}),
        )
        .unwrap();
        assert_eq!(a.subject, "s-1");
        assert!(!a.email_verified, "absent is not verified");
        let c = Claims {
            subject: "id".into(),
            email: "mail".into(),
            email_verified: "mail_ok".into(),
            username: "login".into(),
            avatar: "pic".into(),
        };
        let a = generic(
            &c,
            &json!({"id": 7, "mail": "g@example.com", "mail_ok": "true", "login": "gee"}),
        )
        .unwrap();
        assert_eq!(a.subject, "7");
        assert!(a.email_verified);
        assert_eq!(a.username.as_deref(), Some("gee"));
        assert!(generic(&c, &json!({"sub": "x"})).is_err(), "no subject");
    }

    #[test]
    fn a_401_or_invalid_token_is_the_tokens_fault_and_a_4xx_the_providers() {
        assert!(matches!(
            object(StatusCode::UNAUTHORIZED, None),
            Err(Refused::Token(_))
        ));
        assert!(matches!(
            object(StatusCode::OK, Some(json!({"error": "invalid_token"}))),
            Err(Refused::Token(_))
        ));
        assert!(matches!(
            object(
                StatusCode::BAD_REQUEST,
                Some(json!({"error": "invalid_request"}))
            ),
            Err(Refused::Bad(_))
        ));
        assert!(matches!(
            object(StatusCode::OK, Some(json!([1]))),
            Err(Refused::Bad(_))
        ));
    }
}
