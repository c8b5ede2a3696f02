//! HTTP-mapping tests: the public and management apps driven through actix's test utilities,
//! with a fake actor standing in for the context actors (it answers canned replies, or a chosen
//! error, and records what it was sent). End-to-end behaviour is tested in the workspace's
//! `tests/` against real actors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod body;
mod errors;
mod management;
mod openapi;
mod routes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use chrono::{TimeZone, Utc};
use keyward_messages::access::RoleView;
use keyward_messages::commands::*;
use keyward_messages::profiles::*;
use keyward_messages::{codes, CommandError, SessionId, UserId};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::state::AppState;
use crate::{public_app, AccessApi, AccountsApi, ProfilesApi, Recipients, SessionsApi};

pub(crate) const GOOD_TOKEN: &str = "good-token";
pub(crate) const USER: Uuid = Uuid::from_u128(0x0190_b0a4_7c2e_7d1a_9f3e_2a4b_6c8d_0e1f);
pub(crate) const SESSION: Uuid = Uuid::from_u128(0x0190_b0a4_7c2e_7d1a_9f3e_2a4b_6c8d_0e20);

/// Stands in for every context actor.
#[derive(Clone, Default)]
pub(crate) struct Fake {
    /// Every command (not `Authenticate`) answers this error when set.
    pub fail: Option<CommandError>,
    /// Every command waits this long before answering.
    pub delay: Option<Duration>,
    /// `Debug` of every message received, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    pub fn failing(e: CommandError) -> Self {
        Self {
            fail: Some(e),
            ..Self::default()
        }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn recipients(&self) -> Recipients {
        let a = self.clone().start();
        Recipients {
            access: AccessApi::of(&a),
            accounts: AccountsApi::of(&a),
            sessions: SessionsApi::of(&a),
            profiles: ProfilesApi::of(&a),
            notify: crate::NotifyApi::of(&a),
            mfa: crate::MfaApi::of(&a),
            federation: crate::FederationApi::of(&a),
        }
    }

    fn answer<T: Send + 'static>(
        &self,
        msg: &impl std::fmt::Debug,
        ok: T,
    ) -> ResponseFuture<Result<T, CommandError>> {
        self.seen.lock().unwrap().push(format!("{msg:?}"));
        let (fail, delay) = (self.fail.clone(), self.delay);
        Box::pin(async move {
            if let Some(d) = delay {
                actix_web::rt::time::sleep(d).await;
            }
            fail.map_or(Ok(ok), Err)
        })
    }
}

impl Actor for Fake {
    type Context = Context<Self>;
}

/// The fake's answer to every message whose reply is `Result<Self, CommandError>`: chosen by
/// reply type, so a new message with a known reply type needs nothing here.
pub(crate) trait Canned: Sized {
    /// Whether `Fake::fail` and `Fake::delay` apply (not to authentication).
    const FAULTS: bool = true;
    fn canned(msg: &dyn std::any::Any) -> Result<Self, CommandError>;
}

