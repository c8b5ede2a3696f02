//! Routes of the mfa context: enrolling and removing second factors, recovery codes, the second
//! step of a login, step-up, and an administrator's reset.
//!
//! Refuses: deciding anything; whether a code is right, and whether a token's `acr` suffices,
//! is the mfa actor's business.

use actix_web::{web, HttpResponse};
use keyward_messages::commands::TokenPair;
use keyward_messages::mfa::*;
use keyward_messages::{FieldError, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::*;
use super::private_json;
use crate::extract::{Authenticated, MaybeAuthenticated, Meta};
use crate::input::{Fields, Input, JsonObject, RequestBody, Valid};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the mfa routes send to the mfa context.
    pub struct MfaApi {
        enroll_totp: EnrollTotp,
        confirm_totp: ConfirmTotp,
        new_codes: NewRecoveryCodes,
        list: ListFactors,
        remove: RemoveFactor,
        verify: VerifyMfa,
        step_up: StepUp,
        reset: ResetFactors,
        enroll_sms: EnrollSms,
        enroll_email: EnrollEmail,
        send_code: SendCode,
        passkey_options: PasskeyRegistrationOptions,
        register_passkey: RegisterPasskey,
        passkey_login_options: PasskeyLoginOptions,
        passkey_login: PasskeyLogin,
    }
}

/// A code, or for a passkey factor the browser's assertion: exactly one of the two.
fn proof(f: &mut Fields, code: Input, credential: Input) -> Option<Proof> {
    let code = f.optional("code", code, |k, v| Code::parse(k, &v));
    let credential = f.optional_object("credential", credential);
    match (code?, credential?) {
        (Some(c), None) => Some(Proof::Code(c)),
        (None, Some(v)) => Some(Proof::Passkey(v)),
        (None, None) => {
            f.error(FieldError::new(
                "code",
                "required",
                "send the code, or for a passkey factor `credential` (the assertion)",
            ));
            None
        }
        (Some(_), Some(_)) => {
            f.error(FieldError::new(
                "credential",
                "code_and_credential",
                "send either a code or a passkey credential, not both",
            ));
            None
        }
    }
}

fn uuid_of(field: &str, raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| {
        ApiError::invalid_fields(vec![FieldError::new(
            field,
            "invalid_uuid",
            "an id is a UUID",
        )])
    })
}

