//! Routes of the accounts context: registration, email verification, login and passwords.
//!
//! Refuses: deciding anything. Each handler takes its body validated into value types, sends
//! one command and maps the reply; what an email, a token or a password means is the accounts
//! actor's business.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use keyward_messages::commands::{
    ChangePassword, ForgotPassword, Login, Register, ResendVerification, ResetPassword, SetBlocked,
    VerifyEmail,
};
use keyward_messages::{Email, FieldError, LoginId, Password, Username};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::*;
use super::{accepted, private_json};
use crate::extract::{Authenticated, ClientLocale, Meta};
use crate::input::{parse_token, Fields, Input, RequestBody, Valid};
use crate::problem::ApiError;
use crate::state::AppState;
#[allow(unused_imports)]
use serde_json::json;

type State = web::Data<AppState>;

crate::recipients! {
    /// What the accounts routes (and the admin routes) send to the accounts context.
    pub struct AccountsApi {
        register: Register,
        verify_email: VerifyEmail,
        resend_verification: ResendVerification,
        login: Login,
        forgot_password: ForgotPassword,
        reset_password: ResetPassword,
        change_password: ChangePassword,
        set_blocked: SetBlocked,
        invite_user: keyward_messages::access::InviteUser,
        force_logout: keyward_messages::access::ForceLogout,
    }
}

fn email(field: &str, raw: String) -> Result<Email, FieldError> {
    Email::parse(field, &raw)
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RegisterRequest {
    #[schema(value_type = String, example = "ada@example.com", format = Email, max_length = 254)]
    email: Input,
    /// 8–256 characters by default; common passwords and ones built from the email or
    /// username are refused.
    #[schema(
        value_type = String,
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 256
    )]
    password: Input,
    /// 3–32 letters, digits, `_`, `.` or `-`.
    // NOTE: no `pattern`: the Postman converter fills patterned fields with random strings,
    // which would make the committed collection differ on every generation.
    #[schema(value_type = Option<String>, example = "ada", min_length = 3, max_length = 32)]
    username: Input,
}

impl RequestBody for RegisterRequest {
    type Valid = (Email, Password, Option<Username>);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let email = f.required("email", self.email, email);
        let password = f.required("password", self.password, Password::parse);
        let username = f.optional("username", self.username, |k, v| Username::parse(k, &v));
        Some((email?, password?, username?))
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct TokenRequest {
    /// The one-time token from the email link.
    #[schema(value_type = String, max_length = 512)]
    token: Input,
}

impl RequestBody for TokenRequest {
    type Valid = SecretString;
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        f.token("token", self.token)
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct EmailRequest {
    #[schema(value_type = String, example = "ada@example.com", format = Email, max_length = 254)]
    email: Input,
}

impl RequestBody for EmailRequest {
    type Valid = Email;
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        f.required("email", self.email, email)
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    /// Email or username.
    #[schema(value_type = String, example = "ada@example.com", min_length = 3, max_length = 254)]
    login: Input,
    #[schema(
        value_type = String,
        example = "correct horse battery staple",
        min_length = 1,
        max_length = 4096
    )]
    password: Input,
}

