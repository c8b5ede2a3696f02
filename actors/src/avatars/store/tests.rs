#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The filesystem backend always; the S3 backend against a real server when
//! `KEYWARD_TEST_S3_ENDPOINT` is set (`scripts/services.sh s3 -- …`); the S3 failure modes
//! (closed port, a server that never answers) always, on loopback.

use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::*;
use crate::avatars::{new_avatar_id, Rendition, SIZES};

fn key(px: u32, ext: &str) -> String {
    format!("{}-{px}.{ext}", new_avatar_id())
}

fn processed() -> Processed {
    Processed {
        sizes: SIZES
            .iter()
            .map(|&px| Rendition {
                px,
                bytes: format!("fake image of {px} px").into_bytes(),
                content_type: "image/webp",
                ext: "webp",
            })
            .collect(),
    }
}

/// put, get (bytes and content type), overwrite, delete, get again, delete again.
async fn roundtrip(store: &AvatarStore) {
    let jpg = key(512, "jpg");
    assert_eq!(store.get(&jpg).await.unwrap(), None, "nothing there yet");
    store
        .put(&jpg, b"first".to_vec(), "image/jpeg")
        .await
        .unwrap();
    store
        .put(&jpg, b"second".to_vec(), "image/jpeg")
        .await
        .unwrap();
    assert_eq!(
        store.get(&jpg).await.unwrap(),
        Some((b"second".to_vec(), "image/jpeg".to_owned()))
    );
    let webp = key(64, "webp");
    store.put(&webp, vec![1, 2, 3], "image/webp").await.unwrap();
    assert_eq!(
        store.get(&webp).await.unwrap(),
        Some((vec![1, 2, 3], "image/webp".to_owned()))
    );
    store.delete(&jpg).await.unwrap();
    assert_eq!(store.get(&jpg).await.unwrap(), None);
    store.delete(&jpg).await.unwrap();
    store.delete(&webp).await.unwrap();
    store.check().await.unwrap();

    let saved = store.save(&processed()).await.unwrap();
    assert_eq!(saved.iter().map(|(px, _)| *px).collect::<Vec<_>>(), SIZES);
    for (px, key) in &saved {
        assert!(is_valid_key(key), "{key}");
        let (bytes, content_type) = store.get(key).await.unwrap().unwrap();
        assert_eq!(bytes, format!("fake image of {px} px").into_bytes());
        assert_eq!(content_type, "image/webp");
        store.delete(key).await.unwrap();
    }
}

async fn refuses_keys_it_did_not_make(store: &AvatarStore) {
    for bad in ["../keyward.db", "x.jpg", "", "a/b"] {
        assert_eq!(store.get(bad).await.unwrap(), None, "{bad}");
        assert!(matches!(
            store.put(bad, vec![1], "image/jpeg").await,
            Err(AvatarError::Internal(_))
        ));
        assert!(matches!(
            store.delete(bad).await,
            Err(AvatarError::Internal(_))
        ));
    }
}

#[tokio::test]
async fn the_embedded_store_keeps_renditions_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = AvatarStore::from_settings(&AvatarSettings::default(), dir.path()).unwrap();
    assert!(!store.is_s3());
    roundtrip(&store).await;
    refuses_keys_it_did_not_make(&store).await;

    let k = key(256, "jpg");
    store.put(&k, b"x".to_vec(), "image/jpeg").await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("avatars").join(&k)).unwrap(),
        b"x"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("avatars"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != &k)
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[tokio::test]
async fn an_embedded_store_whose_directory_went_away_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let store = AvatarStore::from_settings(&AvatarSettings::default(), dir.path()).unwrap();
    std::fs::remove_dir_all(dir.path().join("avatars")).unwrap();
    assert!(matches!(
        store.check().await,
        Err(AvatarError::Unavailable(_))
    ));
    assert!(matches!(
        store.put(&key(64, "jpg"), vec![1], "image/jpeg").await,
        Err(AvatarError::Unavailable(_))
    ));
    assert_eq!(store.get(&key(64, "jpg")).await.unwrap(), None);
}

#[test]
fn public_urls_use_the_public_base_url_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let k = "0123456789abcdef0123456789abcdef-64.jpg";
    let store = AvatarStore::from_settings(&AvatarSettings::default(), dir.path()).unwrap();
    assert_eq!(
        store.public_url(k, "https://id.example.com/"),
        format!("https://id.example.com/v1/avatars/{k}")
    );
    let settings = AvatarSettings {
        public_base_url: Some("https://cdn.example.com/avatars".to_owned()),
        ..AvatarSettings::default()
    };
    let store = AvatarStore::from_settings(&settings, dir.path()).unwrap();
    assert_eq!(
        store.public_url(k, "https://id.example.com"),
        format!("https://cdn.example.com/avatars/{k}")
    );
}

/// The S3 settings of `scripts/services.sh s3`, if it is running.
fn test_s3() -> Option<S3Settings> {
    let var = |name: &str| std::env::var(format!("KEYWARD_TEST_S3_{name}")).ok();
    Some(S3Settings {
        endpoint: var("ENDPOINT")?,
        bucket: var("BUCKET")?,
        region: var("REGION")?,
        access_key_id: var("ACCESS_KEY_ID")?,
        secret_access_key: SecretString::from(var("SECRET_ACCESS_KEY")?),
    })
}

