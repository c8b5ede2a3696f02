//! Where renditions are kept: a directory in embedded mode, or an S3-compatible bucket.
//!
//! Both backends take only keys that [`is_valid_key`] accepts (plain file names we made), so no
//! key can reach outside the directory or the bucket. Every failure to reach the store is
//! [`AvatarError::Unavailable`] (the route answers 503), and a missing rendition is `Ok(None)`.
//!
//! The S3 backend signs each request with SigV4 (`rusty-s3`, presigned for 60 s, path-style
//! URLs) and sends it with `reqwest` (rustls). Every call has a connect timeout and a total
//! timeout, so a store that accepts connections and never answers fails in bounded time.
//! Clones share the HTTP connection pool: like the contexts' actors, make one store per HTTP
//! worker (from the same settings) so connections stay on their worker's runtime.
//!
//! Refuses: listing or deleting anything but named keys, following redirects, and sending
//! the secret anywhere but in the signature.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_config::{AvatarSettings, ConfigError, S3Settings};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use secrecy::ExposeSecret as _;

use super::{content_type_of, is_valid_key, rendition_key, AvatarError, Processed, CACHE_CONTROL};
use crate::StartError;

/// Connecting to the store gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole S3 call (connect, send, receive) gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of each request's signature.
const SIGNATURE_TTL: Duration = Duration::from_secs(60);

/// The avatar object store. See the module docs.
#[derive(Clone, Debug)]
pub struct AvatarStore {
    backend: Backend,
    public_base_url: Option<String>,
}

#[derive(Clone, Debug)]
enum Backend {
    Files { dir: PathBuf },
    S3(Box<S3Store>),
}

#[derive(Clone)]
struct S3Store {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.base_url().as_str())
            .field("access_key_id", &self.credentials.key())
            .finish_non_exhaustive()
    }
}

impl AvatarStore {
    /// The store `[avatars]` describes: S3 when its settings are set, else
    /// `{data_dir}/avatars/` (created here if missing). Reads the secret's file if that is how
    /// it is given. Does not contact S3: [`AvatarStore::check`] does.
    pub fn from_settings(settings: &AvatarSettings, data_dir: &Path) -> Result<Self, StartError> {
        let s3 = settings.s3().map_err(config_error)?;
        let public_base_url = settings.public_base_url.clone();
        match s3 {
            Some(s3) => Self::s3(&s3, public_base_url, CONNECT_TIMEOUT, CALL_TIMEOUT),
            None => {
                let dir = data_dir.join("avatars");
                std::fs::create_dir_all(&dir).map_err(StartError::io(&dir))?;
                Ok(AvatarStore {
                    backend: Backend::Files { dir },
                    public_base_url,
                })
            }
        }
    }

    /// An S3 store with explicit timeouts (tests shorten them).
    fn s3(
        s3: &S3Settings,
        public_base_url: Option<String>,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, StartError> {
        let endpoint = url::Url::parse(&s3.endpoint).map_err(|e| {
            StartError::Config(format!("KEYWARD_AVATARS__S3_ENDPOINT: not a URL: {e}"))
        })?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            s3.bucket.clone(),
            s3.region.clone(),
        )
        .map_err(|e| StartError::Config(format!("KEYWARD_AVATARS__S3_ENDPOINT: {e}")))?;
        let credentials = Credentials::new(
            s3.access_key_id.clone(),
            s3.secret_access_key.expose_secret().to_owned(),
        );
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(call_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Config(format!("the S3 avatar store's HTTP client: {e}")))?;
        Ok(AvatarStore {
            backend: Backend::S3(Box::new(S3Store {
                bucket,
                credentials,
                http,
            })),
            public_base_url,
        })
    }

    /// Whether renditions go to S3 (else to the data directory).
    pub fn is_s3(&self) -> bool {
        matches!(self.backend, Backend::S3(_))
    }