impl RequestBody for LoginRequest {
    type Valid = (LoginId, Password);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let login = f.required("login", self.login, |k, v| LoginId::parse(k, &v));
        let password = f.required("password", self.password, Password::parse);
        Some((login?, password?))
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ResetRequest {
    /// The one-time token from the reset email.
    #[schema(value_type = String, max_length = 512)]
    token: Input,
    #[schema(value_type = String, min_length = 8, max_length = 256)]
    password: Input,
}

impl RequestBody for ResetRequest {
    type Valid = (SecretString, Password);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let token = f.token("token", self.token);
        let password = f.required("password", self.password, Password::parse);
        Some((token?, password?))
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ChangePasswordRequest {
    #[schema(value_type = String, min_length = 1, max_length = 4096)]
    current_password: Input,
    #[schema(value_type = String, min_length = 8, max_length = 256)]
    new_password: Input,
}

impl RequestBody for ChangePasswordRequest {
    type Valid = (Password, Password);
    fn validate(self, f: &mut Fields) -> Option<Self::Valid> {
        let current = f.required("current_password", self.current_password, Password::parse);
        let new = f.required("new_password", self.new_password, Password::parse);
        Some((current?, new?))
    }
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 202, description = "Verification email sent; the same reply when the email already has an account (a verified owner gets a notice instead; an unverified address gets a link for this registration)", body = Accepted),
        (status = 409, description = "The username is taken", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:username_taken", "title": "Conflict", "status": 409, "detail": "this username is taken", "code": "username_taken", "errors": [{"field": "username", "code": "taken", "message": "this username is taken; choose another"}]})),
        (status = 429, description = "Over the mail budget of this address or client IP (5 and 30 requests an hour); every request counts, known address or not", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a request is accepted"))),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn register(
    st: State,
    Meta(meta): Meta,
    ClientLocale(locale): ClientLocale,
    Valid((email, password, username)): Valid<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = Register {
        meta,
        email,
        password,
        username,
        locale,
    };
    st.ask(&st.to.accounts.register, cmd).await?;
    Ok(accepted("verification_sent"))
}

#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "accounts",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The email is verified", body = EmailVerified),
        (status = 400, description = "The token is unknown, used or expired (`invalid_token`), or the body is invalid", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:invalid_token", "title": "Invalid request", "status": 400, "detail": "the link is invalid, used or expired; request a new one", "code": "invalid_token"})),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn verify_email(
    st: State,
    Meta(meta): Meta,
    Valid(token): Valid<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = VerifyEmail { meta, token };
    let verified = st.ask(&st.to.accounts.verify_email, cmd).await?;
    Ok(HttpResponse::Ok().json(verified))
}

/// The link in the verification email: a browser lands here, so the answer is a page, not JSON.
#[utoipa::path(get, path = "/v1/auth/verify-email", tag = "accounts",
    params(("token" = Option<String>, Query, description = "The one-time token from the email")),
    responses(
        (status = 200, description = "A small page: verified", content_type = "text/html", body = String),
        (status = 400, description = "A small page: the link is invalid, used or expired", content_type = "text/html", body = String),
        (status = 503, description = "A small page: try again shortly", content_type = "text/html", body = String),
        (status = 500, description = "A small page: something went wrong (logged)", content_type = "text/html", body = String),
    ))]
pub(super) async fn verify_email_link(
    st: State,
    Meta(meta): Meta,
    req: HttpRequest,
) -> HttpResponse {
    let token = web::Query::<LinkQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token)
        .and_then(|raw| parse_token("token", raw).ok());
    let Some(token) = token else {
        return page::failed(StatusCode::BAD_REQUEST, None);
    };
    let cmd = VerifyEmail { meta, token };
    match st.ask(&st.to.accounts.verify_email, cmd).await {
        Ok(_) => page::render(StatusCode::OK, page::VERIFIED, None),
        Err(e) => page::failed(e.status_code(), e.retry_after_secs()),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct LinkQuery {
    token: Option<String>,
}

#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "accounts",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Always the same reply, whether or not the email has an unverified account", body = Accepted),
        (status = 429, description = "Over the mail budget of this address or client IP (5 and 30 requests an hour); every request counts, known address or not", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a request is accepted"))),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn resend_verification(
    st: State,
    Meta(meta): Meta,
    Valid(email): Valid<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ResendVerification { meta, email };
    st.ask(&st.to.accounts.resend_verification, cmd).await?;
    Ok(accepted("verification_sent"))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in, a new session (a TokenPair); or, for a user with a second factor, `{mfa_required: true, mfa_token, factors}`: continue with POST /v1/auth/mfa/verify", body = keyward_messages::mfa::LoginReply,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Wrong password or unknown account: the same reply, in body and timing", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:invalid_credentials", "title": "Authentication required", "status": 401, "detail": "the login or the password is wrong", "code": "invalid_credentials"})),
        (status = 403, description = "Right password, but the email is not verified (`email_not_verified`) or the account is blocked (`account_blocked`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:keyward:problem:account_blocked", "title": "Forbidden", "status": 403, "detail": "this account is blocked", "code": "account_blocked"})),
        (status = 429, description = "Too many failed logins for this account or client; the same reply whatever the password", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds")),
            example = json!({"type": "urn:keyward:problem:too_many_requests", "title": "Too many requests", "status": 429, "detail": "too many attempts; retry after the time in Retry-After", "code": "too_many_requests"})),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn login(
    st: State,
    Meta(meta): Meta,
    Valid((login, password)): Valid<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = Login {
        meta,
        login,
        password,
    };
    let tokens = st.ask(&st.to.accounts.login, cmd).await?;
    Ok(private_json(&tokens))
}

#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "accounts",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Always the same reply; an account gets a reset link by email", body = Accepted),
        (status = 429, description = "Over the mail budget of this address or client IP (5 and 30 requests an hour); every request counts, known address or not", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a request is accepted"))),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn forgot_password(
    st: State,
    Meta(meta): Meta,
    Valid(email): Valid<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ForgotPassword { meta, email };
    st.ask(&st.to.accounts.forgot_password, cmd).await?;
    Ok(accepted("reset_sent"))
}

#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "accounts",
    request_body = ResetRequest,
    responses(
        (status = 204, description = "The password is set and every session has ended"),
        (status = 400, description = "The token is unknown, used or expired (`invalid_token`), or the password breaks the rules (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ServerProblems,
    ))]