fn s3_store(s3: &S3Settings) -> AvatarStore {
    AvatarStore::s3(s3, None, CONNECT_TIMEOUT, CALL_TIMEOUT).unwrap()
}

#[tokio::test]
async fn the_s3_store_round_trips_on_a_real_server() {
    let Some(s3) = test_s3() else {
        eprintln!(
            "KEYWARD_TEST_S3_ENDPOINT is not set: skipped (run under scripts/services.sh s3)"
        );
        return;
    };
    let store = s3_store(&s3);
    assert!(store.is_s3());
    roundtrip(&store).await;
    refuses_keys_it_did_not_make(&store).await;
}

#[tokio::test]
async fn the_s3_store_is_configured_from_avatar_settings() {
    let Some(s3) = test_s3() else {
        eprintln!(
            "KEYWARD_TEST_S3_ENDPOINT is not set: skipped (run under scripts/services.sh s3)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(
        &secret_file,
        secrecy::ExposeSecret::expose_secret(&s3.secret_access_key),
    )
    .unwrap();
    let settings = AvatarSettings {
        s3_endpoint: Some(s3.endpoint.clone()),
        s3_bucket: Some(s3.bucket.clone()),
        s3_region: Some(s3.region.clone()),
        s3_access_key_id: Some(s3.access_key_id.clone()),
        s3_secret_access_key_file: Some(secret_file),
        ..AvatarSettings::default()
    };
    let store = AvatarStore::from_settings(&settings, dir.path()).unwrap();
    assert!(store.is_s3());
    assert!(
        !dir.path().join("avatars").exists(),
        "no directory in S3 mode"
    );
    store.check().await.unwrap();
    let k = key(256, "jpg");
    store
        .put(&k, b"via settings".to_vec(), "image/jpeg")
        .await
        .unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().0, b"via settings");
    store.delete(&k).await.unwrap();
}

#[tokio::test]
async fn wrong_s3_credentials_or_a_missing_bucket_are_unavailable() {
    let Some(s3) = test_s3() else {
        eprintln!(
            "KEYWARD_TEST_S3_ENDPOINT is not set: skipped (run under scripts/services.sh s3)"
        );
        return;
    };
    let wrong_secret = S3Settings {
        secret_access_key: SecretString::from("not-the-secret"),
        ..s3.clone()
    };
    let store = s3_store(&wrong_secret);
    for result in [
        store.check().await,
        store.put(&key(64, "jpg"), vec![1], "image/jpeg").await,
        store.get(&key(64, "jpg")).await.map(|_| ()),
    ] {
        match result {
            Err(AvatarError::Unavailable(text)) => {
                assert!(text.contains("403"), "{text}");
                assert!(!text.contains("not-the-secret"), "{text}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    let missing = S3Settings {
        bucket: "no-such-bucket-here".to_owned(),
        ..s3
    };
    match s3_store(&missing).check().await {
        Err(AvatarError::Unavailable(text)) => assert!(text.contains("does not exist"), "{text}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn loopback_s3(endpoint: String) -> S3Settings {
    S3Settings {
        endpoint,
        bucket: "keyward-test".to_owned(),
        region: "us-east-1".to_owned(),
        access_key_id: "AKID".to_owned(),
        secret_access_key: SecretString::from("secret"),
    }
}

#[tokio::test]
async fn an_s3_endpoint_on_a_closed_port_is_unavailable_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let store = s3_store(&loopback_s3(format!("http://127.0.0.1:{port}")));
    let started = Instant::now();
    for result in [
        store.check().await,
        store.put(&key(64, "jpg"), vec![1], "image/jpeg").await,
        store.get(&key(64, "jpg")).await.map(|_| ()),
        store.delete(&key(64, "jpg")).await,
    ] {
        match result {
            Err(AvatarError::Unavailable(text)) => {
                assert!(text.contains("cannot connect"), "{text}");
                assert!(!text.contains("X-Amz-Signature"), "{text}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < CALL_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_s3_endpoint_that_never_answers_times_out() {
    // Accepts connections and reads nothing back: the store must give up on its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let call_timeout = Duration::from_millis(300);
    let store = AvatarStore::s3(
        &loopback_s3(format!("http://127.0.0.1:{port}")),
        None,
        Duration::from_millis(200),
        call_timeout,
    )
    .unwrap();
    let timed_out = |result: Result<(), AvatarError>, started: Instant| {
        match result {
            Err(AvatarError::Unavailable(text)) => assert!(text.contains("timed out"), "{text}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let took = started.elapsed();
        assert!(
            took >= call_timeout && took < Duration::from_secs(5),
            "took {took:?}"
        );
    };
    let started = Instant::now();
    timed_out(store.check().await, started);
    let started = Instant::now();
    timed_out(
        store
            .put(&key(64, "jpg"), vec![1; 1000], "image/jpeg")
            .await,
        started,
    );
    let started = Instant::now();
    timed_out(store.get(&key(64, "jpg")).await.map(|_| ()), started);
    server.abort();
}
