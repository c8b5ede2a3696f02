//! The one error type every command can answer with: small, kind-oriented, with a stable
//! snake_case `code` that clients may match on. Texts are safe to show to the client; causes
//! are logged by whoever produced the error, never carried here.

use serde::Serialize;

/// Stable error codes (the `code` member of problem+json bodies). Clients match on these.
pub mod codes {
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const INVALID_TOKEN: &str = "invalid_token";
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const INVALID_REFRESH_TOKEN: &str = "invalid_refresh_token";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const EMAIL_NOT_VERIFIED: &str = "email_not_verified";
    pub const ACCOUNT_BLOCKED: &str = "account_blocked";
    pub const USERNAME_TAKEN: &str = "username_taken";
    pub const SESSION_NOT_FOUND: &str = "session_not_found";
    pub const USER_NOT_FOUND: &str = "user_not_found";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const TOO_MANY_REQUESTS: &str = "too_many_requests";
    pub const OVERLOADED: &str = "overloaded";
    pub const UNAVAILABLE: &str = "service_unavailable";
    pub const INTERNAL: &str = "internal_error";
    pub const STEP_UP_REQUIRED: &str = "step_up_required";
    pub const INVALID_MFA_TOKEN: &str = "invalid_mfa_token";
}

/// One problem with one input field, e.g. `{field: "password", code: "too_short", message: …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What went wrong, by kind. The gateway maps each kind to one HTTP status in one place.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommandError {
    /// Input that parsed but breaks a rule (400), with the fields at fault.
    #[error("{detail}")]
    Invalid {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// Missing, wrong or expired credentials (401).
    #[error("{detail}")]
    Unauthenticated { code: &'static str, detail: String },
    /// Known caller, refused (403).
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// A uniqueness rule (409), naming the field.
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: String,
        field: Option<String>,
    },
    /// An identity whose email an account has (409 `account_exists`); with a link token when
    /// the user may prove that account to link the identity to it.
    #[error("{detail}")]
    AccountExists {
        detail: String,
        link_token: Option<String>,
    },
    /// A body too large for what it is (413), e.g. an image over the upload limit.
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// A body of a type the route does not take, or not of the type it claims (415).
    #[error("{detail}")]
    UnsupportedType { code: &'static str, detail: String },
    /// A body of the right type whose content cannot be used (422), e.g. an undecodable image.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// Too many attempts (429); retry after the given seconds.
    #[error("too many attempts")]
    RateLimited { retry_after_secs: u64 },
    /// Overloaded or a backend is down (503); retry after the given seconds.
    #[error("{detail}")]
    Unavailable {
        code: &'static str,
        detail: String,
        retry_after_secs: u64,
    },
    /// A bug or an unexpected backend failure (500). The cause was logged where it happened.
    #[error("internal error")]
    Internal,
}

impl CommandError {
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => "some fields are invalid; see errors".to_owned(),
        };
        Self::Invalid {
            code: codes::VALIDATION_FAILED,
            detail,
            errors,
        }
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, code, message)])
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::Invalid {
            code: codes::INVALID_TOKEN,
            detail: detail.into(),
            errors: vec![],
        }
    }

    pub fn unauthenticated(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            detail: detail.into(),
        }
    }

    pub fn overloaded(retry_after_secs: u64) -> Self {
        Self::Unavailable {
            code: codes::OVERLOADED,
            detail: "the server is busy; retry shortly".into(),
            retry_after_secs,
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable {
            code: codes::UNAVAILABLE,
            detail: detail.into(),
            retry_after_secs: 1,
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::TooLarge { code, .. }
            | Self::UnsupportedType { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::AccountExists { .. } => "account_exists",
            Self::RateLimited { .. } => codes::TOO_MANY_REQUESTS,
            Self::Internal => codes::INTERNAL,
        }
    }
}

impl From<FieldError> for CommandError {
    fn from(e: FieldError) -> Self {
        Self::invalid(vec![e])
    }
}
