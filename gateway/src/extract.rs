//! Extractors for what handlers need from the request besides the body: who the caller is
//! ([`Authenticated`], from a bearer token), where the request came from ([`Meta`]) and which
//! language they read ([`ClientLocale`]).
//!
//! Refuses: verifying tokens itself (the sessions context does, through `Authenticate`) and
//! trusting `X-Forwarded-For` (no trusted-proxy configuration exists yet).

use std::convert::Infallible;
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures::future::{ready, LocalBoxFuture, Ready};
use keyward_messages::access::{AuthenticateCaller, Caller};
use keyward_messages::commands::{Authenticate, Locale, Principal};
use keyward_messages::RequestMeta;
use secrecy::SecretString;
use uuid::Uuid;

use crate::middleware::{CorrelationId, RequestId};
use crate::problem::ApiError;
use crate::state::AppState;

/// Longer bearer tokens are refused without asking the sessions context.
const BEARER_MAX_BYTES: usize = 8 * 1024;
const USER_AGENT_MAX_CHARS: usize = 512;

/// The caller, proven by `Authorization: Bearer <access token>` and a live session.
pub(crate) struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ask = ask_with_bearer(
            req,
            |s| &s.to.sessions.authenticate,
            |meta, token| Authenticate { meta, token },
        );
        Box::pin(async move { ask.await.map(Authenticated) })
    }
}

/// A user (as [`Authenticated`]) or a service client, proven by its bearer token: for the
/// routes that products' services call (the check API).
pub(crate) struct AuthenticatedCaller(pub Caller);

impl FromRequest for AuthenticatedCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ask = ask_with_bearer(
            req,
            |s| &s.to.sessions.authenticate_caller,
            |meta, token| AuthenticateCaller { meta, token },
        );
        Box::pin(async move { ask.await.map(AuthenticatedCaller) })
    }
}

/// The request's bearer token, not yet verified: for a handler whose one message to its
/// context carries the token (the check API). Missing or malformed is a 401 here.
pub(crate) struct BearerToken(pub SecretString);

impl FromRequest for BearerToken {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer_token(req).map(BearerToken))
    }
}

/// The caller when the request carries a bearer token, else None. A token that is sent but
/// not valid is still a 401: a client that meant to sign in must learn that it did not.
pub(crate) struct MaybeAuthenticated(pub Option<Principal>);

impl FromRequest for MaybeAuthenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !req.headers().contains_key(header::AUTHORIZATION) {
            return Box::pin(async { Ok(MaybeAuthenticated(None)) });
        }
        let auth = Authenticated::from_request(req, payload);
        Box::pin(async move { Ok(MaybeAuthenticated(Some(auth.await?.0))) })
    }
}

/// Sends the request's bearer token to the sessions context as `make(meta, token)`; a refusal
/// carries the `invalid_token` challenge.
fn ask_with_bearer<M, T>(
    req: &HttpRequest,
    to: fn(&AppState) -> &actix::Recipient<M>,
    make: fn(RequestMeta, SecretString) -> M,
) -> LocalBoxFuture<'static, Result<T, ApiError>>
where
    M: actix::Message<Result = Result<T, keyward_messages::CommandError>> + Send + 'static,
    T: Send + 'static,
{
    let token = bearer_token(req);
    let meta = request_meta(req);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    Box::pin(async move {
        let token = token?;
        let Some(state) = state else {
            tracing::error!("AppState is not registered on this app");
            return Err(ApiError::internal());
        };
        state
            .ask(to(&state), make(meta, token))
            .await
            .map_err(ApiError::with_invalid_token_challenge)
    })
}

fn bearer_token(req: &HttpRequest) -> Result<SecretString, ApiError> {
    const HOW: &str = "send an access token as 'Authorization: Bearer <token>'";
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::missing_bearer(HOW));
    };
    // NOTE: bytes, each looked at once or twice: every bearer request runs this over a token
    // of about 800 bytes (str's checks and trims took 2% of a `me` request's CPU).
    let value = value.as_bytes().trim_ascii();
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return Err(ApiError::missing_bearer(HOW));
    };
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii_start());
    // A token is visible ASCII (RFC 6750's b64token and JWTs are), so no space or control byte.
    // NOTE: a fold, not `all`: without the early exit the compiler checks 32 bytes at a time.
    let graphic = token
        .iter()
        .fold(true, |ok, b| ok & (b'!'..=b'~').contains(b));
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() || !graphic {
        return Err(ApiError::missing_bearer(HOW));
    }
    if token.len() > BEARER_MAX_BYTES {
        return Err(
            ApiError::missing_bearer("the access token is too long").with_invalid_token_challenge()
        );
    }
    let token = String::from_utf8(token.to_vec()).map_err(|_| ApiError::missing_bearer(HOW))?;
    Ok(SecretString::from(token))
}

/// Who is asking, for events, sessions and logs.
pub(crate) struct Meta(pub RequestMeta);

impl FromRequest for Meta {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Meta(request_meta(req))))
    }
}

/// Who is asking: request id, peer address, user agent.
fn request_meta(req: &HttpRequest) -> RequestMeta {
    {
        // NOTE: without the request-id middleware (never in the real app) an id is still made,
        // so commands always carry one.
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map_or_else(|| Uuid::new_v4().to_string(), |id| id.0.clone());
        let correlation_id = req
            .extensions()
            .get::<CorrelationId>()
            .map_or_else(|| request_id.clone(), |id| id.0.clone());
        let user_agent = req.headers().get(header::USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(USER_AGENT_MAX_CHARS)
                .collect()
        });
        let trusted = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.trusted_proxies.as_slice())
            .unwrap_or_default();
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        RequestMeta {
            correlation_id,
            request_id,
            client_ip: client_ip(req.peer_addr().map(|a| a.ip()), &forwarded, trusted),
            user_agent,
            actor: None,
            actor_client: None,
        }
    }
}

/// The client's address. Only a trusted proxy's `X-Forwarded-For` is believed, and in it the
/// rightmost address that is not itself a trusted proxy is the client: entries to its left were
/// written by the client and can be forged.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    forwarded: &[&str],
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = forwarded
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// The language for emails, from `Accept-Language`.
pub(crate) struct ClientLocale(pub Locale);

impl FromRequest for ClientLocale {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        ready(Ok(ClientLocale(Locale::from_accept_language(header))))
    }
}

#[cfg(test)]
mod client_ip_tests {
    #![allow(clippy::unwrap_used)]
    use super::client_ip;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            client_ip(Some(ip("198.51.100.9")), &["203.0.113.7"], &[]),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_untrusted_address() {
        let trusted = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        // The client forged 1.1.1.1; the proxy appended the real peer it saw.
        let got = client_ip(
            Some(ip("127.0.0.1")),
            &["1.1.1.1, 203.0.113.7", "10.1.2.3"],
            &trusted,
        );
        assert_eq!(got, Some(ip("203.0.113.7")));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &[], &trusted),
            Some(ip("127.0.0.1"))
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &["junk, 10.0.0.5"], &trusted),
            Some(ip("10.0.0.5"))
        );
    }
}