pub(super) async fn reset_password(
    st: State,
    Meta(meta): Meta,
    Valid((token, password)): Valid<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ResetPassword {
        meta,
        token,
        password,
    };
    st.ask(&st.to.accounts.reset_password, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/auth/password/change", tag = "accounts",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; every other session has ended"),
        (status = 400, description = "`current_password` is wrong, or the new one breaks the rules", body = Problem, content_type = "application/problem+json"),
        BearerProblems, BodyProblems, ServerProblems,
    ))]
pub(super) async fn change_password(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    Valid((current_password, new_password)): Valid<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = ChangePassword {
        meta,
        principal,
        current_password,
        new_password,
    };
    st.ask(&st.to.accounts.change_password, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The self-contained pages of the verification link. Every text is a constant: nothing the
/// client sent is echoed.
mod page {
    use super::*;

    pub(super) struct Text {
        title: &'static str,
        message: &'static str,
    }

    pub(super) const VERIFIED: Text = Text {
        title: "Email verified",
        message: "Your email address is verified. You can close this page and sign in.",
    };

    pub(super) fn failed(status: StatusCode, retry_after: Option<u64>) -> HttpResponse {
        let text = match status.as_u16() {
            400 | 404 => Text {
                title: "Link invalid or expired",
                message: "This verification link is invalid or has expired. Request a new one from the sign-in page.",
            },
            429 | 503 => Text {
                title: "Please try again shortly",
                message: "We could not verify your email right now. Open the link again in a moment.",
            },
            _ => Text {
                title: "Something went wrong",
                message: "We could not verify your email. Open the link again later.",
            },
        };
        render(status, text, retry_after)
    }

    pub(super) fn render(status: StatusCode, text: Text, retry_after: Option<u64>) -> HttpResponse {
        let title = escape(text.title);
        let message = escape(text.message);
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\"><title>{title} · Keyward</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
             h1{{font-size:1.5rem}}</style></head>\
             <body><main><h1>{title}</h1><p>{message}</p></main></body></html>\n"
        );
        let mut res = HttpResponse::build(status);
        res.content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ));
        if let Some(secs) = retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.body(html)
    }

    pub(super) fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn html_special_characters_are_escaped() {
            assert_eq!(
                super::escape(r#"<a href="x">'&'</a>"#),
                "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
            );
        }
    }
}