#[utoipa::path(post, path = "/v1/users/me/mfa/totp", operation_id = "enroll_totp", tag = "mfa",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new TOTP secret, not active until confirmed with a code; starting again replaces an unconfirmed one", body = TotpEnrollment),
        (status = 403, description = "The caller already has a factor and the token's acr is not aal2 (`step_up_required`)", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn enroll_totp(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let e = st
        .ask(&st.to.mfa.enroll_totp, EnrollTotp { meta, principal })
        .await?;
    Ok(private_json(&e))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct CodeRequest {
    /// The 6 digits of the authenticator app.
    #[schema(value_type = String, example = "492039")]
    code: Input,
}

impl RequestBody for CodeRequest {
    type Valid = Code;
    fn validate(self, f: &mut Fields) -> Option<Code> {
        f.required("code", self.code, |k, v| Code::parse(k, &v))
    }
}

#[utoipa::path(post, path = "/v1/users/me/mfa/totp/confirm", operation_id = "confirm_totp", tag = "mfa",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Confirmed, and it is the caller's first factor: 10 recovery codes, shown this once", body = RecoveryCodes),
        (status = 204, description = "Confirmed (the caller had a factor already)"),
        (status = 403, description = "`step_up_required`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn confirm_totp(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    Valid(code): Valid<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ConfirmTotp {
        meta,
        principal,
        code,
    };
    Ok(match st.ask(&st.to.mfa.confirm_totp, cmd).await? {
        Some(codes) => private_json(&codes),
        None => HttpResponse::NoContent().finish(),
    })
}

#[utoipa::path(post, path = "/v1/users/me/mfa/recovery-codes", operation_id = "new_recovery_codes", tag = "mfa",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "10 new recovery codes; the old ones no longer work", body = RecoveryCodes),
        (status = 403, description = "`step_up_required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_factor`: recovery codes back up a factor", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn new_codes(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let codes = st
        .ask(&st.to.mfa.new_codes, NewRecoveryCodes { meta, principal })
        .await?;
    Ok(private_json(&codes))
}

#[utoipa::path(get, path = "/v1/users/me/mfa", operation_id = "list_factors", tag = "mfa",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's confirmed factors and how many recovery codes are left", body = FactorList),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn list(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let l = st
        .ask(&st.to.mfa.list, ListFactors { meta, principal })
        .await?;
    Ok(private_json(&l))
}

#[utoipa::path(delete, path = "/v1/users/me/mfa/{factor_id}", operation_id = "remove_factor", tag = "mfa",
    security(("bearer" = [])),
    params(("factor_id" = String, Path, format = Uuid)),
    responses(
        (status = 204, description = "Removed (with the last factor, the recovery codes go too)"),
        (status = 403, description = "`step_up_required`: the token's acr is not aal2", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`factor_not_found`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn remove(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = RemoveFactor {
        meta,
        principal,
        factor_id: uuid_of("factor_id", &id)?,
    };
    st.ask(&st.to.mfa.remove, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct VerifyRequest {
    /// From the login reply.
    #[schema(value_type = String)]
    mfa_token: Input,
    /// A factor's id from the login reply, or `recovery`.
    #[schema(value_type = String, example = "recovery")]
    factor_id: Input,
    /// The code (TOTP, SMS, email or recovery).
    #[schema(value_type = Option<String>, example = "492039")]
    code: Input,
    /// For a passkey factor instead of `code`: `PublicKeyCredential.toJSON()` of the assertion
    /// made with the options POST /v1/auth/mfa/challenge gave.
    #[schema(value_type = Option<Object>)]
    credential: Input,
}

impl RequestBody for VerifyRequest {
    type Valid = (String, FactorRef, Proof);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let token = f.required("mfa_token", self.mfa_token, |k, v: String| {
            if v.is_empty() || v.len() > 256 {
                Err(FieldError::new(
                    k,
                    "invalid_mfa_token",
                    "pass the mfa_token of the login reply",
                ))
            } else {
                Ok(v)
            }
        });
        let factor = f.required("factor_id", self.factor_id, |k, v| FactorRef::parse(k, &v));
        let proof = proof(f, self.code, self.credential);
        Some((token?, factor?, proof?))
    }
}

#[utoipa::path(post, path = "/v1/auth/mfa/verify", operation_id = "verify_mfa", tag = "mfa",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Logged in: tokens with amr [pwd, otp] (or sms, email, hwk) and acr aal2", body = TokenPair),
        (status = 400, description = "A wrong or used code (`invalid_code`, counted like a failed login), or bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_mfa_token`: unknown, older than 5 minutes, used, or 5 wrong codes; log in again", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures for this account", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn verify(
    st: State,
    Meta(meta): Meta,
    Valid((mfa_token, factor, proof)): Valid<VerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = VerifyMfa {
        meta,
        mfa_token,
        factor,
        proof,
    };
    let pair: TokenPair = st.ask(&st.to.mfa.verify, cmd).await?;
    Ok(private_json(&pair))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct StepUpRequest {
    /// One of the caller's factors, or `recovery`.
    #[schema(value_type = String)]
    factor_id: Input,
    #[schema(value_type = Option<String>, example = "492039")]
    code: Input,
    /// For a passkey factor instead of `code`: the assertion (`PublicKeyCredential.toJSON()`)
    /// for the options POST /v1/auth/mfa/challenge gave with the bearer token.
    #[schema(value_type = Option<Object>)]
    credential: Input,
}

impl RequestBody for StepUpRequest {
    type Valid = (FactorRef, Proof);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let factor = f.required("factor_id", self.factor_id, |k, v| FactorRef::parse(k, &v));
        let proof = proof(f, self.code, self.credential);
        Some((factor?, proof?))
    }
}

#[utoipa::path(post, path = "/v1/auth/step-up", operation_id = "step_up", tag = "mfa",
    security(("bearer" = [])),
    request_body = StepUpRequest,
    responses(
        (status = 200, description = "An access token with acr aal2 for the same session (the refresh token is unchanged, and a refresh answers the session's own level)", body = StepUpToken),
        (status = 400, description = "A wrong or used code (`invalid_code`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`factor_not_found`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn step_up(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    Valid((factor, proof)): Valid<StepUpRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = StepUp {
        meta,
        principal,
        factor,
        proof,
    };
    let t = st.ask(&st.to.mfa.step_up, cmd).await?;
    Ok(private_json(&t))
}

#[utoipa::path(delete, path = "/v1/admin/users/{id}/mfa", operation_id = "reset_factors", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 204, description = "Every factor and recovery code of the user is gone (`mfa.removed` with factor_type `all`, audited with the administrator)"),
        (status = 403, description = "Needs `users:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`user_not_found`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn reset(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ResetFactors {
        meta,
        principal,
        user_id: UserId(uuid_of("id", &id)?),
    };
    st.ask(&st.to.mfa.reset, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/users/me/mfa/sms", operation_id = "enroll_sms", tag = "mfa",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's verified phone is an SMS factor (replacing an older one); the first factor comes with `recovery_codes`, shown once", body = EnrolledFactor),
        (status = 403, description = "`step_up_required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`phone_not_verified`: POST /v1/users/me/phone and /confirm first", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn enroll_sms(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let e = st
        .ask(&st.to.mfa.enroll_sms, EnrollSms { meta, principal })
        .await?;
    Ok(private_json(&e))
}

#[utoipa::path(post, path = "/v1/users/me/mfa/email", operation_id = "enroll_email", tag = "mfa",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Codes to the caller's verified email address are a factor; the first factor comes with `recovery_codes`. With a password that was set through an email link, password + email code is not aal2", body = EnrolledFactor),
        (status = 403, description = "`step_up_required`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn enroll_email(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let e = st
        .ask(&st.to.mfa.enroll_email, EnrollEmail { meta, principal })
        .await?;
    Ok(private_json(&e))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ChallengeRequest {
    /// From the login reply; omit it (and send the bearer token) for step-up.
    #[schema(value_type = Option<String>)]
    mfa_token: Input,
    /// An SMS, email or passkey factor.
    #[schema(value_type = String, format = Uuid)]
    factor_id: Input,
}

impl RequestBody for ChallengeRequest {
    type Valid = (Option<String>, uuid::Uuid);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let token = f.optional("mfa_token", self.mfa_token, |k, v: String| {
            if v.is_empty() || v.len() > 256 {
                Err(FieldError::new(
                    k,
                    "invalid_mfa_token",
                    "pass the mfa_token of the login reply",
                ))
            } else {
                Ok(v)
            }
        });
        let factor = f.required("factor_id", self.factor_id, |k, v: String| {
            uuid::Uuid::parse_str(v.trim()).map_err(|_| {
                FieldError::new(
                    k,
                    "invalid_factor_id",
                    "use the id of an SMS, email or passkey factor",
                )
            })
        });
        Some((token?, factor?))
    }
}

#[utoipa::path(post, path = "/v1/auth/mfa/challenge", operation_id = "send_mfa_code", tag = "mfa",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "A passkey factor: `publicKey`, options for navigator.credentials.get (any of the user's passkeys), good for 5 minutes and one answer; send the assertion as `credential` to /v1/auth/mfa/verify (or /v1/auth/step-up)", body = CodeSent),
        (status = 202, description = "A 6-digit code by SMS or email, good for 5 minutes and 5 tries; a new one replaces it. With `mfa_token` for a login, or with the bearer token (no mfa_token) for step-up", body = CodeSent),
        (status = 401, description = "`invalid_mfa_token`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`factor_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "One code per 30 s per factor; SMS codes also spend the per-account, per-IP and per-number budget (`KEYWARD_SMS__MAX_PER_IP_PER_HOUR`, `…_PER_NUMBER_PER_HOUR`), email codes 5 an hour", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn send_code(
    st: State,
    Meta(meta): Meta,
    MaybeAuthenticated(principal): MaybeAuthenticated,
    Valid((mfa_token, factor_id)): Valid<ChallengeRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = SendCode {
        meta,
        mfa_token,
        principal,
        factor_id,
    };
    let sent = st.ask(&st.to.mfa.send_code, cmd).await?;
    Ok(if sent.public_key.is_some() {
        private_json(&sent)
    } else {
        HttpResponse::Accepted().json(sent)
    })
}

/// A credential body: the browser's `PublicKeyCredential.toJSON()`, with an optional `name`
/// beside it when registering.
fn credential_body(
    mut body: serde_json::Map<String, serde_json::Value>,
    named: bool,
) -> Result<(serde_json::Value, Option<String>), ApiError> {
    let mut f = Fields::default();
    let name = if named {
        f.optional("name", Input::from(body.remove("name")), |_, v: String| {
            Ok(v)
        })
    } else {
        Some(None)
    };
    if !body.get("response").is_some_and(|r| r.is_object()) {
        f.error(FieldError::new(
            "response",
            "required",
            "send the credential as PublicKeyCredential.toJSON() gives it (id, rawId, type, response)",
        ));
    }
    f.done(|| Some((serde_json::Value::Object(body), name?)))
}

#[utoipa::path(post, path = "/v1/users/me/passkeys/options", operation_id = "passkey_registration_options", tag = "mfa",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Options for navigator.credentials.create (`PublicKeyCredential.parseCreationOptionsFromJSON(reply.publicKey)`): a discoverable credential with user verification, the caller's passkeys excluded; good for 5 minutes and one answer", body = PasskeyOptions),
        (status = 403, description = "`step_up_required`: the caller has a factor and the token's acr is not aal2", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`passkeys_unavailable`: the server's public URL is an IP address and KEYWARD_MFA__RP_ID is not set", body = Problem, content_type = "application/problem+json"),
        BearerProblems, ServerProblems,
    ))]
pub(super) async fn passkey_options(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let o = st
        .ask(
            &st.to.mfa.passkey_options,
            PasskeyRegistrationOptions { meta, principal },
        )
        .await?;
    Ok(private_json(&o))
}

#[utoipa::path(post, path = "/v1/users/me/passkeys", operation_id = "register_passkey", tag = "mfa",
    security(("bearer" = [])),
    request_body(content = Object, description = "`PublicKeyCredential.toJSON()` of the new credential, with an optional `name` (at most 64 characters, e.g. \"Work laptop\")"),
    responses(
        (status = 201, description = "The passkey is a factor and logs in without a password; the first factor comes with `recovery_codes`, shown once (`mfa.enrolled`)", body = EnrolledFactor),
        (status = 400, description = "`invalid_credential`: not an answer to open options (expired, used, another user's) or it does not check out (origin, RP ID, user verification)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`step_up_required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`passkey_exists` or `passkeys_unavailable`", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn register_passkey(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (credential, name) = credential_body(body, true)?;
    let cmd = RegisterPasskey {
        meta,
        principal,
        credential,
        name,
    };
    let e = st.ask(&st.to.mfa.register_passkey, cmd).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(e))
}

#[utoipa::path(post, path = "/v1/auth/passkey/options", operation_id = "passkey_login_options", tag = "mfa",
    responses(
        (status = 200, description = "Options for navigator.credentials.get with no allowCredentials (the browser offers its discoverable passkeys for this site), user verification required; good for 5 minutes and one answer", body = PasskeyOptions),
        (status = 409, description = "`passkeys_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client IP's budget of sign-ins begun (KEYWARD_THROTTLE__CEREMONIES_PER_IP_PER_HOUR, 300 an hour, shared with social login starts)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a request is accepted"))),
        ServerProblems,
    ))]
