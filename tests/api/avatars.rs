//! Avatars through HTTP: upload, the three clean renditions, replacement and removal, bad
//! uploads, and the S3 store (against a real S3 server when `KEYWARD_TEST_S3_ENDPOINT` is set)
//! including a store that is down.

use image::{ExtendedColorType, ImageEncoder, RgbImage};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, Options, TestApp};

/// What no rendition may still contain: it sits in the upload's EXIF and comment segments.
const SECRET: &[u8] = b"GPS 55.7558N 37.6173E secret-marker";

fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 3) as u8, ((x ^ y) & 0xff) as u8])
    })
}

/// A JPEG carrying an EXIF segment (a valid empty TIFF directory, then the secret) and a
/// comment with the secret.
fn jpeg_with_metadata(w: u32, h: u32) -> Vec<u8> {
    let img = picture(w, h);
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
        .unwrap();
    let segment = |marker: u8, data: &[u8]| {
        let mut s = vec![0xff, marker];
        s.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(data);
        s
    };
    let mut exif = b"Exif\0\0II\x2a\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    exif.extend_from_slice(SECRET);
    let mut out = plain[..2].to_vec();
    out.extend(segment(0xe1, &exif));
    out.extend(segment(0xfe, SECRET));
    out.extend_from_slice(&plain[2..]);
    out
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(picture(w, h).as_raw(), w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A PNG whose header claims 100000 × 100000 pixels (a pixel bomb) over a few bytes.
fn pixel_bomb() -> Vec<u8> {
    let mut p = png(40, 40);
    // IHDR's width and height are bytes 16..24; the CRC after them is now wrong, which a
    // header-only check never gets to.
    p[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    p[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    p
}

async fn user(app: &TestApp, email: &str) -> String {
    let local = email.split('@').next().unwrap();
    crate::profiles::user(app, email, local).await.1
}

async fn upload(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.client
        .put(app.url("/v1/users/me/avatar"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The whole avatar story on one node; `s3` says which store it runs on, for messages.
async fn avatars_round_trip(app: TestApp, s3: bool) {
    let token = user(&app, "pic@example.com").await;
    let r = upload(&app, &token, "image/jpeg", jpeg_with_metadata(1200, 900)).await;
    assert_eq!(r.status(), StatusCode::OK, "s3={s3}");
    let urls: Value = r.json().await.unwrap();
    for (size, px) in [("64", 64), ("256", 256), ("512", 512)] {
        let r = app
            .client
            .get(urls[size].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{size}");
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let bytes = r.bytes().await.unwrap();
        assert!(
            !contains(&bytes, SECRET),
            "metadata survived in the {size} px rendition"
        );
        assert!(!contains(&bytes, b"Exif"), "an EXIF segment survived");
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (px, px));
    }
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["avatar"], urls);

    // A new upload replaces the old renditions, which go away.
    let r = upload(&app, &token, "image/png", png(300, 300)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let newer: Value = r.json().await.unwrap();
    assert_ne!(newer, urls);
    let old = app
        .client
        .get(urls["512"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND);

    // Bad uploads are refused with the fix, and change nothing.
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "text/plain",
            b"hello".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "image/gif",
            b"GIF89a....".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "image/jpeg",
            png(100, 100),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("image/png", pixel_bomb(), StatusCode::UNPROCESSABLE_ENTITY),
        ("image/png", png(10, 10), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "image/jpeg",
            jpeg_with_metadata(200, 200)[..300].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "image/jpeg",
            vec![0u8; 6 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (ct, body, status) in cases {
        let (s, b) = problem(upload(&app, &token, ct, body).await).await;
        assert_eq!(s, status, "{ct}: {b}");
        assert!(b["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["avatar"], newer);

    // Removal.
    let r = app.delete_bearer("/v1/users/me/avatar", &token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["avatar"], Value::Null);
    if !s3 {
        for bad in [
            "..%2F..%2Fkeyward.db",
            "x",
            "00000000000000000000000000000000-64.jpg",
        ] {
            let r = app
                .client
                .get(app.url(&format!("/v1/avatars/{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
        }
    }
    app.wait_outbox_drained().await;
    let changed: Vec<Value> = app
        .events_of_type("profile.updated")
        .await
        .into_iter()
        .map(|e| e["data"]["changed"].clone())
        .collect();
    assert_eq!(changed, vec![json!(["avatar"]); 3]);
}

#[actix_web::test]
async fn an_avatar_is_stored_in_three_clean_sizes_replaced_and_removed() {
    avatars_round_trip(spawn_app_with(Options::default()).await, false).await;
}

fn s3_settings(endpoint: String) -> Option<crate::helpers::Tweak> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let bucket = var("KEYWARD_TEST_S3_BUCKET")?;
    let (id, secret) = (
        var("KEYWARD_TEST_S3_ACCESS_KEY_ID")?,
        var("KEYWARD_TEST_S3_SECRET_ACCESS_KEY")?,
    );
    Some(Box::new(move |s| {
        s.avatars.s3_endpoint = Some(endpoint);
        s.avatars.s3_bucket = Some(bucket);
        s.avatars.s3_region = Some("us-east-1".into());
        s.avatars.s3_access_key_id = Some(id);
        s.avatars.s3_secret_access_key = Some(secret.into());
    }))
}

#[actix_web::test]
#[ignore = "needs an S3 server (scripts/services.sh s3 -- cargo test --test api -- --include-ignored)"]
async fn avatars_go_to_an_s3_store_and_a_store_that_is_down_is_a_clear_503_and_a_degradation() {
    let endpoint = std::env::var("KEYWARD_TEST_S3_ENDPOINT").expect("KEYWARD_TEST_S3_ENDPOINT");
    let app = spawn_app_with(Options {
        settings: s3_settings(endpoint),
        ..Options::default()
    })
    .await;
    let ready = reqwest::get(format!("{}/readyz", app.management))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    avatars_round_trip(app, true).await;

    // The same store unreachable: a 503 problem, and the profile keeps its avatar.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = spawn_app_with(Options {
        settings: s3_settings(format!("http://127.0.0.1:{closed}")),
        ..Options::default()
    })
    .await;
    let token = user(&down, "down@example.com").await;
    let (s, b) = problem(upload(&down, &token, "image/png", png(100, 100)).await).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("service_unavailable")),
        "{b}"
    );
    let me: Value = down
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["avatar"], Value::Null, "no half-written profile");
    assert!(down.events_of_type("profile.updated").await.is_empty());
    // The rest of the API works without the store: the node stays ready, and /readyz names
    // the store as the degradation.
    let ready = reqwest::get(format!("{}/readyz", down.management))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["degraded"], json!(["avatars"]), "{body}");
    assert_ne!(body["checks"]["avatars"], "ok", "{body}");
}