    /// Stores one rendition under `key` (overwriting). `content_type` is kept by S3 and sent
    /// back by [`AvatarStore::get`]; on disk the key's extension stands for it.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), AvatarError> {
        let key = checked(key)?;
        match &self.backend {
            Backend::Files { dir } => files_put(dir, key, bytes).await,
            Backend::S3(s3) => s3.put(key, bytes, content_type).await,
        }
    }

    /// The rendition and its content type; `None` when there is no such key (or the key is not
    /// one we make).
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, AvatarError> {
        if !is_valid_key(key) {
            return Ok(None);
        }
        match &self.backend {
            Backend::Files { dir } => match tokio::fs::read(dir.join(key)).await {
                Ok(bytes) => Ok(Some((bytes, content_type_of(key).to_owned()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_unavailable("reading", &dir.join(key), &e)),
            },
            Backend::S3(s3) => s3.get(key).await,
        }
    }

    /// Removes a rendition; removing one that is not there succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), AvatarError> {
        let key = checked(key)?;
        match &self.backend {
            Backend::Files { dir } => match tokio::fs::remove_file(dir.join(key)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_unavailable("removing", &dir.join(key), &e)),
            },
            Backend::S3(s3) => s3.delete(key).await,
        }
    }

    /// Stores every rendition of an upload under a fresh avatar id and returns `(px, key)` per
    /// rendition, largest first. If one write fails, those already written are removed (best
    /// effort) and the error is returned.
    pub async fn save(&self, processed: &Processed) -> Result<Vec<(u32, String)>, AvatarError> {
        let id = super::new_avatar_id();
        let mut saved: Vec<(u32, String)> = Vec::with_capacity(processed.sizes.len());
        for rendition in &processed.sizes {
            let key = rendition_key(&id, rendition);
            if let Err(e) = self
                .put(&key, rendition.bytes.clone(), rendition.content_type)
                .await
            {
                for (_, written) in &saved {
                    if let Err(cleanup) = self.delete(written).await {
                        tracing::warn!(key = %written, error = %cleanup, "could not remove a rendition of a failed avatar upload");
                    }
                }
                return Err(e);
            }
            saved.push((rendition.px, key));
        }
        Ok(saved)
    }

    /// Where browsers fetch `key`: `{public_base_url}/{key}` when
    /// `KEYWARD_AVATARS__PUBLIC_BASE_URL` is set, else `{api_base}/v1/avatars/{key}` (served by
    /// Keyward). `api_base` is the node's public URL, without a trailing `/`.
    pub fn public_url(&self, key: &str, api_base: &str) -> String {
        match &self.public_base_url {
            Some(base) => format!("{base}/{key}"),
            None => format!("{}/v1/avatars/{key}", api_base.trim_end_matches('/')),
        }
    }

    /// Readiness: the directory is writable, or the bucket answers `HeadBucket` with our
    /// credentials.
    pub async fn check(&self) -> Result<(), AvatarError> {
        match &self.backend {
            Backend::Files { dir } => {
                let probe = dir.join(format!(".probe-{}", super::new_avatar_id()));
                tokio::fs::write(&probe, b"ok")
                    .await
                    .map_err(|e| io_unavailable("writing", &probe, &e))?;
                tokio::fs::remove_file(&probe)
                    .await
                    .map_err(|e| io_unavailable("removing", &probe, &e))
            }
            Backend::S3(s3) => s3.check().await,
        }
    }
}

fn config_error(e: ConfigError) -> StartError {
    StartError::Config(e.to_string())
}

fn checked(key: &str) -> Result<&str, AvatarError> {
    if is_valid_key(key) {
        Ok(key)
    } else {
        Err(AvatarError::Internal(format!(
            "refusing to store under the key {key:?}: not one rendition_key makes"
        )))
    }
}

fn io_unavailable(doing: &str, path: &Path, e: &std::io::Error) -> AvatarError {
    AvatarError::Unavailable(format!("{doing} {}: {e}", path.display()))
}

/// Writes to a temporary name, then renames: a reader sees the whole file or none.
async fn files_put(dir: &Path, key: &str, bytes: Vec<u8>) -> Result<(), AvatarError> {
    let path = dir.join(key);
    let tmp = dir.join(format!(".{key}.{}.tmp", super::new_avatar_id()));
    if let Err(e) = tokio::fs::write(&tmp, bytes).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_unavailable("writing", &tmp, &e));
    }
    tokio::fs::rename(&tmp, &path).await.map_err(|e| {
        let err = io_unavailable("renaming into", &path, &e);
        let tmp = tmp.clone();
        tokio::spawn(async move {
            let _ = tokio::fs::remove_file(tmp).await;
        });
        err
    })
}

impl S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), AvatarError> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        // Signed, so a proxy cannot change how the object is served.
        action.headers_mut().insert("cache-control", CACHE_CONTROL);
        action.headers_mut().insert("content-type", content_type);
        let url = action.sign(SIGNATURE_TTL);
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CACHE_CONTROL, CACHE_CONTROL)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| unreachable_store("PUT", key, e))?;
        expect_success("PUT", key, response).await.map(|_| ())
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, AvatarError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGNATURE_TTL);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable_store("GET", key, e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_success("GET", key, response).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| super::declared_format(v).is_some())
            .map_or_else(|| content_type_of(key).to_owned(), str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable_store("GET", key, e))?;
        Ok(Some((bytes.to_vec(), content_type)))
    }

    async fn delete(&self, key: &str) -> Result<(), AvatarError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(SIGNATURE_TTL);
        let response = self
            .http
            .delete(url)
            .send()
            .await
            .map_err(|e| unreachable_store("DELETE", key, e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        expect_success("DELETE", key, response).await.map(|_| ())
    }

    async fn check(&self) -> Result<(), AvatarError> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(SIGNATURE_TTL);
        let response = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| unreachable_store("HEAD", "(the bucket)", e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(AvatarError::Unavailable(format!(
                "S3 bucket {:?} does not exist at {}",
                self.bucket.name(),
                self.bucket.base_url()
            )));
        }
        expect_success("HEAD", "(the bucket)", response)
            .await
            .map(|_| ())
    }
}

/// The signed URL (access key id and signature, never the secret) is left out of messages:
/// the method and key say enough.
fn unreachable_store(method: &str, key: &str, e: reqwest::Error) -> AvatarError {
    let why = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let detail = crate::error::chain(&e.without_url());
    AvatarError::Unavailable(format!("S3 {method} {key} {why}: {detail}"))
}

async fn expect_success(
    method: &str,
    key: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, AvatarError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // S3 explains itself in a short XML body (`<Code>AccessDenied</Code>`…).
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(AvatarError::Unavailable(format!(
        "S3 {method} {key} answered {status}: {body}"
    )))
}

#[cfg(test)]
mod tests;
