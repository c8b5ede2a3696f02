//! Messages of the federation context: social login through OpenID Connect and plain OAuth 2
//! providers.

use actix::Message;
use serde::Serialize;

use crate::error::CommandError;
use crate::mfa::LoginReply;
use crate::RequestMeta;

/// Where to send the browser next (a 302).
#[derive(Clone, Debug, Serialize)]
pub struct Redirect {
    pub location: String,
}

/// Gateway → federation. Starts a web login at `provider`; the browser comes back to the
/// callback, then goes to `redirect_uri` (from the allowlist) with a one-time code.
#[derive(Debug, Message)]
#[rtype(result = "Result<Redirect, CommandError>")]
pub struct StartOAuth {
    pub meta: RequestMeta,
    pub provider: String,
    pub redirect_uri: String,
    /// The app's own `state`, given back with the code (its CSRF check).
    pub app_state: Option<String>,
}

/// What a provider's redirect to the callback carries.
#[derive(Clone, Debug, Default)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// VK ID's device id, which its token request requires with the code.
    pub device_id: Option<String>,
}

/// Gateway → federation. The provider's redirect back: a 302 to the app with a one-time
/// `code` (or an `error`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Redirect, CommandError>")]
pub struct OAuthCallback {
    pub meta: RequestMeta,
    pub provider: String,
    pub query: CallbackQuery,
}

/// Gateway → federation. The app exchanges the one-time code for tokens (or, for a user
/// with a second factor, the second step).
#[derive(Debug, Message)]
#[rtype(result = "Result<LoginReply, CommandError>")]
pub struct ExchangeOAuthCode {
    pub meta: RequestMeta,
    pub code: String,
}

/// Gateway → federation. A native app signs in with the ID token its provider SDK gave it.
#[derive(Debug, Message)]
#[rtype(result = "Result<LoginReply, CommandError>")]
pub struct NativeOAuth {
    pub meta: RequestMeta,
    pub provider: String,
    /// An OpenID provider's ID token (a JWT).
    pub id_token: Option<String>,
    /// A plain OAuth 2 provider's access token, for its userinfo endpoint.
    pub access_token: Option<String>,
    /// The nonce the app put in its request to the provider, when it used one.
    pub nonce: Option<String>,
}

/// One of the caller's linked identities.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    pub provider: String,
    /// The email the provider gave last.
    pub email: Option<String>,
    pub email_verified: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityList {
    pub identities: Vec<IdentityView>,
}

/// Gateway → federation. The caller's linked identities.
#[derive(Debug, Message)]
#[rtype(result = "Result<IdentityList, CommandError>")]
pub struct ListIdentities {
    pub meta: RequestMeta,
    pub principal: crate::commands::Principal,
}

/// Gateway → federation. Unlinks one of the caller's identities; not the last way to log in.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct UnlinkIdentity {
    pub meta: RequestMeta,
    pub principal: crate::commands::Principal,
    pub identity_id: uuid::Uuid,
}

/// Gateway → federation. Links an identity at `provider` to the signed-in caller: the browser
/// goes to the provider and comes back to `redirect_uri` with `linked` (or `error`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Redirect, CommandError>")]
pub struct StartLink {
    pub meta: RequestMeta,
    pub principal: crate::commands::Principal,
    pub provider: String,
    pub redirect_uri: String,
    pub app_state: Option<String>,
}

/// Gateway → federation. Sends a code to the verified email of the account a pending link
/// would join (the proof by email).
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::mfa::CodeSent, CommandError>")]
pub struct SendLinkCode {
    pub meta: RequestMeta,
    pub link_token: String,
}

/// How the user proves the account a pending link would join.
#[derive(Debug)]
pub enum LinkProof {
    Password(crate::Password),
    /// The code SendLinkCode sent to the account's email.
    Code(String),
}

/// Gateway → federation. Proves the account and links the pending identity to it; then signs
/// in as a social login does.
#[derive(Debug, Message)]
#[rtype(result = "Result<LoginReply, CommandError>")]
pub struct ConfirmLink {
    pub meta: RequestMeta,
    pub link_token: String,
    pub proof: LinkProof,
}
