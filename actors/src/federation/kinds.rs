//! One door per provider kind: the authorization request, the identity behind a callback's
//! code, and a native app's token.

use chrono::{DateTime, Utc};
use keyward_messages::federation::{CallbackQuery, NativeOAuth};
use keyward_storage::FlowRecord;

use super::flow::{pkce_verifier, Asserted, Authorize};
use super::{oidc, FederationDeps as Deps, Provider};
use crate::error::HandlerError;

pub(super) async fn authorize(deps: &Deps, p: &Provider) -> Result<Authorize, HandlerError> {
    oidc::authorize(deps, p).await
}

/// The identity behind the callback's `code`; Err says why it did not check out (logged,
/// never shown).
pub(super) async fn identity(
    deps: &Deps,
    p: &Provider,
    flow: &FlowRecord,
    code: String,
    _query: &CallbackQuery,
) -> Result<Asserted, String> {
    let verifier = pkce_verifier(deps, flow)?;
    oidc::identity(deps, p, &flow.nonce, verifier, code).await
}

/// The identity behind a native app's token, with the time the token stops being valid.
pub(super) async fn native(
    deps: &Deps,
    p: &Provider,
    m: &NativeOAuth,
) -> Result<(Asserted, DateTime<Utc>), HandlerError> {
    oidc::native(deps, p, m).await
}
