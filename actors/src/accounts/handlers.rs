//! The accounts context's message table: one handler per message, and the small ones.

use std::sync::Arc;

use keyward_messages::codes;
use keyward_messages::commands::*;
use keyward_messages::CommandError;

use super::login::login_counted;
use super::passwords::{change_password, forgot, reset_password};
use super::registration::{register, resend, verify_email};
use super::{Accounts, AccountsDeps as Deps};
use crate::error::HandlerError;

async fn get_me(deps: Arc<Deps>, m: GetMe) -> Result<UserView, HandlerError> {
    let profiles = &deps.profiles;
    if let Some(view) = profiles.get(m.principal.user_id) {
        return Ok(UserView::clone(&view));
    }
    let epoch = profiles.epoch();
    let u = deps
        .store
        .users()
        .by_id(m.principal.user_id)
        .await?
        .ok_or_else(|| {
            CommandError::unauthenticated(codes::UNAUTHENTICATED, "the account no longer exists")
        })?;
    let roles = deps.store.users().roles_of(u.id).await?;
    let view = UserView {
        id: u.id,
        email: u.email.into(),
        email_verified: u.email_verified,
        username: u.username.map(String::from),
        roles,
        created_at: u.created_at,
    };
    profiles.put(epoch, Arc::new(view.clone()));
    Ok(view)
}

async fn set_blocked(deps: Arc<Deps>, m: SetBlocked) -> Result<(), HandlerError> {
    super::blocking::set_blocked(&deps, m).await
}

crate::edge::handlers!(Accounts {
    Register => (): register;
    VerifyEmail => EmailVerified: verify_email;
    ResendVerification => (): resend;
    ForgotPassword => (): forgot;
    Login => TokenPair: login_counted;
    ResetPassword => (): reset_password;
    ChangePassword => (): change_password;
    GetMe => UserView: get_me;
    SetBlocked => (): set_blocked;
});