impl<M, T> Handler<M> for Fake
where
    M: Message<Result = Result<T, CommandError>> + std::fmt::Debug + 'static,
    T: Canned + Send + 'static,
{
    type Result = ResponseFuture<Result<T, CommandError>>;
    fn handle(&mut self, msg: M, _: &mut Context<Self>) -> Self::Result {
        if !T::FAULTS {
            self.seen.lock().unwrap().push(format!("{msg:?}"));
            let reply = T::canned(&msg);
            return Box::pin(async move { reply });
        }
        match T::canned(&msg) {
            Ok(ok) => self.answer(&msg, ok),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

macro_rules! canned {
    ($($reply:ty => $value:expr;)*) => {$(
        impl Canned for $reply {
            fn canned(_: &dyn std::any::Any) -> Result<Self, CommandError> {
                Ok($value)
            }
        }
    )*};
}

canned! {
    () => ();
    EmailVerified => EmailVerified {
        user_id: UserId(USER),
        email: "alice@example.com".into(),
        email_verified: true,
    };
    TokenPair => token_pair();
    ProfileView => ProfileView::Public(Box::new(PublicProfile {
        id: UserId(USER),
        username: Some("alice".into()),
        display_name: Some("Alice".into()),
        bio: None,
        avatar: None,
        country: None,
        attributes: Default::default(),
    }));
    UserSettings => UserSettings(Default::default());
    SearchResults => SearchResults { items: vec![], next_cursor: None };
    AvatarUrls => AvatarUrls { small: "s".into(), medium: "m".into(), large: "l".into() };
    Option<AvatarImage> => None;
    keyward_messages::mfa::LoginReply => keyward_messages::mfa::LoginReply::Tokens(token_pair());
    keyward_messages::mfa::TotpEnrollment => keyward_messages::mfa::TotpEnrollment {
        factor_id: Uuid::nil(), secret: "JBSWY3DPEHPK3PXP".into(), otpauth_uri: "otpauth://totp/x".into(), qr_svg: "<svg/>".into() };
    keyward_messages::mfa::EnrolledFactor => keyward_messages::mfa::EnrolledFactor { factor_id: Uuid::nil(), kind: "sms".into(), recovery_codes: None };
    keyward_messages::mfa::CodeSent => keyward_messages::mfa::CodeSent { expires_in: 300, public_key: None };
    keyward_messages::federation::IdentityList => keyward_messages::federation::IdentityList { identities: vec![] };
    keyward_messages::federation::Redirect => keyward_messages::federation::Redirect { location: "https://id.example/auth".into() };
    keyward_messages::mfa::PasskeyOptions => keyward_messages::mfa::PasskeyOptions { public_key: json!({"challenge": "AAAA"}) };
    keyward_messages::mfa::RecoveryCodes => keyward_messages::mfa::RecoveryCodes { recovery_codes: vec!["abcde-fghjk".into()] };
    Option<keyward_messages::mfa::RecoveryCodes> => None;
    keyward_messages::mfa::FactorList => keyward_messages::mfa::FactorList { factors: vec![], recovery_codes_left: 0 };
    keyward_messages::mfa::StepUpToken => keyward_messages::mfa::StepUpToken { access_token: "at".into(), token_type: "Bearer", expires_in: 900 };
    PhoneCodeSent => PhoneCodeSent { phone: "+79161234567".into(), expires_in: 300 };
    PhoneVerified => PhoneVerified { phone: "+79161234567".into(), phone_verified: true };
    ActivityPage => ActivityPage { items: vec![], next_cursor: None };
    UserExport => UserExport(json!({}));
    DeletionScheduled => DeletionScheduled { erase_at: Utc.timestamp_opt(1_700_600_000, 0).unwrap() };
    Vec<SessionView> => vec![SessionView {
        id: SessionId(SESSION),
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        last_used_at: Utc.timestamp_opt(1_700_000_100, 0).unwrap(),
        expires_at: Utc.timestamp_opt(1_700_900_000, 0).unwrap(),
        user_agent: Some("curl/8".into()),
        ip: Some("203.0.113.7".parse().unwrap()),
        current: true,
    }];
    Value => json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "abc"}]});
    Vec<bool> => vec![true];
    Vec<String> => vec!["bookings:read".into()];
    RoleView => role_view();
    Vec<RoleView> => vec![role_view()];
    (RoleView, bool) => (role_view(), true);
    keyward_messages::access::ClientToken => keyward_messages::access::ClientToken {
        access_token: "t".into(), token_type: "Bearer", expires_in: 300, scope: "access:check".into() };
    keyward_messages::access::ClientCreated => keyward_messages::access::ClientCreated {
        client: client_view(), client_secret: "s".into() };
    Vec<keyward_messages::access::ClientView> => vec![client_view()];
    keyward_messages::access::AdminUserPage => keyward_messages::access::AdminUserPage { items: vec![], next_cursor: None };
    keyward_messages::access::AuditPage => keyward_messages::access::AuditPage { items: vec![], next_cursor: None };
    keyward_messages::access::AdminUserDetail => keyward_messages::access::AdminUserDetail {
        status: keyward_messages::access::UserStatus::Active, last_login_at: None, sessions: vec![],
        factors: vec![], identities: vec![], recent_audit: vec![] };
    keyward_messages::access::AdminUser => keyward_messages::access::AdminUser {
        id: UserId(USER), email: "alice@example.com".into(), username: None,
        status: keyward_messages::access::UserStatus::Unverified, roles: vec![],
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(), last_login_at: None };
    keyward_messages::notify::SendAccepted => keyward_messages::notify::SendAccepted { ids: vec![Uuid::nil()] };
    keyward_messages::notify::InboxPage => keyward_messages::notify::InboxPage { items: vec![], unread: 0, next_cursor: None };
    keyward_messages::notify::Preferences => Default::default();
    keyward_messages::notify::TemplateView => template_view();
    (keyward_messages::notify::TemplateView, bool) => (template_view(), true);
    std::collections::BTreeMap<String, String> => Default::default();
    keyward_messages::notify::InboxStream => keyward_messages::notify::InboxStream {
        unread: 0, events: Box::pin(futures::stream::empty()) };
    keyward_messages::notify::PushSubscriptionView => keyward_messages::notify::PushSubscriptionView {
        id: Uuid::nil(), endpoint: "https://push.example/1".into(), created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap() };
    keyward_messages::notify::VapidKey => keyward_messages::notify::VapidKey { public_key: "BA".into() };
    keyward_messages::notify::DeliveryPage => keyward_messages::notify::DeliveryPage { items: vec![], next_cursor: None };
}

