//! Signing key rotation without restarts: a rotated-in key is published on every node at
//! once and signs only after the lead, so no verifier meets a token of a key it has not seen.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{broker_lock, member, spawn_app, spawn_app_with, Options, TestApp, PASSWORD};

/// The `kid` of a token's header.
fn kid(token: &str) -> String {
    use base64::Engine as _;
    let head = token.split('.').next().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .unwrap();
    serde_json::from_slice::<Value>(&raw).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn published(base: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits up to five seconds for `base` to publish `kid`.
async fn until_published(base: &str, kid: &str) {
    for _ in 0..100 {
        if published(base).await.iter().any(|k| k == kid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} does not publish {kid}");
}

/// Rotates as `keyward keys rotate` does, at the node's time, with a lead of `lead` seconds.
pub(crate) async fn rotate(app: &TestApp, lead: i64) -> String {
    let master = keyward_actors::keys::master_key(&app.settings).unwrap();
    let offset = app.clock_offset.load(std::sync::atomic::Ordering::SeqCst);
    let now = chrono::Utc::now() + chrono::Duration::seconds(offset);
    let backend = app.settings.keys.backend().unwrap();
    keyward_actors::keys::rotate(
        &app.node.contexts.store,
        &master,
        &keyward_actors::keys::Keys::connect(&backend).unwrap(),
        now,
        chrono::Duration::seconds(lead),
    )
    .await
    .unwrap()
    .kid
}

pub(crate) async fn token_from(app: &TestApp, base: &str, email: &str) -> String {
    let r = app
        .client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"login": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    pair["access_token"].as_str().unwrap().to_owned()
}

async fn me_status(app: &TestApp, base: &str, token: &str) -> StatusCode {
    app.client
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// The rotation story on the nodes at `bases` (the first is `app`'s).
async fn rotation_story(app: &TestApp, bases: &[String]) {
    let (_, first) = member(app, "kai@example.com").await;
    let old = kid(&first);
    let new = rotate(app, 600).await;
    for base in bases {
        until_published(base, &new).await;
        assert!(published(base).await.contains(&old), "{base}");
        // Published, not signing yet: every node still signs with the old key.
        assert_eq!(kid(&token_from(app, base, "kai@example.com").await), old);
    }
    app.advance(601);
    for base in bases {
        let t = token_from(app, base, "kai@example.com").await;
        assert_eq!(kid(&t), new, "{base} signs with the new key after the lead");
        for other in bases {
            assert_eq!(me_status(app, other, &t).await, StatusCode::OK);
            // The old key's tokens live on while they have not expired.
            assert_eq!(me_status(app, other, &first).await, StatusCode::OK);
        }
    }
    // Once its last token expired (15 minutes, plus a minute of skew), the old key goes.
    app.advance(15 * 60 + 61);
    for base in bases {
        assert!(!published(base).await.contains(&old), "{base}");
        assert_eq!(kid(&token_from(app, base, "kai@example.com").await), new);
    }
}

#[actix_web::test]
async fn a_rotated_key_is_published_at_once_and_signs_only_after_the_lead() {
    let app = spawn_app().await;
    let bases = [app.base.clone()];
    rotation_story(&app, &bases).await;
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn every_node_publishes_a_rotated_key_at_once_and_all_switch_after_the_lead() {
    let _broker = broker_lock().await;
    let app = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    // The peer reads the outbox feed once an hour: only keyward.broadcast tells it in time.
    let peer = app
        .spawn_peer_with_recheck(Some(Duration::from_secs(3600)))
        .await;
    let bases = [app.base.clone(), format!("http://{}", peer.public_addr)];
    rotation_story(&app, &bases).await;
}

#[actix_web::test]
async fn an_emergency_rotation_signs_at_once_and_old_tokens_still_verify() {
    let app = spawn_app().await;
    let (_, first) = member(&app, "kim@example.com").await;
    let new = rotate(&app, 0).await;
    until_published(&app.base, &new).await;
    let t = token_from(&app, &app.base, "kim@example.com").await;
    assert_eq!(kid(&t), new);
    assert_eq!(me_status(&app, &app.base, &first).await, StatusCode::OK);
}

/// A service that verifies tokens on its own, caching the JWKS for its max-age (300 s of the
/// nodes' clock) and never refetching early, not even for an unknown `kid`: the strictest
/// cache a verifier may keep.
struct CachingVerifier {
    jwks_url: String,
    fetched_at: Option<i64>,
    keys: Vec<(String, jsonwebtoken::DecodingKey)>,
}

impl CachingVerifier {
    const MAX_AGE: i64 = 300;

    fn new(base: &str) -> Self {
        Self {
            jwks_url: format!("{base}/.well-known/jwks.json"),
            fetched_at: None,
            keys: Vec::new(),
        }
    }

    /// Whether `token` verifies at `now` (seconds on the nodes' clock).
    async fn accepts(&mut self, token: &str, now: i64) -> bool {
        if self.fetched_at.is_none_or(|at| now - at >= Self::MAX_AGE) {
            let jwks: Value = reqwest::get(&self.jwks_url)
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            self.keys = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    let x = k["x"].as_str().unwrap();
                    (
                        k["kid"].as_str().unwrap().to_owned(),
                        jsonwebtoken::DecodingKey::from_ed_components(x).unwrap(),
                    )
                })
                .collect();
            self.fetched_at = Some(now);
        }
        let Some((_, key)) = self.keys.iter().find(|(k, _)| *k == kid(token)) else {
            return false;
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        // Only the signature is this test's business; the nodes' clock runs ahead of ours.
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, key, &v).is_ok()
    }
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn a_caching_verifier_refuses_no_token_of_three_nodes_through_a_rotation_and_a_rolling_restart(
) {
    let _broker = broker_lock().await;
    let app = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    let mut peers = [app.spawn_peer().await, app.spawn_peer().await];
    member(&app, "kai@example.com").await;
    let base_of = |n: &keyward::Node| format!("http://{}", n.public_addr);
    let mut verifier = CachingVerifier::new(&app.base);
    let (mut checked, mut refused) = (0, Vec::new());
    let mut kids = Vec::new();
    let old = kid(&token_from(&app, &app.base, "kai@example.com").await);
    for minute in 0..=13 {
        let now = minute * 60;
        if minute == 1 {
            rotate(&app, 600).await;
        }
        if minute == 4 {
            // A rolling restart inside the lead: each restarted node loads the new key and
            // must not sign with it early.
            for p in peers.iter_mut() {
                p.stop().await;
                *p = app.spawn_peer().await;
            }
        }
        let bases: Vec<String> = std::iter::once(app.base.clone())
            .chain(peers.iter().map(base_of))
            .collect();
        for base in &bases {
            let t = token_from(&app, base, "kai@example.com").await;
            checked += 1;
            if !verifier.accepts(&t, now).await {
                refused.push((minute, base.clone(), kid(&t)));
            }
            kids.push(kid(&t));
        }
        app.advance(60);
    }
    assert!(refused.is_empty(), "refused {refused:?} of {checked}");
    assert_eq!(checked, 3 * 14);
    let new = kids.last().unwrap().clone();
    assert_ne!(new, old, "the rotated-in key signs in the end");
    // Old until the lead ran out (minute 11 is 600 s after the rotation), then new.
    for (i, k) in kids.iter().enumerate() {
        let minute = i / 3;
        let expected = if minute < 11 { &old } else { &new };
        assert_eq!(k, expected, "minute {minute}");
    }
}
