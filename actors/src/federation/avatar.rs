//! A new federated account's picture, imported through the avatar pipeline (decoded with
//! limits, re-encoded, metadata stripped) in the background: a slow or broken picture host
//! never delays or fails the sign-in.

use keyward_messages::{RequestMeta, UserId};

use super::FederationDeps as Deps;

/// Fetches `url` and makes it `user`'s avatar, later; failures are logged and dropped.
pub(super) fn import_later(deps: &Deps, meta: &RequestMeta, user: UserId, url: String) {
    let (http, profiles, meta) = (deps.http.clone(), deps.profiles.clone(), meta.clone());
    actix_rt::spawn(async move {
        let max = profiles.pipeline.limits().max_bytes;
        match fetch(&http, &url, max).await {
            Ok((content_type, body)) => {
                if let Err(e) =
                    crate::profiles::avatar::import(&profiles, &meta, user, &content_type, body)
                        .await
                {
                    tracing::info!(user_id = %user, error = %crate::error::chain(&e), "a social login's picture was not imported");
                }
            }
            Err(why) => {
                tracing::info!(user_id = %user, error = %why, "a social login's picture could not be fetched");
            }
        }
    });
}

/// The picture's type and bytes, at most `max` of them.
async fn fetch(
    http: &openidconnect::reqwest::Client,
    url: &str,
    max: usize,
) -> Result<(String, Vec<u8>), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!("not an http(s) URL: {}", parsed.scheme()));
    }
    let mut res = http
        .get(parsed)
        .send()
        .await
        .map_err(|e| crate::error::chain(&e))?;
    if !res.status().is_success() {
        return Err(format!("the picture host answered {}", res.status()));
    }
    let content_type = res
        .headers()
        .get(openidconnect::reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .unwrap_or_default();
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| crate::error::chain(&e))? {
        if body.len() + chunk.len() > max {
            return Err(format!("the picture is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((content_type, body))
}
