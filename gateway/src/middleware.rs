//! Cross-cutting request handling: the request id (reused or generated, echoed, and carried by
//! the span every log line of the request sits in), one access-log line per request, security
//! headers, the body deadline and the closing of connections whose body was not read, and
//! problem bodies for actix's own bare 405s.
//!
//! Refuses: logging bodies, query strings or the Authorization header. The access line names the
//! method, the path (without query: it may hold tokens), the status and the latency.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{web, Error, HttpMessage, ResponseError};
use futures::StreamExt;
use tracing::Instrument;
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::AppState;

type BoxedPayloadStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<web::Bytes, PayloadError>>>>;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const REQUEST_ID_MAX: usize = 128;

/// The id of the current request, in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub String);

/// The correlation id of the current request (the caller's, or the request id).
#[derive(Clone, Debug)]
pub(crate) struct CorrelationId(pub String);

/// An incoming id is reused only when it is safe to log and echo as is.
fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    incoming_id(headers, &REQUEST_ID)
}

fn incoming_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= REQUEST_ID_MAX
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| v.to_owned())
}

/// Outermost middleware: request id, span, access log.
pub(crate) async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = incoming_request_id(req.headers()).unwrap_or_else(|| Uuid::new_v4().to_string());
    let correlation = incoming_id(req.headers(), &CORRELATION_ID).unwrap_or_else(|| id.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut()
        .insert(CorrelationId(correlation.clone()));
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, correlation_id = %correlation, method = %method, path = %path);
    let started = Instant::now();

    // NOTE: the request must not be cloned before routing (actix needs it unshared), so an
    // error escaping the app is logged and passed on: actix renders it, without our header.
    let outcome = async move { next.call(req).await }
        .instrument(span.clone())
        .await;
    let status = match &outcome {
        Ok(res) => res.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            status = status.as_u16(),
            latency_ms,
            "request finished"
        );
    });
    let mut res = outcome?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        res.headers_mut().insert(CORRELATION_ID, v);
    }
    Ok(res)
}

/// Guards the request body and the connection. The body gets a deadline counted from the end
/// of its head, for chunked and Content-Length bodies alike: a client that trickles it gets 408
/// (through the JSON extractor). After any reply whose body was not read to its end (refused
/// for its size or its pace, or never needed by the route), and after the first reply on a
/// connection older than `connection_max`, the connection is closed: what the client still
/// sends is never read.
pub(crate) async fn body_guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let conn = crate::connection::of(&req);
    let ended = Rc::new(Cell::new(!has_body(req.headers())));
    if let Some(limit) = state
        .as_ref()
        .map(|s| s.body_timeout)
        .filter(|_| !ended.get())
    {
        let deadline = actix_web::rt::time::Instant::now() + limit;
        let inner = req.take_payload();
        let seen_end = ended.clone();
        let timed = futures::stream::unfold(Some(inner), move |state| {
            let seen_end = seen_end.clone();
            async move {
                let mut inner = state?;
                let left = deadline.saturating_duration_since(actix_web::rt::time::Instant::now());
                match actix_web::rt::time::timeout(left, inner.next()).await {
                    Ok(Some(chunk)) => Some((chunk, Some(inner))),
                    Ok(None) => {
                        seen_end.set(true);
                        None
                    }
                    Err(_) => {
                        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "body deadline");
                        Some((Err(PayloadError::Io(e)), None))
                    }
                }
            }
        });
        let boxed: BoxedPayloadStream = Box::pin(timed);
        req.set_payload(Payload::from(boxed));
    }
    let mut res = next.call(req).await?;
    if let Some(conn) = conn {
        let too_old = state.is_some_and(|s| conn.age() >= s.connection_max);
        if !ended.get() || too_old {
            conn.close_after(&mut res);
        }
    }
    Ok(res)
}

/// HTTP/1.1 without Content-Length or Transfer-Encoding, or with `Content-Length: 0`, has no
/// body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// actix answers a known path with an unknown method by an empty 405 carrying `Allow`; give it
/// a problem body and keep the `Allow`.
pub(crate) async fn problem_for_bare_405(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let res = next.call(req).await?;
    if res.status() != StatusCode::METHOD_NOT_ALLOWED
        || res.headers().contains_key(header::CONTENT_TYPE)
    {
        return Ok(res.map_into_boxed_body());
    }
    let allow = res.headers().get(header::ALLOW).cloned();
    let (req, _) = res.into_parts();
    let mut problem = ApiError::method_not_allowed().error_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(ServiceResponse::new(req, problem))
}

/// Headers every public response carries (a handler may set a stricter CSP of its own).
pub(crate) fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"))
        .add((header::REFERRER_POLICY, "no-referrer"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn with_id(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn a_well_formed_incoming_request_id_is_reused() {
        assert_eq!(
            incoming_request_id(&with_id("abc-123_x.y")).as_deref(),
            Some("abc-123_x.y")
        );
    }

    #[test]
    fn an_empty_long_or_odd_request_id_is_not_reused() {
        assert_eq!(incoming_request_id(&with_id("")), None);
        assert_eq!(incoming_request_id(&with_id("a b")), None);
        assert_eq!(incoming_request_id(&with_id("a/b")), None);
        assert_eq!(incoming_request_id(&with_id(&"a".repeat(129))), None);
        assert!(incoming_request_id(&with_id(&"a".repeat(128))).is_some());
        assert_eq!(incoming_request_id(&HeaderMap::new()), None);
    }
}
