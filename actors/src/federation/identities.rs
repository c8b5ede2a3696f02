//! The caller's linked identities: listing and unlinking (never the last way to log in).

use std::sync::Arc;

use keyward_messages::events::{DomainEvent, Outgoing};
use keyward_messages::federation::*;
use keyward_messages::CommandError;

use super::{Federation, FederationDeps as Deps};
use crate::error::HandlerError;

fn view(i: keyward_storage::IdentityRecord) -> IdentityView {
    IdentityView {
        id: i.id,
        provider: i.provider,
        email: i.email,
        email_verified: i.email_verified,
        created_at: i.created_at,
        last_login_at: i.last_login_at,
    }
}

/// An identity as the admin user view shows it.
pub fn admin_view(i: keyward_storage::IdentityRecord) -> serde_json::Value {
    serde_json::to_value(view(i)).unwrap_or_default()
}

async fn list(deps: Arc<Deps>, m: ListIdentities) -> Result<IdentityList, HandlerError> {
    let ids = deps
        .store
        .federation()
        .identities_of(m.principal.user_id)
        .await?;
    Ok(IdentityList {
        identities: ids.into_iter().map(view).collect(),
    })
}

async fn unlink(deps: Arc<Deps>, m: UnlinkIdentity) -> Result<(), HandlerError> {
    let p = &m.principal;
    crate::mfa::require_aal2(&deps.store, p).await?;
    let tx = deps.store.begin().await?;
    tx.users().lock(p.user_id).await?;
    let ids = tx.federation().identities_of(p.user_id).await?;
    let Some(gone) = ids.iter().find(|i| i.id == m.identity_id) else {
        return Err(HandlerError::from(CommandError::NotFound {
            code: "identity_not_found",
            detail: "you have no linked identity with this id".into(),
        }));
    };
    // Another identity, a password its owner set, or a passkey still logs in.
    let passkey = tx
        .mfa()
        .factors_of(p.user_id)
        .await?
        .iter()
        .any(|f| f.kind == "passkey" && f.confirmed_at.is_some());
    if ids.len() == 1 && !passkey && !tx.users().has_password(p.user_id).await? {
        return Err(HandlerError::from(CommandError::Conflict {
            code: "last_login_method",
            detail: "this is your only way to log in: set a password (POST /v1/auth/password/forgot) or add a passkey first".into(),
            field: None,
        }));
    }
    tx.federation().delete_identity(p.user_id, gone.id).await?;
    let ev = DomainEvent::IdentityUnlinked {
        user_id: p.user_id,
        identity_id: gone.id,
        provider: gone.provider.clone(),
    };
    deps.outbox
        .enqueue(&tx, &m.meta, Outgoing::Event(ev))
        .await?;
    tx.commit().await?;
    deps.outbox.wake();
    Ok(())
}

crate::edge::handlers!(Federation {
    ListIdentities => IdentityList: list;
    UnlinkIdentity => (): unlink;
});
