//! What the actors' unit tests share.

#![allow(clippy::unwrap_used)]

use keyward_messages::UserId;
use keyward_storage::{NewUser, Store};

/// A fresh in-memory database with a verified user who may act, written straight to it.
pub(crate) async fn store_with_user() -> (Store, UserId) {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let user = verified_user(&store, "ada@example.com").await;
    (store, user)
}

/// A verified user at `email`, written straight to `store`.
pub(crate) async fn verified_user(store: &Store, email: &str) -> UserId {
    let user = UserId::new();
    store
        .users()
        .insert(NewUser {
            id: user,
            email: keyward_messages::Email::parse("email", email).unwrap(),
            username: None,
            password_hash: "not a hash".into(),
            email_verified: true,
            locale: "en".into(),
            now: chrono::Utc::now(),
        })
        .await
        .unwrap();
    user
}
