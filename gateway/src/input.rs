//! Reading request bodies: the JSON extractor's limits and error answers, and [`Valid`], which
//! reads a body into its DTO (a [`RequestBody`]: the one declaration of the body's shape, from
//! which its OpenAPI schema comes too) and validates it field by field, so every problem names
//! its field and all of them are reported at once.
//!
//! Refuses: business rules. Shapes are checked by the value types' own `parse`; what the values
//! mean (taken, expired, too common) is the context actors' business.

use std::io::ErrorKind;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use keyward_messages::FieldError;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use keyward_messages::profiles::Patch;

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

/// The query extractor for every route: a query string it cannot read (a parameter given
/// twice, a value of the wrong type) is a 400 problem naming the parameter where it can, not
/// actix's plain-text 400.
pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req: &HttpRequest| query_error(&err).into())
}

fn query_error(err: &QueryPayloadError) -> ApiError {
    let text = match err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    // NOTE: serde_urlencoded names the parameter between backticks in these two.
    let field = ["duplicate field `", "missing field `"]
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .and_then(|rest| rest.split_once('`'))
        .map_or("query", |(f, _)| f);
    ApiError::invalid_fields(vec![FieldError::new(
        field,
        "invalid_query",
        format!(
            "the query string could not be read ({text}); give each parameter once, as documented"
        ),
    )])
}

// NOTE: serde_json's text gives a position and a reason, never the input itself.
fn not_json(e: &serde_json::Error) -> ApiError {
    ApiError::invalid_json(format!("the body is not valid JSON: {e}"))
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
        JsonPayloadError::Deserialize(e) => not_json(&e),
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

/// One field of a request body as sent: absent or null, a string, or anything else. It never
/// fails to deserialize (a missing field is `None` too), so every field's problem is found by
/// [`Fields`] and reported together. DTOs declare its schema with `#[schema(value_type = …)]`.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(crate) struct Input(Option<Value>);

impl From<Option<Value>> for Input {
    fn from(v: Option<Value>) -> Self {
        Input(v)
    }
}

/// A request body type: deserialized from the JSON object (every field an [`Input`]), then
/// validated into value types by `validate`, which reads each field through [`Fields`].
pub(crate) trait RequestBody: DeserializeOwned {
    type Valid;
    fn validate(self, f: &mut Fields) -> Option<Self::Valid>;
}

/// A body read and validated: `Valid<RegisterRequest>` holds what `validate` returned. Any bad
/// field makes one 400 that names them all; a body that is not JSON, too deep, not an object,
/// too large, too slow or of another type gets its own problem from [`json_config`].
pub(crate) struct Valid<T: RequestBody>(pub T::Valid);

impl<T: RequestBody + 'static> FromRequest for Valid<T> {
    // NOTE: the JSON extractor's own errors are already problems (see `json_config`) and pass
    // through unchanged.
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let dto: T = object(json.await?.into_inner())?;
            let mut f = Fields::default();
            let valid = dto.validate(&mut f);
            Ok(f.finish(|| valid).map(Valid)?)
        })
    }
}

/// A body that is any JSON object (merge patches, settings), with the same limits and
/// problems as [`Valid`]; its members are the handler's to check.
pub(crate) struct JsonObject(pub serde_json::Map<String, Value>);

impl FromRequest for JsonObject {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move { Ok(JsonObject(object(json.await?.into_inner())?)) })
    }
}

/// A body read as `web::Json<Box<RawValue>>` (the limits and problems of [`json_config`]) as
/// a JSON object, refused as [`JsonObject`] refuses.
pub(crate) fn json_object(raw: &RawValue) -> Result<serde_json::Map<String, Value>, ApiError> {
    let value = serde_json::from_str(raw.get()).map_err(|e| not_json(&e))?;
    object(value)
}