pub(super) async fn passkey_login_options(
    st: State,
    Meta(meta): Meta,
) -> Result<HttpResponse, ApiError> {
    let o = st
        .ask(
            &st.to.mfa.passkey_login_options,
            PasskeyLoginOptions { meta },
        )
        .await?;
    Ok(private_json(&o))
}

#[utoipa::path(post, path = "/v1/auth/passkey", operation_id = "passkey_login", tag = "mfa",
    request_body(content = Object, description = "`PublicKeyCredential.toJSON()` of the assertion made with the options of POST /v1/auth/passkey/options"),
    responses(
        (status = 200, description = "Logged in without a password: tokens with amr [hwk] and acr aal2 (a passkey with user verification is two factors)", body = TokenPair),
        (status = 400, description = "`invalid_credential`: not an answer to open options (expired after 5 minutes, or already used)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: the passkey is not registered here (removed, or another site's) or its signature is wrong (counted like a failed login)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_blocked`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures for this account", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn passkey_login(
    st: State,
    Meta(meta): Meta,
    JsonObject(body): JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (credential, _) = credential_body(body, false)?;
    let pair: TokenPair = st
        .ask(&st.to.mfa.passkey_login, PasskeyLogin { meta, credential })
        .await?;
    Ok(private_json(&pair))
}
