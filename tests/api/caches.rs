//! A node whose caches are smaller than what it serves (`KEYWARD_CACHE__*`) answers as one
//! with room for everything: past capacity it verifies and reads again, never guesses.

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_with, Options, TestApp, PASSWORD};

/// The smallest capacity the settings accept.
const CAPACITY: usize = 1024;
/// Sessions (and tokens) past every capacity of the session gate.
const SESSIONS: usize = CAPACITY + CAPACITY / 8;

/// Asserts forward-auth's status for every access token: `expected(i)` for the i-th.
async fn verify_all(app: &TestApp, tokens: &[String], expected: impl Fn(usize) -> StatusCode) {
    let got: Vec<StatusCode> = futures::stream::iter(tokens)
        .map(|t| async move { app.get_bearer("/v1/auth/verify", t).await.status() })
        .buffered(8)
        .collect()
        .await;
    let wrong: Vec<(usize, StatusCode)> = got
        .into_iter()
        .enumerate()
        .filter(|(i, s)| *s != expected(*i))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} tokens answered otherwise, e.g. (index, status) {:?}",
        wrong.len(),
        tokens.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[actix_web::test]
async fn a_node_with_small_caches_verifies_every_live_session_and_refuses_every_ended_one() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.cache.tokens = CAPACITY;
            s.cache.sessions = CAPACITY;
            s.cache.profiles = CAPACITY;
            s.cache.users = CAPACITY;
        })),
        ..Options::default()
    })
    .await;
    app.verified_user("many@example.com", None).await;
    // NOTE: 4 at a time stays within the hasher's queue (4 per thread), so no login is shed.
    let pairs: Vec<Value> = futures::stream::iter(0..SESSIONS)
        .map(|_| app.login_ok("many@example.com", PASSWORD))
        .buffered(4)
        .collect()
        .await;
    let tokens: Vec<String> = pairs
        .iter()
        .map(|p| p["access_token"].as_str().unwrap().to_owned())
        .collect();
    let all_ok = |_| StatusCode::OK;

    // Twice: the second pass asks for tokens and sessions the first pushed out.
    verify_all(&app, &tokens, all_ok).await;
    verify_all(&app, &tokens, all_ok).await;
    let me = app.get_bearer("/v1/users/me", &tokens[0]).await;
    assert_eq!(me.status(), StatusCode::OK);

    // One session ended by id: refused, the others still verify.
    let first = pairs[0]["session_id"].as_str().unwrap();
    let r = app
        .delete_bearer(&format!("/v1/sessions/{first}"), &tokens[1])
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let first_ended = |i| match i {
        0 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::OK,
    };
    verify_all(&app, &tokens, first_ended).await;

    // Every other session ended at once: more ended sessions than the gate remembers, and
    // every one is still refused.
    let last = &tokens[SESSIONS - 1];
    let r = app.delete_bearer("/v1/sessions", last).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let last_live = |i| match i {
        i if i == SESSIONS - 1 => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    };
    verify_all(&app, &tokens, last_live).await;
    verify_all(&app, &tokens, last_live).await;
}