/// Reads a raw body of at most `limit` bytes; more is a 413 problem before it is all read.
pub(crate) async fn read_bytes(mut body: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt as _;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match e {
            PayloadError::Io(io) if io.kind() == ErrorKind::TimedOut => ApiError::body_timeout(),
            _ => ApiError::invalid_body("the body could not be read (truncated or badly encoded)"),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A flat JSON object into its DTO. Checked first, since serde would also read an array into a
/// struct, field by position.
fn object<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    if depth(&body) > MAX_JSON_DEPTH {
        return Err(ApiError::invalid_json(format!(
            "the body nests deeper than {MAX_JSON_DEPTH} levels; send a flat JSON object"
        )));
    }
    if !body.is_object() {
        return Err(ApiError::invalid_json("expected a JSON object"));
    }
    serde_json::from_value(body).map_err(|e| {
        tracing::error!(error = %e, "a request DTO refused a JSON object");
        ApiError::internal()
    })
}

/// Collects every field's problem while a body is validated.
#[derive(Default)]
pub(crate) struct Fields {
    errors: Vec<FieldError>,
}

enum Raw {
    Absent,
    NotString,
    Text(String),
}

impl Input {
    fn raw(self) -> Raw {
        match self.0 {
            None | Some(Value::Null) => Raw::Absent,
            Some(Value::String(s)) => Raw::Text(s),
            Some(_) => Raw::NotString,
        }
    }
}

impl Fields {
    fn record<T>(&mut self, parsed: Result<T, FieldError>) -> Option<T> {
        parsed.map_err(|e| self.errors.push(e)).ok()
    }

    /// A string field that must be present, parsed by a value type's constructor.
    pub(crate) fn required<T>(
        &mut self,
        field: &str,
        input: Input,
        parse: impl FnOnce(&str, String) -> Result<T, FieldError>,
    ) -> Option<T> {
        match input.raw() {
            Raw::Absent => self.record(Err(required(field))),
            Raw::NotString => self.record(Err(not_a_string(field))),
            Raw::Text(s) => self.record(parse(field, s)),
        }
    }

    /// A string field that may be missing or null (`Some(None)`); present values must parse.
    pub(crate) fn optional<T>(
        &mut self,
        field: &str,
        input: Input,
        parse: impl FnOnce(&str, String) -> Result<T, FieldError>,
    ) -> Option<Option<T>> {
        match input.raw() {
            Raw::Absent => Some(None),
            Raw::NotString => self.record(Err(not_a_string(field))),
            Raw::Text(s) => self.record(parse(field, s)).map(Some),
        }
    }

    /// A member of a JSON merge patch: absent keeps, `null` clears, a string must parse.
    pub(crate) fn patch<T>(
        &mut self,
        field: &str,
        value: Option<Value>,
        parse: impl FnOnce(&str, &str) -> Result<T, FieldError>,
    ) -> Option<Patch<T>> {
        match value {
            None => Some(Patch::Keep),
            Some(Value::Null) => Some(Patch::Clear),
            Some(Value::String(s)) => self.record(parse(field, &s)).map(Patch::Set),
            Some(_) => self.record(Err(not_a_string(field))),
        }
    }

    /// A JSON object field (a WebAuthn credential) that may be missing or null.
    pub(crate) fn optional_object(&mut self, field: &str, input: Input) -> Option<Option<Value>> {
        match input.0 {
            None | Some(Value::Null) => Some(None),
            Some(v @ Value::Object(_)) => Some(Some(v)),
            Some(_) => self.record(Err(FieldError::new(
                field,
                "invalid_type",
                format!("{field} must be a JSON object"),
            ))),
        }
    }

    /// Records a problem found outside the field readers.
    pub(crate) fn error(&mut self, e: FieldError) {
        self.errors.push(e);
    }

    /// Every problem at once, or the values (for bodies read without [`Valid`]).
    pub(crate) fn done<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        self.finish(build)
    }

    /// An opaque one-time or refresh token.
    pub(crate) fn token(&mut self, field: &str, input: Input) -> Option<SecretString> {
        self.required(field, input, parse_token)
    }

    /// Every problem at once, or the values. `valid` cannot be `None` once no error was
    /// recorded, but if it were the answer is a 500, not a panic.
    fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
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

    #[derive(Deserialize)]
    struct Dto {
        email: Input,
        password: Input,
        token: Input,
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        let e = object::<Dto>(json!([1, 2, 3])).err().unwrap();
        assert_eq!(e.code(), "invalid_json");
    }

    #[test]
    fn missing_null_and_wrong_type_fields_are_all_reported_in_order() {
        let dto: Dto = object(json!({"password": null, "email": 3})).unwrap();
        let mut f = Fields::default();
        assert!(f
            .required("email", dto.email, |k, v| Email::parse(k, &v))
            .is_none());
        assert!(f
            .required("password", dto.password, Password::parse)
            .is_none());
        assert!(f.token("token", dto.token).is_none());
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
        let input = |v: Option<Value>| Input(v);
        let mut f = Fields::default();
        assert!(matches!(
            f.optional("a", input(Some(Value::Null)), |_, v| Ok::<_, FieldError>(v)),
            Some(None)
        ));
        assert!(matches!(
            f.optional("b", input(None), |_, v| Ok::<_, FieldError>(v)),
            Some(None)
        ));
        let bad = f.optional("c", input(Some(json!("x"))), |k, _| {
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
