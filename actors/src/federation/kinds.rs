//! One door per provider kind: the authorization request, the identity behind a callback's
//! code, and a native app's token. OpenID kinds (`oidc`, `google`) go to `oidc.rs`, plain
//! OAuth 2 kinds (`github`, `vk`, `yandex`, `oauth2`) to `plain.rs`.

use chrono::{DateTime, Utc};
use keyward_messages::federation::{CallbackQuery, NativeOAuth};
use keyward_storage::FlowRecord;

use super::flow::{pkce_verifier, Asserted, Authorize};
use super::{oidc, plain, FederationDeps as Deps, Kind, Provider};
use crate::error::HandlerError;

pub(super) async fn authorize(deps: &Deps, p: &Provider) -> Result<Authorize, HandlerError> {
    match &p.kind {
        Kind::OpenId(_) => oidc::authorize(deps, p).await,
        Kind::Plain(k) => plain::authorize(deps, p, k),
    }
}

/// The identity behind the callback's `code`; Err says why it did not check out (logged,
/// never shown).
pub(super) async fn identity(
    deps: &Deps,
    p: &Provider,
    flow: &FlowRecord,
    code: String,
    query: &CallbackQuery,
) -> Result<Asserted, String> {
    let verifier = pkce_verifier(deps, flow)?;
    match &p.kind {
        Kind::OpenId(_) => oidc::identity(deps, p, &flow.nonce, verifier, code).await,
        Kind::Plain(k) => plain::identity(deps, p, k, verifier, code, query).await,
    }
}

/// The identity behind a native app's token, with the time the token stops being valid.
pub(super) async fn native(
    deps: &Deps,
    p: &Provider,
    m: &NativeOAuth,
) -> Result<(Asserted, DateTime<Utc>), HandlerError> {
    match &p.kind {
        Kind::OpenId(_) => oidc::native(deps, p, m).await,
        Kind::Plain(k) => plain::native(deps, p, k, m).await,
    }
}
