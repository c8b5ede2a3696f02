//! Messages of the mfa context: second factors (TOTP, recovery codes), the second step of a
//! login, and step-up.

use actix::Message;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::commands::{Principal, TokenPair};
use crate::error::{CommandError, FieldError};
use crate::{RequestMeta, UserId};

/// Which factor a code is for: a factor's id, or `recovery` for a recovery code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorRef {
    Factor(Uuid),
    Recovery,
}

impl FactorRef {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let raw = raw.trim();
        if raw == "recovery" {
            return Ok(Self::Recovery);
        }
        Uuid::parse_str(raw).map(Self::Factor).map_err(|_| {
            FieldError::new(
                field,
                "invalid_factor_id",
                "use a factor id from the login reply or GET /v1/users/me/mfa, or `recovery`",
            )
        })
    }
}

/// A code as typed: 6 digits for TOTP (spaces ignored), or a recovery code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let code: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if code.is_empty() || code.len() > 32 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(FieldError::new(
                field,
                "invalid_code",
                "enter the 6 digits of your authenticator app, or a recovery code",
            ));
        }
        Ok(Self(code.to_ascii_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What proves a factor: a code, or for a passkey the browser's assertion
/// (`PublicKeyCredential.toJSON()`).
#[derive(Clone, Debug, PartialEq)]
pub enum Proof {
    Code(Code),
    Passkey(serde_json::Value),
}

/// WebAuthn options for `navigator.credentials.create` or `.get`, binary fields base64url
/// (`PublicKeyCredential.parseCreationOptionsFromJSON(reply.publicKey)` reads them).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyOptions {
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
}

/// Gateway → mfa. Options to register a passkey for the caller (aal2 once they have a factor).
#[derive(Debug, Message)]
#[rtype(result = "Result<PasskeyOptions, CommandError>")]
pub struct PasskeyRegistrationOptions {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → mfa. The browser's new credential for the options above.
#[derive(Debug, Message)]
#[rtype(result = "Result<EnrolledFactor, CommandError>")]
pub struct RegisterPasskey {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub credential: serde_json::Value,
    /// What the user calls it ("Work laptop"); at most 64 characters.
    pub name: Option<String>,
}

/// Gateway → mfa. Options for a passwordless login with a discoverable credential.
#[derive(Debug, Message)]
#[rtype(result = "Result<PasskeyOptions, CommandError>")]
pub struct PasskeyLoginOptions {
    pub meta: RequestMeta,
}

/// Gateway → mfa. A passwordless login: the browser's assertion for the options above.
#[derive(Debug, Message)]
#[rtype(result = "Result<TokenPair, CommandError>")]
pub struct PasskeyLogin {
    pub meta: RequestMeta,
    pub credential: serde_json::Value,
}

/// Gateway → mfa. Starts a TOTP enrolment (not active until confirmed).
#[derive(Debug, Message)]
#[rtype(result = "Result<TotpEnrollment, CommandError>")]
pub struct EnrollTotp {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// A TOTP secret to put in an authenticator app.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TotpEnrollment {
    #[schema(value_type = String, format = Uuid)]
    pub factor_id: Uuid,
    /// Base32, for typing in by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The otpauth URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// Gateway → mfa. Makes the caller's verified phone (POST /v1/users/me/phone) an SMS factor.
#[derive(Debug, Message)]
#[rtype(result = "Result<EnrolledFactor, CommandError>")]
pub struct EnrollSms {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → mfa. Makes codes to the caller's verified email address a factor.
#[derive(Debug, Message)]
#[rtype(result = "Result<EnrolledFactor, CommandError>")]
pub struct EnrollEmail {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// A factor just enrolled; the first one comes with recovery codes, shown once.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EnrolledFactor {
    #[schema(value_type = String, format = Uuid)]
    pub factor_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// Gateway → mfa. Sends a code for an SMS or email factor: for the second step of a login
/// (`mfa_token`) or for step-up (the caller's bearer token).
#[derive(Debug, Message)]
#[rtype(result = "Result<CodeSent, CommandError>")]
pub struct SendCode {
    pub meta: RequestMeta,
    pub mfa_token: Option<String>,
    pub principal: Option<Principal>,
    pub factor_id: Uuid,
}

/// A code is on its way; for a passkey factor, the options to sign instead.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CodeSent {
    /// Seconds the code (or the passkey challenge) is valid for.
    pub expires_in: u64,
    /// For a passkey factor: options for `navigator.credentials.get`, base64url binary fields.
    #[serde(rename = "publicKey", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub public_key: Option<serde_json::Value>,
}

/// Gateway → mfa. The first code of a TOTP enrolment.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<RecoveryCodes>, CommandError>")]
pub struct ConfirmTotp {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub code: Code,
}

/// Recovery codes, shown once.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// Gateway → mfa. Ten new recovery codes (the old ones die); needs aal2.
#[derive(Debug, Message)]
#[rtype(result = "Result<RecoveryCodes, CommandError>")]
pub struct NewRecoveryCodes {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// Gateway → mfa. The caller's factors.
#[derive(Debug, Message)]
#[rtype(result = "Result<FactorList, CommandError>")]
pub struct ListFactors {
    pub meta: RequestMeta,
    pub principal: Principal,
}

/// One confirmed factor.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FactorView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// `totp`, `sms`, `email` or `passkey`.
    #[serde(rename = "type")]
    pub kind: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FactorList {
    pub factors: Vec<FactorView>,
    /// Unused recovery codes.
    pub recovery_codes_left: u64,
}

/// Gateway → mfa. Removes one of the caller's factors; needs aal2.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct RemoveFactor {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub factor_id: Uuid,
}

/// A factor a login can continue with.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FactorOption {
    /// A factor id, or `recovery`.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The reply to a password login of a user with a second factor.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MfaRequired {
    /// Always true: a client tells this reply from a TokenPair by it.
    pub mfa_required: bool,
    /// Opaque, single use, valid 5 minutes: give it to POST /v1/auth/mfa/verify.
    pub mfa_token: String,
    pub factors: Vec<FactorOption>,
}

/// What a login answers: tokens, or (for a user with a second factor) the second step.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginReply {
    Tokens(TokenPair),
    Mfa(MfaRequired),
}

/// Gateway → mfa. The second step of a login.
#[derive(Debug, Message)]
#[rtype(result = "Result<TokenPair, CommandError>")]
pub struct VerifyMfa {
    pub meta: RequestMeta,
    pub mfa_token: String,
    pub factor: FactorRef,
    pub proof: Proof,
}

/// Gateway → mfa. A new access token with `acr: aal2` for the caller's session.
#[derive(Debug, Message)]
#[rtype(result = "Result<StepUpToken, CommandError>")]
pub struct StepUp {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub factor: FactorRef,
    pub proof: Proof,
}

/// An access token with `acr: aal2` for the caller's session (the refresh token is unchanged:
/// a refresh answers the session's own level).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StepUpToken {
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// Gateway → mfa. An administrator removes every factor and recovery code of a user.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct ResetFactors {
    pub meta: RequestMeta,
    pub principal: Principal,
    pub user_id: UserId,
}
