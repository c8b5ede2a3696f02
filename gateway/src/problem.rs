//! The one mapping from errors to HTTP: [`ApiError`] and its RFC 9457 `application/problem+json`
//! body. Every `CommandError` kind gets its status here, in a `match` with no catch-all arm, so a
//! new kind forces a decision.
//!
//! Refuses: putting internal text in a body. Bodies carry the safe `detail` of the command error;
//! a 500 says only that it was logged.

use actix::MailboxError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use keyward_messages::{codes, CommandError, FieldError};
use serde::Serialize;

/// Codes the HTTP layer produces itself (the command codes live in `keyward_messages::codes`).
pub(crate) mod http_codes {
    pub const INVALID_JSON: &str = "invalid_json";
    pub const INVALID_BODY: &str = "invalid_body";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
}

const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
const INTERNAL_DETAIL: &str = "an internal error occurred; it has been logged";

/// An error on its way to the client, already reduced to what the client may see.
#[derive(Debug, thiserror::Error)]
#[error("{} {}: {}", .status.as_u16(), .code, .detail)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after_secs: Option<u64>,
    www_authenticate: Option<&'static str>,
    /// `account_exists`: the token for proving the account (POST /v1/auth/oauth/link); boxed
    /// to keep every `Result<_, ApiError>` small.
    link_token: Option<Box<str>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            www_authenticate: None,
            link_token: None,
        }
    }

    /// The fields a 400 names, in order.
    #[cfg(test)]
    pub(crate) fn field_names(&self) -> Vec<String> {
        self.errors.iter().map(|e| e.field.clone()).collect()
    }

    /// One 400 `validation_failed` listing every field at fault.
    pub(crate) fn invalid_fields(errors: Vec<FieldError>) -> Self {
        CommandError::invalid(errors).into()
    }

    pub(crate) fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, http_codes::INVALID_JSON, detail)
    }

    pub(crate) fn invalid_body(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, http_codes::INVALID_BODY, detail)
    }

    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            http_codes::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with Content-Type: application/json",
        )
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            http_codes::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    }

    pub(crate) fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            http_codes::REQUEST_TIMEOUT,
            "the request body did not arrive in time; send it in one go",
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "no resource at this path",
        )
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            http_codes::METHOD_NOT_ALLOWED,
            "this path does not accept this method; see the Allow header",
        )
    }

    /// No usable `Authorization: Bearer` header: the client never tried.
    pub(crate) fn missing_bearer(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, detail);
        e.www_authenticate = Some("Bearer");
        e
    }

    /// A bearer token was sent and refused (RFC 6750 §3.1).
    pub(crate) fn with_invalid_token_challenge(mut self) -> Self {
        if self.status == StatusCode::UNAUTHORIZED {
            self.www_authenticate = Some(r#"Bearer error="invalid_token""#);
        }
        self
    }

    /// The context actor did not answer: stopped, or slower than the request timeout.
    pub(crate) fn mailbox(err: MailboxError, command: &str) -> Self {
        tracing::warn!(code = codes::UNAVAILABLE, command, error = %err, "context actor did not answer");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "the service is temporarily unavailable; retry shortly",
        );
        e.retry_after_secs = Some(1);
        e
    }

    /// A bug in the gateway itself (e.g. missing app state); the cause is logged by the caller.
    pub(crate) fn internal() -> Self {
        CommandError::Internal.into()
    }

    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl From<CommandError> for ApiError {
    fn from(err: CommandError) -> Self {
        let code = err.code();
        match err {
            CommandError::Invalid {
                code,
                detail,
                errors,
            } => {
                let mut e = Self::new(StatusCode::BAD_REQUEST, code, detail);
                e.errors = errors;
                e
            }
            CommandError::Unauthenticated { code, detail } => {
                Self::new(StatusCode::UNAUTHORIZED, code, detail)
            }
            CommandError::Forbidden { code, detail } => {
                Self::new(StatusCode::FORBIDDEN, code, detail)
            }
            CommandError::NotFound { code, detail } => {
                Self::new(StatusCode::NOT_FOUND, code, detail)
            }
            CommandError::Conflict {
                code,
                detail,
                field,
            } => {
                let mut e = Self::new(StatusCode::CONFLICT, code, detail.clone());
                e.errors = field
                    .map(|f| vec![FieldError::new(&f, code, detail)])
                    .unwrap_or_default();
                e
            }
            CommandError::AccountExists { detail, link_token } => {
                let mut e = Self::new(StatusCode::CONFLICT, "account_exists", detail);
                e.link_token = link_token.map(String::into_boxed_str);
                e
            }
            CommandError::TooLarge { code, detail } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, detail)
            }
            CommandError::UnsupportedType { code, detail } => {
                Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, detail)
            }
            CommandError::Unprocessable { code, detail } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
            }
            CommandError::RateLimited { retry_after_secs } => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    code,
                    format!("too many attempts; retry in {retry_after_secs} seconds"),
                );
                e.retry_after_secs = Some(retry_after_secs);
                e
            }
            CommandError::Unavailable {
                code,
                detail,
                retry_after_secs,
            } => {
                // Load shedding is logged (at most once a second) where it happens.
                if code == "overloaded" {
                    tracing::debug!(code, retry_after_secs, "answering 503");
                } else {
                    tracing::warn!(code, retry_after_secs, "answering 503");
                }
                let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail);
                e.retry_after_secs = Some(retry_after_secs);
                e
            }
            CommandError::Internal => {
                // NOTE: the cause was logged where it happened; this line ties it to the request.
                tracing::error!(code, "answering 500");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, INTERNAL_DETAIL)
            }
        }
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    link_token: Option<&'a str>,
}

fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Invalid request",
        401 => "Authentication required",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Payload too large",
        415 => "Unsupported media type",
        429 => "Too many requests",
        500 => "Internal server error",
        503 => "Service unavailable",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = ProblemBody {
            kind: format!("urn:keyward:problem:{}", self.code),
            title: title(self.status),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            link_token: self.link_token.as_deref(),
        };
        let mut res = HttpResponse::build(self.status);
        res.content_type(PROBLEM_CONTENT_TYPE)
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(secs) = self.retry_after_secs {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(challenge) = self.www_authenticate {
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        match serde_json::to_vec(&body) {
            Ok(bytes) => res.body(bytes),
            Err(err) => {
                tracing::error!(error = %err, "could not serialise a problem body");
                HttpResponse::InternalServerError().finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use actix_web::body::to_bytes;
    use serde_json::Value;

    async fn body_of(e: ApiError) -> (StatusCode, header::HeaderMap, Value) {
        let res = e.error_response();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = to_bytes(res.into_body()).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn a_problem_body_has_every_rfc_9457_member_and_our_code() {
        let (status, headers, body) = body_of(ApiError::not_found()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        assert_eq!(body["type"], "urn:keyward:problem:not_found");
        assert_eq!(body["title"], "Not found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["code"], "not_found");
        assert!(body["detail"].is_string());
        assert!(body.get("errors").is_none(), "no empty errors member");
    }

    #[actix_web::test]
    async fn a_conflict_names_its_field_in_errors() {
        let e = CommandError::Conflict {
            code: codes::USERNAME_TAKEN,
            detail: "this username is taken".into(),
            field: Some("username".into()),
        };
        let (status, _, body) = body_of(e.into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["errors"][0]["field"], "username");
        assert_eq!(body["errors"][0]["code"], "username_taken");
    }

    #[test]
    fn an_internal_error_never_shows_its_text() {
        let e: ApiError = CommandError::Internal.into();
        assert_eq!(e.detail, INTERNAL_DETAIL);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn only_a_401_gets_the_invalid_token_challenge() {
        let e = ApiError::not_found().with_invalid_token_challenge();
        assert!(e.www_authenticate.is_none());
        let e: ApiError = CommandError::unauthenticated(codes::INVALID_TOKEN, "expired").into();
        assert!(e.with_invalid_token_challenge().www_authenticate.is_some());
    }
}
