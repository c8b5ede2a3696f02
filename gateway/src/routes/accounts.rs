//! Routes of the accounts context: registration, email verification, login, passwords, and the
//! caller's own account.
//!
//! Refuses: deciding anything. Each handler parses the body into one command, sends it and maps
//! the reply; what an email, a token or a password means is the accounts actor's business.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use keyward_messages::commands::{
    ChangePassword, ForgotPassword, GetMe, Login, Register, ResendVerification, ResetPassword,
    VerifyEmail,
};
use keyward_messages::{Email, FieldError, LoginId, Password, Username};
use serde_json::Value;

use super::{accepted, private_json};
use crate::extract::{Authenticated, ClientLocale, Meta};
use crate::input::{parse_token, Fields};
use crate::problem::ApiError;
use crate::state::AppState;

type Body = web::Json<Value>;
type State = web::Data<AppState>;

fn email(field: &str, raw: String) -> Result<Email, FieldError> {
    Email::parse(field, &raw)
}

pub(super) async fn register(
    st: State,
    Meta(meta): Meta,
    ClientLocale(locale): ClientLocale,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let email = f.required("email", email);
    let password = f.required("password", Password::parse);
    let username = f.optional("username", |k, v| Username::parse(k, &v));
    let (email, password, username) = f.finish(|| Some((email?, password?, username?)))?;
    let cmd = Register {
        meta,
        email,
        password,
        username,
        locale,
    };
    st.ask(&st.to.register, cmd).await?;
    Ok(accepted("verification_sent"))
}

pub(super) async fn verify_email(
    st: State,
    Meta(meta): Meta,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let token = f.token("token");
    let token = f.finish(|| token)?;
    let cmd = VerifyEmail { meta, token };
    let verified = st.ask(&st.to.verify_email, cmd).await?;
    Ok(HttpResponse::Ok().json(verified))
}

/// The link in the verification email: a browser lands here, so the answer is a page, not JSON.
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
    match st.ask(&st.to.verify_email, cmd).await {
        Ok(_) => page::render(StatusCode::OK, page::VERIFIED, None),
        Err(e) => page::failed(e.status_code(), e.retry_after_secs()),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct LinkQuery {
    token: Option<String>,
}

pub(super) async fn resend_verification(
    st: State,
    Meta(meta): Meta,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let email = f.required("email", email);
    let email = f.finish(|| email)?;
    let cmd = ResendVerification { meta, email };
    st.ask(&st.to.resend_verification, cmd).await?;
    Ok(accepted("verification_sent"))
}

pub(super) async fn login(
    st: State,
    Meta(meta): Meta,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let login = f.required("login", |k, v| LoginId::parse(k, &v));
    let password = f.required("password", Password::parse);
    let (login, password) = f.finish(|| Some((login?, password?)))?;
    let cmd = Login {
        meta,
        login,
        password,
    };
    let tokens = st.ask(&st.to.login, cmd).await?;
    Ok(private_json(&tokens))
}

pub(super) async fn forgot_password(
    st: State,
    Meta(meta): Meta,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let email = f.required("email", email);
    let email = f.finish(|| email)?;
    let cmd = ForgotPassword { meta, email };
    st.ask(&st.to.forgot_password, cmd).await?;
    Ok(accepted("reset_sent"))
}

pub(super) async fn reset_password(
    st: State,
    Meta(meta): Meta,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let token = f.token("token");
    let password = f.required("password", Password::parse);
    let (token, password) = f.finish(|| Some((token?, password?)))?;
    let cmd = ResetPassword {
        meta,
        token,
        password,
    };
    st.ask(&st.to.reset_password, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn change_password(
    st: State,
    Authenticated(principal): Authenticated,
    Meta(meta): Meta,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body)?;
    let current = f.required("current_password", Password::parse);
    let new = f.required("new_password", Password::parse);
    let (current_password, new_password) = f.finish(|| Some((current?, new?)))?;
    let cmd = ChangePassword {
        meta,
        principal,
        current_password,
        new_password,
    };
    st.ask(&st.to.change_password, cmd).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn me(
    st: State,
    Meta(meta): Meta,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = st.ask(&st.to.get_me, GetMe { meta, principal }).await?;
    Ok(private_json(&user))
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
