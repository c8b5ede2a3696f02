//! The public route table (DESIGN.md, "HTTP API") and the small reply helpers handlers share.
//!
//! Refuses: any logic beyond parse, send, map. Handlers live in one module per context.

mod access;
mod accounts;
mod admin;
mod federation;
mod mfa;
mod notify;
pub(crate) mod openapi;
mod profiles;
mod sessions;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::problem::ApiError;

pub use access::AccessApi;
pub use accounts::AccountsApi;
pub use federation::FederationApi;
pub use mfa::MfaApi;
pub use notify::NotifyApi;
pub use profiles::ProfilesApi;
pub use sessions::SessionsApi;

/// Registers every public route; unknown paths answer a 404 problem.
///
/// Fixed paths come before paths with a `{parameter}`: actix tries resources in order, and
/// each parameterised one costs a regex run per request that reaches it (the check API, behind
/// a dozen of them, spent a tenth of its CPU there). A fixed path that a parameterised one also
/// matches (`/v1/users/search`, `/v1/users/{id}`) was before it already: no answer changes.
/// Every fixed path tried before a request's own costs a comparison too, so the check API,
/// which services call on most of their requests, comes right after login.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/auth/register").route(web::post().to(accounts::register)))
        .service(
            web::resource("/v1/auth/verify-email")
                .route(web::get().to(accounts::verify_email_link))
                .route(web::post().to(accounts::verify_email)),
        )
        .service(
            web::resource("/v1/auth/verify-email/resend")
                .route(web::post().to(accounts::resend_verification)),
        )
        .service(web::resource("/v1/auth/login").route(web::post().to(accounts::login)))
        .service(web::resource("/v1/access/check").route(web::post().to(access::check)))
        .service(web::resource("/v1/auth/refresh").route(web::post().to(sessions::refresh)))
        .service(web::resource("/v1/auth/logout").route(web::post().to(sessions::logout)))
        .service(
            web::resource("/v1/auth/password/forgot")
                .route(web::post().to(accounts::forgot_password)),
        )
        .service(
            web::resource("/v1/auth/password/reset")
                .route(web::post().to(accounts::reset_password)),
        )
        .service(
            web::resource("/v1/auth/password/change")
                .route(web::post().to(accounts::change_password)),
        )
        .service(web::resource("/v1/auth/verify").route(web::get().to(sessions::forward_auth)))
        .service(
            web::resource("/v1/sessions")
                .route(web::get().to(sessions::list))
                .route(web::delete().to(sessions::revoke_others)),
        )
        .service(
            web::resource("/v1/users/me")
                .route(web::get().to(profiles::me))
                .route(web::patch().to(profiles::update_me))
                .route(web::delete().to(profiles::delete_me)),
        )
        .service(
            web::resource("/v1/users/me/settings")
                .route(web::get().to(profiles::settings))
                .route(web::patch().to(profiles::patch_settings)),
        )
        .service(
            web::resource("/v1/users/me/avatar")
                .route(web::put().to(profiles::put_avatar))
                .route(web::delete().to(profiles::delete_avatar)),
        )
        .service(web::resource("/v1/users/me/phone").route(web::post().to(profiles::start_phone)))
        .service(web::resource("/v1/users/me/mfa").route(web::get().to(mfa::list)))
        .service(web::resource("/v1/users/me/mfa/totp").route(web::post().to(mfa::enroll_totp)))
        .service(
            web::resource("/v1/users/me/mfa/totp/confirm").route(web::post().to(mfa::confirm_totp)),
        )
        .service(
            web::resource("/v1/users/me/mfa/recovery-codes").route(web::post().to(mfa::new_codes)),
        )
        .service(web::resource("/v1/users/me/mfa/sms").route(web::post().to(mfa::enroll_sms)))
        .service(web::resource("/v1/users/me/mfa/email").route(web::post().to(mfa::enroll_email)))
        .service(
            web::resource("/v1/users/me/passkeys/options")
                .route(web::post().to(mfa::passkey_options)),
        )
        .service(
            web::resource("/v1/users/me/passkeys").route(web::post().to(mfa::register_passkey)),
        )
        .service(
            web::resource("/v1/auth/passkey/options")
                .route(web::post().to(mfa::passkey_login_options)),
        )
        .service(web::resource("/v1/auth/passkey").route(web::post().to(mfa::passkey_login)))
        .service(
            web::resource("/v1/auth/oauth/exchange").route(web::post().to(federation::exchange)),
        )
        .service(web::resource("/v1/auth/oauth").route(web::post().to(federation::native)))
        .service(
            web::resource("/v1/auth/oauth/link").route(web::post().to(federation::confirm_link)),
        )
        .service(
            web::resource("/v1/auth/oauth/link/code").route(web::post().to(federation::link_code)),
        )
        .service(
            web::resource("/v1/users/me/identities").route(web::get().to(federation::identities)),
        )
        .service(web::resource("/v1/auth/mfa/verify").route(web::post().to(mfa::verify)))
        .service(web::resource("/v1/auth/mfa/challenge").route(web::post().to(mfa::send_code)))
        .service(web::resource("/v1/auth/step-up").route(web::post().to(mfa::step_up)))
        .service(
            web::resource("/v1/users/me/phone/confirm")
                .route(web::post().to(profiles::confirm_phone)),
        )
        .service(
            web::resource("/v1/users/me/permissions").route(web::get().to(access::my_permissions)),
        )
        .service(
            web::resource("/v1/admin/roles")
                .route(web::get().to(access::list_roles))
                .route(web::post().to(access::create_role)),
        )
        .service(web::resource("/v1/oauth/token").route(web::post().to(access::token)))
        .service(
            web::resource("/v1/admin/clients")
                .route(web::get().to(access::list_clients))
                .route(web::post().to(access::create_client)),
        )
        .service(web::resource("/v1/users/me/activity").route(web::get().to(profiles::activity)))
        .service(web::resource("/v1/users/me/export").route(web::get().to(profiles::export)))
        .service(web::resource("/v1/users/search").route(web::get().to(profiles::search)))
        .service(
            web::resource("/v1/admin/users")
                .route(web::get().to(admin::list_users))
                .route(web::post().to(admin::invite)),
        )
        .service(web::resource("/v1/admin/audit").route(web::get().to(admin::audit)))
        .service(
            web::resource("/v1/notifications")
                .app_data(crate::input::json_config(notify::BULK_BODY_BYTES))
                .route(web::post().to(notify::send)),
        )
        .service(
            web::resource("/v1/notifications/vapid-public-key")
                .route(web::get().to(notify::vapid_key)),
        )
        .service(
            web::resource("/v1/users/me/push-subscriptions")
                .route(web::post().to(notify::subscribe_push)),
        )
        .service(web::resource("/v1/users/me/notifications").route(web::get().to(notify::inbox)))
        .service(
            web::resource("/v1/users/me/notifications/stream").route(web::get().to(notify::stream)),
        )
        .service(
            web::resource("/v1/users/me/notifications/read-all")
                .route(web::post().to(notify::read_all)),
        )
        .service(
            web::resource("/v1/users/me/notification-preferences")
                .route(web::get().to(notify::preferences))
                .route(web::put().to(notify::put_preferences)),
        )
        .service(web::resource("/v1/admin/notifications").route(web::get().to(notify::deliveries)))
        .service(web::resource("/.well-known/jwks.json").route(web::get().to(sessions::jwks)))
        .service(web::resource("/docs").route(web::get().to(docs_redirect)))
        .service(web::resource("/openapi.json").route(web::get().to(openapi::spec)))
        .service(web::resource("/v1/sessions/{id}").route(web::delete().to(sessions::revoke)))
        .service(web::resource("/v1/avatars/{key}").route(web::get().to(profiles::avatar)))
        .service(web::resource("/v1/users/me/mfa/{factor_id}").route(web::delete().to(mfa::remove)))
        .service(
            web::resource("/v1/users/me/identities/{provider}/start")
                .route(web::post().to(federation::start_link)),
        )
        .service(
            web::resource("/v1/users/me/identities/{id}")
                .route(web::delete().to(federation::unlink)),
        )
        .service(
            web::resource("/v1/auth/oauth/{provider}/start")
                .route(web::get().to(federation::start)),
        )
        .service(
            web::resource("/v1/auth/oauth/{provider}/callback")
                .route(web::get().to(federation::callback)),
        )
        .service(web::resource("/v1/admin/users/{id}/mfa").route(web::delete().to(mfa::reset)))
        .service(
            web::resource("/v1/admin/roles/{name}")
                .route(web::get().to(access::get_role))
                .route(web::put().to(access::put_role))
                .route(web::delete().to(access::delete_role)),
        )
        .service(
            web::resource("/v1/admin/clients/{id}").route(web::delete().to(access::delete_client)),
        )
        .service(
            web::resource("/v1/admin/clients/{id}/secret")
                .route(web::post().to(access::rotate_secret)),
        )
        .service(
            web::resource("/v1/admin/users/{id}/roles/{role}")
                .route(web::put().to(access::grant))
                .route(web::delete().to(access::revoke)),
        )
        .service(
            web::resource("/v1/users/{id}")
                .route(web::get().to(profiles::get))
                .route(web::put().to(profiles::put)),
        )
        .service(
            web::resource("/v1/admin/users/{id}")
                .route(web::get().to(admin::get_user))
                .route(web::delete().to(admin::erase)),
        )
        .service(web::resource("/v1/admin/users/{id}/logout").route(web::post().to(admin::logout)))
        .service(web::resource("/v1/admin/users/{id}/block").route(web::post().to(admin::block)))
        .service(
            web::resource("/v1/admin/users/{id}/unblock").route(web::post().to(admin::unblock)),
        )
        .service(
            web::resource("/v1/users/me/push-subscriptions/{id}")
                .route(web::delete().to(notify::unsubscribe_push)),
        )
        .service(
            web::resource("/v1/notifications/scheduled/{id}")
                .route(web::delete().to(notify::cancel)),
        )
        .service(
            web::resource("/v1/users/me/notifications/{id}/read")
                .route(web::post().to(notify::read)),
        )
        .service(
            web::resource("/v1/admin/templates/{key}/{channel}/{locale}")
                .app_data(crate::input::json_config(notify::BULK_BODY_BYTES))
                .route(web::get().to(notify::get_template))
                .route(web::put().to(notify::put_template)),
        )
        .service(
            web::resource("/v1/admin/templates/{key}/{channel}/{locale}/preview")
                .app_data(crate::input::json_config(notify::BULK_BODY_BYTES))
                .route(web::post().to(notify::preview_template)),
        )
        .service(openapi::swagger_ui())
        .default_service(web::to(not_found));
}

/// Swagger UI lives at `/docs/`; its relative asset paths need the slash.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// `202 {"status": …}`: the request was taken; the outcome arrives by email.
fn accepted(status: &'static str) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({ "status": status }))
}

/// A reply that holds credentials or personal data: never stored by caches.
fn private_json(body: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
