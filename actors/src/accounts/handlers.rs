//! The accounts context's message table: one handler per message, and the small ones.

use keyward_messages::access::{AdminUser, ForceLogout, InviteUser};
use std::sync::Arc;

use keyward_messages::commands::*;

use super::login::login_counted;
use super::passwords::{change_password, forgot, reset_password};
use super::registration::{register, resend, verify_email};
use super::{Accounts, AccountsDeps as Deps};
use crate::error::HandlerError;

async fn set_blocked(deps: Arc<Deps>, m: SetBlocked) -> Result<(), HandlerError> {
    super::blocking::set_blocked(&deps, m).await
}

crate::edge::handlers!(Accounts {
    Register => (): register;
    VerifyEmail => EmailVerified: verify_email;
    ResendVerification => (): resend;
    ForgotPassword => (): forgot;
    Login => keyward_messages::mfa::LoginReply: login_counted;
    ResetPassword => (): reset_password;
    ChangePassword => (): change_password;
    SetBlocked => (): set_blocked;
    InviteUser => AdminUser: |d, m| super::admin::invite_user(d, m);
    ForceLogout => (): |d, m| super::admin::force_logout(d, m);
});
