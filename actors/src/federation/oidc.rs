//! OpenID Connect providers (`oidc`, `google`): endpoints from discovery, the identity from
//! the ID token (signature by the provider's keys, issuer, audience, expiry, nonce).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use keyward_messages::federation::NativeOAuth;
use keyward_messages::CommandError;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use secrecy::ExposeSecret;

use super::flow::{bad_id_token, callback_url, internal, unavailable, Asserted, Authorize};
use super::{FederationDeps as Deps, Provider};
use crate::error::HandlerError;

/// A client with the provider's discovered endpoints (authorization set, token and userinfo
/// as discovery says).
type Discovered = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

async fn client(deps: &Deps, p: &Provider) -> Result<Discovered, HandlerError> {
    let metadata = p
        .metadata(&deps.http)
        .await
        .map_err(|e| unavailable(p, &e))?;
    let redirect = RedirectUrl::new(callback_url(deps, p))
        .map_err(|e| internal("the callback URL does not parse", e))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(p.client_id.clone()),
        Some(ClientSecret::new(
            p.client_secret.expose_secret().to_owned(),
        )),
    )
    .set_redirect_uri(redirect))
}

fn asserted(c: &CoreIdTokenClaims) -> Asserted {
    Asserted {
        subject: c.subject().as_str().to_owned(),
        email: c.email().map(|e| e.as_str().to_owned()),
        email_verified: c.email_verified().unwrap_or(false),
        username: c.preferred_username().map(|u| u.as_str().to_owned()),
        avatar_url: c
            .picture()
            .and_then(|p| p.get(None))
            .map(|u| u.as_str().to_owned()),
    }
}

/// The authorization request: code flow with state, nonce and PKCE S256.
pub(super) async fn authorize(deps: &Deps, p: &Provider) -> Result<Authorize, HandlerError> {
    let client = client(deps, p).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in p.scopes.iter().filter(|s| *s != "openid") {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, state, nonce) = req.url();
    Ok(Authorize {
        url,
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// Exchanges the provider's code (with the PKCE verifier) and checks the ID token: its
/// signature (the provider's keys), issuer, audience, expiry and the flow's nonce.
pub(super) async fn identity(
    deps: &Deps,
    p: &Provider,
    nonce: &str,
    verifier: String,
    code: String,
) -> Result<Asserted, String> {
    let client = client(deps, p).await.map_err(|_| "discovery failed")?;
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&deps.http)
        .await
        .map_err(|e| crate::error::chain(&e))?;
    let id_token = openidconnect::TokenResponse::id_token(&response)
        .ok_or("the token response has no id_token")?;
    let nonce = Nonce::new(nonce.to_owned());
    let verifier = client.id_token_verifier();
    let checked = id_token
        .claims(&verifier, &nonce)
        .map(asserted)
        .map_err(|e| e.to_string());
    if checked.is_err() {
        // Perhaps rotated keys: fetch discovery again next time.
        p.forget_metadata().await;
    }
    checked
}

/// A native app's ID token, checked like the web flow's (the nonce when the app sent one);
/// with its expiry.
pub(super) async fn native(
    deps: &Deps,
    p: &Provider,
    m: &NativeOAuth,
) -> Result<(Asserted, DateTime<Utc>), HandlerError> {
    let Some(raw) = m.id_token.as_deref() else {
        return Err(HandlerError::from(CommandError::field(
            "id_token",
            "required",
            "send the ID token (a JWT) the provider's SDK returned",
        )));
    };
    let token = openidconnect::core::CoreIdToken::from_str(raw).map_err(|_| {
        HandlerError::from(CommandError::field(
            "id_token",
            "invalid_id_token",
            "send the ID token (a JWT) the provider's SDK returned",
        ))
    })?;
    let client = client(deps, p).await?;
    let expected = m.nonce.clone();
    let nonce_check = |got: Option<&Nonce>| match (&expected, got) {
        (None, _) => Ok(()),
        (Some(want), Some(got))
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                want.as_bytes(),
                got.secret().as_bytes(),
            )) =>
        {
            Ok(())
        }
        (Some(_), _) => Err("nonce mismatch".to_owned()),
    };
    // The site's own client id, then each native app's: a token for any of them is ours.
    let mut checked = token
        .claims(&client.id_token_verifier(), nonce_check)
        .cloned()
        .map_err(|e| e.to_string());
    if checked.is_err() && !p.native_client_ids.is_empty() {
        let metadata = p
            .metadata(&deps.http)
            .await
            .map_err(|e| unavailable(p, &e))?;
        for app in &p.native_client_ids {
            let verifier = openidconnect::core::CoreIdTokenVerifier::new_public_client(
                ClientId::new(app.clone()),
                metadata.issuer().clone(),
                metadata.jwks().clone(),
            );
            if let Ok(c) = token.claims(&verifier, nonce_check) {
                checked = Ok(c.clone());
                break;
            }
        }
    }
    match checked {
        Ok(c) => Ok((asserted(&c), c.expiration())),
        Err(e) => {
            tracing::info!(provider = %p.name, error = %e, "a native sign-in's ID token did not check out");
            p.forget_metadata().await;
            Err(bad_id_token(
                "the ID token does not check out (signature, issuer, audience, expiry or nonce)",
            ))
        }
    }
}
