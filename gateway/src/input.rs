//! Reading request bodies: the JSON extractor's limits and error answers, and [`Fields`], which
//! reads an object field by field so every problem names its field and all of them are reported
//! at once.
//!
//! Refuses: business rules. Shapes are checked by the value types' own `parse`; what the values
//! mean (taken, expired, too common) is the context actors' business.

use std::io::ErrorKind;

use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::{web, HttpRequest};
use keyward_messages::FieldError;
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::problem::ApiError;

/// Bodies are flat objects; deeper nesting is refused rather than walked.
pub(crate) const MAX_JSON_DEPTH: usize = 8;

/// One-time and refresh tokens are short URL-safe strings; anything longer is not ours.
pub(crate) const TOKEN_MAX_BYTES: usize = 512;

/// The JSON extractor for every body: `application/json` (or `+json`) only, at most `limit`
/// bytes (after decompression), failures answered as problems.
pub(crate) fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .error_handler(move |err, _req: &HttpRequest| json_error(err, limit).into())
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. }
        | JsonPayloadError::Overflow { .. }
        | JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::payload_too_large(limit),
        JsonPayloadError::ContentType => ApiError::unsupported_media_type(),
        JsonPayloadError::Payload(PayloadError::Io(e)) if e.kind() == ErrorKind::TimedOut => {
            ApiError::body_timeout()
        }
        // NOTE: serde_json's text gives a position and a reason, never the input itself.
        JsonPayloadError::Deserialize(e) => {
            ApiError::invalid_json(format!("the body is not valid JSON: {e}"))
        }
        JsonPayloadError::Payload(e) => {
            tracing::debug!(error = %e, "could not read a request body");
            ApiError::invalid_body("the body could not be read (truncated or badly encoded)")
        }
        other => {
            tracing::debug!(error = %other, "unexpected JSON extractor error");
            ApiError::invalid_body("the body could not be read")
        }
    }
}

/// A JSON object being read into value types. Each read returns `None` after recording the
/// field's problem; [`Fields::finish`] then answers one 400 listing them all.
pub(crate) struct Fields {
    body: Map<String, Value>,
    errors: Vec<FieldError>,
}

enum Raw {
    Absent,
    NotString,
    Text(String),
}

impl Fields {
    pub(crate) fn new(body: web::Json<Value>) -> Result<Self, ApiError> {
        if depth(&body) > MAX_JSON_DEPTH {
            return Err(ApiError::invalid_json(format!(
                "the body nests deeper than {MAX_JSON_DEPTH} levels; send a flat JSON object"
            )));
        }
        match body.into_inner() {
            Value::Object(body) => Ok(Self {
                body,
                errors: Vec::new(),
            }),
            _ => Err(ApiError::invalid_json("expected a JSON object")),
        }
    }

    fn raw(&mut self, field: &str) -> Raw {
        match self.body.remove(field) {
            None | Some(Value::Null) => Raw::Absent,
            Some(Value::String(s)) => Raw::Text(s),
            Some(_) => Raw::NotString,
        }
    }

    fn record<T>(&mut self, parsed: Result<T, FieldError>) -> Option<T> {
        parsed.map_err(|e| self.errors.push(e)).ok()
    }

    /// A string field that must be present, parsed by a value type's constructor.
    pub(crate) fn required<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str, String) -> Result<T, FieldError>,
    ) -> Option<T> {
        match self.raw(field) {
            Raw::Absent => self.record(Err(required(field))),
            Raw::NotString => self.record(Err(not_a_string(field))),
            Raw::Text(s) => self.record(parse(field, s)),
        }
    }

    /// A string field that may be missing or null (`Some(None)`); present values must parse.
    pub(crate) fn optional<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str, String) -> Result<T, FieldError>,
    ) -> Option<Option<T>> {
        match self.raw(field) {
            Raw::Absent => Some(None),
            Raw::NotString => self.record(Err(not_a_string(field))),
            Raw::Text(s) => self.record(parse(field, s)).map(Some),
        }
    }

    /// An opaque one-time or refresh token.
    pub(crate) fn token(&mut self, field: &str) -> Option<SecretString> {
        self.required(field, parse_token)
    }

    /// Every problem at once, or the values. `build` unpacks the reads with `?`; it cannot meet
    /// a `None` once no error was recorded, but if it did the answer is a 500, not a panic.
    pub(crate) fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        if !self.errors.is_empty() {
            return Err(ApiError::invalid_fields(self.errors));
        }
        build().ok_or_else(|| {
            tracing::error!("a body field was lost without an error being recorded");
            ApiError::internal()
        })
    }
}

/// Nesting depth of a JSON value (a scalar is 0), without recursion.
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

fn required(field: &str) -> FieldError {
    FieldError::new(field, "required", format!("{field} is required"))
}

fn not_a_string(field: &str) -> FieldError {
    FieldError::new(field, "invalid_type", format!("{field} must be a string"))
}

/// Tokens are checked for shape only: present and short. Whether they are live is the actor's
/// decision.
pub(crate) fn parse_token(field: &str, raw: String) -> Result<SecretString, FieldError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(required(field));
    }
    if t.len() > TOKEN_MAX_BYTES {
        return Err(FieldError::new(
            field,
            "invalid_token_format",
            format!("{field} is not a valid token"),
        ));
    }
    Ok(SecretString::from(t.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use keyward_messages::{Email, Password};
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields::new(web::Json(v)).unwrap()
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        let e = Fields::new(web::Json(json!([1, 2]))).err().unwrap();
        assert_eq!(e.code(), "invalid_json");
    }

    #[test]
    fn missing_null_and_wrong_type_fields_are_all_reported_in_order() {
        let mut f = fields(json!({"password": null, "email": 3}));
        assert!(f.required("email", |k, v| Email::parse(k, &v)).is_none());
        assert!(f.required("password", Password::parse).is_none());
        assert!(f.token("token").is_none());
        let got: Vec<_> = f
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("email", "invalid_type", "email must be a string"),
                ("password", "required", "password is required"),
                ("token", "required", "token is required"),
            ]
        );
    }

    #[test]
    fn an_optional_field_may_be_absent_or_null_but_not_malformed() {
        let mut f = fields(json!({"a": null, "c": "x"}));
        assert!(matches!(
            f.optional("a", |_, v| Ok::<_, FieldError>(v)),
            Some(None)
        ));
        assert!(matches!(
            f.optional("b", |_, v| Ok::<_, FieldError>(v)),
            Some(None)
        ));
        let bad = f.optional("c", |k, _| {
            Err::<String, _>(FieldError::new(k, "bad", "bad"))
        });
        assert!(bad.is_none());
        assert!(f.finish(|| Some(())).is_err());
    }

    #[test]
    fn a_token_is_trimmed_and_bounded() {
        assert_eq!(
            parse_token("token", " abc ".into())
                .unwrap()
                .expose_secret(),
            "abc"
        );
        let long = "a".repeat(TOKEN_MAX_BYTES + 1);
        assert_eq!(
            parse_token("token", long).unwrap_err().code,
            "invalid_token_format"
        );
        assert_eq!(
            parse_token("token", "  ".into()).unwrap_err().code,
            "required"
        );
    }
}