fn template_view() -> keyward_messages::notify::TemplateView {
    keyward_messages::notify::TemplateView {
        key: "generic".into(),
        channel: keyward_messages::notify::Channel::InApp,
        locale: "en".into(),
        parts: Default::default(),
        variables: vec![],
        source: "shipped".into(),
        updated_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

fn client_view() -> keyward_messages::access::ClientView {
    keyward_messages::access::ClientView {
        client_id: "kwc_x".into(),
        name: "booking".into(),
        scopes: vec!["access:check".into()],
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

/// Only `GOOD_TOKEN` is a live access token, a user's.
impl Canned for keyward_messages::access::Caller {
    const FAULTS: bool = false;
    fn canned(msg: &dyn std::any::Any) -> Result<Self, CommandError> {
        match msg.downcast_ref::<keyward_messages::access::AuthenticateCaller>() {
            Some(m) if m.token.expose_secret() == GOOD_TOKEN => {
                Ok(keyward_messages::access::Caller::User(principal()))
            }
            _ => Err(CommandError::unauthenticated(
                codes::INVALID_TOKEN,
                "the access token is invalid or expired",
            )),
        }
    }
}

fn role_view() -> keyward_messages::access::RoleView {
    keyward_messages::access::RoleView {
        name: "organizer".into(),
        description: "Runs events".into(),
        permissions: vec!["events:write".into()],
        source: keyward_messages::access::RoleSource::Api,
        holders: 0,
    }
}

/// Only `GOOD_TOKEN` is a live access token.
impl Canned for Principal {
    const FAULTS: bool = false;
    fn canned(msg: &dyn std::any::Any) -> Result<Self, CommandError> {
        let token = msg
            .downcast_ref::<Authenticate>()
            .map(|m| &m.token)
            .or_else(|| {
                msg.downcast_ref::<keyward_messages::access::Authorize>()
                    .map(|m| &m.token)
            });
        match token {
            Some(t) if t.expose_secret() == GOOD_TOKEN => Ok(principal()),
            _ => Err(CommandError::unauthenticated(
                codes::INVALID_TOKEN,
                "the access token is invalid or expired",
            )),
        }
    }
}

/// The caller's own view; `GetMe` authenticates its token as `Authenticate` does (only
/// `GOOD_TOKEN` is live).
impl Canned for UserView {
    fn canned(msg: &dyn std::any::Any) -> Result<Self, CommandError> {
        if let Some(m) = msg.downcast_ref::<keyward_messages::commands::GetMe>() {
            if m.token.expose_secret() != GOOD_TOKEN {
                return Err(CommandError::unauthenticated(
                    codes::INVALID_TOKEN,
                    "the access token is invalid or expired",
                ));
            }
        }
        Ok(user_view())
    }
}

fn user_view() -> UserView {
    UserView {
        id: UserId(USER),
        email: "alice@example.com".into(),
        email_verified: true,
        username: Some("alice".into()),
        roles: vec!["user".into()],
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        display_name: Some("Alice".into()),
        bio: None,
        avatar: None,
        locale: Locale::En,
        timezone: None,
        country: None,
        phone: None,
        phone_verified: false,
        visibility: Visibility::Users,
        attributes: Default::default(),
        updated_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        deletion_scheduled_for: None,
    }
}

pub(crate) fn principal() -> Principal {
    Principal {
        user_id: UserId(USER),
        session_id: SessionId(SESSION),
        roles: ["user".to_owned(), "admin".to_owned()].into(),
        aal2: false,
    }
}

fn token_pair() -> TokenPair {
    TokenPair {
        access_token: "at".into(),
        token_type: "Bearer",
        expires_in: 900,
        refresh_token: "rt".into(),
        refresh_expires_in: 2_592_000,
        session_id: SessionId(SESSION),
    }
}

/// A response, read whole.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The codes and fields of a problem's `errors`, for compact asserts.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.json()["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap().to_owned(),
                            e["code"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], format!("urn:keyward:problem:{code}"));
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

pub(crate) const LIMIT: usize = 16 * 1024;

/// One request through a fresh public app backed by `fake`.
pub(crate) async fn call(fake: &Fake, req: TestRequest) -> Reply {
    call_with(fake, Duration::from_secs(5), req).await
}

pub(crate) async fn call_with(fake: &Fake, timeout: Duration, req: TestRequest) -> Reply {
    let state = web::Data::new(AppState::new(fake.recipients(), timeout));
    let app = test::init_service(public_app(state, LIMIT)).await;
    let res = test::call_service(&app, req.to_request()).await;
    let (status, headers) = (res.status(), res.headers().clone());
    let body = test::read_body(res).await.to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub(crate) fn post_json(path: &str, body: Value) -> TestRequest {
    TestRequest::post().uri(path).set_json(body)
}

pub(crate) fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}
