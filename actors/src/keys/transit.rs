//! Signing through the Transit engine of HashiCorp Vault or OpenBao: the Ed25519 private key
//! stays in Vault; Keyward sends the JWS signing input and gets the signature back. Signatures
//! asked for while earlier calls are in flight wait and go out together as one `batch_input`
//! call, so a burst of logins costs a few round trips, not one each.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keyward_config::VaultTransit;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::metrics::Metrics;

/// Signatures per Transit call, at most.
const MAX_BATCH: usize = 256;
/// Transit calls in flight at once; more requests wait and join the next batch.
const IN_FLIGHT: usize = 4;
/// Signatures waiting per call already in flight before another call starts: under a light
/// load one call at a time gathers every signature asked for during it (one Vault request
/// instead of several of one or two each, which costs Vault and the node less per
/// signature); only a queue this deep per call opens more.
const PER_CALL: usize = 8;
/// How long a signature waits for a call in flight to end before it takes a free slot anyway:
/// a slow Vault then costs one call's latency, not two.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// Signatures waiting for a batch, at most; past that a request gets a 503 at once.
const QUEUE: usize = 8192;

/// Vault could not be asked, or refused, or answered what Transit does not answer. Never
/// carries the token.
#[derive(Debug, thiserror::Error)]
pub enum TransitError {
    #[error("Vault at {addr} did not answer: {source}")]
    Unreachable {
        addr: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Vault answered {status} to {what}: {errors}")]
    Refused {
        what: String,
        status: u16,
        errors: String,
    },
    #[error("Vault's answer to {what} is not what Transit answers: {detail}")]
    Malformed { what: String, detail: String },
    #[error("the Transit key {key} is of type {kind}; Keyward needs an ed25519 key")]
    WrongType { key: String, kind: String },
    #[error("{url} is not a URL: {detail}")]
    Address { url: String, detail: String },
    #[error("a batched signature failed: {0}")]
    Batch(String),
    #[error("the signing queue is full")]
    Busy,
    #[error("the signer stopped")]
    Stopped,
}

impl TransitError {
    /// Vault is down, slow or refusing: the request that needed a signature is answered 503.
    pub fn into_command(self) -> keyward_messages::CommandError {
        tracing::error!(error = %crate::error::chain(&self), "signing through Vault Transit failed");
        keyward_messages::CommandError::Unavailable {
            code: "signing_unavailable",
            detail:
                "tokens cannot be signed right now (the key service does not answer); retry shortly"
                    .into(),
            retry_after_secs: 2,
        }
    }
}

/// A Transit key's versions that can sign: version → raw Ed25519 public key.
#[derive(Debug)]
pub struct TransitKey {
    pub latest: u64,
    pub public: BTreeMap<u64, [u8; 32]>,
}

/// One Vault server and Transit key.
pub struct Transit {
    http: reqwest::Client,
    cfg: VaultTransit,
    token: RwLock<SecretString>,
    /// `sign/<key>`, parsed once: it is called for every batch.
    sign_url: reqwest::Url,
}

#[derive(Serialize)]
struct SignBody {
    key_version: u64,
    batch_input: Vec<SignInput>,
}

#[derive(Serialize)]
struct SignInput {
    input: String,
}

fn url(cfg: &VaultTransit, path: &str) -> String {
    format!("{}/v1/{}/{path}", cfg.addr, cfg.mount)
}

#[derive(Deserialize)]
struct Reply<T> {
    data: T,
}

#[derive(Deserialize)]
struct KeyData {
    #[serde(rename = "type")]
    kind: String,
    latest_version: u64,
    #[serde(default)]
    min_available_version: u64,
    keys: BTreeMap<String, KeyVersion>,
}

#[derive(Deserialize)]
struct KeyVersion {
    #[serde(default)]
    public_key: String,
}

#[derive(Deserialize)]
struct SignData {
    batch_results: Vec<SignResult>,
}

#[derive(Deserialize)]
struct SignResult {
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl Transit {
    pub fn new(cfg: VaultTransit) -> Result<Self, TransitError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .map_err(|source| TransitError::Unreachable {
                addr: cfg.addr.clone(),
                source,
            })?;
        let sign_url = url(&cfg, &format!("sign/{}", cfg.key));
        let sign_url = reqwest::Url::parse(&sign_url).map_err(|e| TransitError::Address {
            url: sign_url.clone(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            http,
            token: RwLock::new(cfg.token.clone()),
            cfg,
            sign_url,
        })
    }

    /// The same Vault, token and timeout for another Transit key (the one an older key
    /// version belongs to, after `KEYWARD_KEYS__VAULT_MOUNT` or `__VAULT_KEY` changed).
    pub fn for_key(&self, mount: &str, key: &str) -> Result<Self, TransitError> {
        Self::new(VaultTransit {
            mount: mount.to_owned(),
            key: key.to_owned(),
            ..self.cfg.clone()
        })
    }

    pub fn mount(&self) -> &str {
        &self.cfg.mount
    }

    pub fn key(&self) -> &str {
        &self.cfg.key
    }

    fn token(&self) -> SecretString {
        self.token
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|_| self.cfg.token.clone())
    }

    /// A token file may have been renewed (a Vault Agent sink): read it again. True when it
    /// now holds another token.
    fn reread_token(&self) -> bool {
        let Some(path) = &self.cfg.token_file else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let fresh = text.trim();
        if fresh.is_empty() || fresh == self.token().expose_secret() {
            return false;
        }
        if let Ok(mut t) = self.token.write() {
            *t = SecretString::from(fresh);
        }
        true
    }

    /// One call: its body, or None for a 404; a 403 with a token file is retried once with
    /// the file's current token; any other failure is an error naming `what`.
    async fn call(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl + Clone,
        body: Option<String>,
        what: &str,
    ) -> Result<Option<bytes::Bytes>, TransitError> {
        // Shared, not copied, when a refused token is retried.
        let body = body.map(bytes::Bytes::from);
        let mut retried = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("X-Vault-Token", self.token().expose_secret());
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            let unreachable = |source| TransitError::Unreachable {
                addr: self.cfg.addr.clone(),
                source,
            };
            let res = req.send().await.map_err(unreachable)?;
            let status = res.status();
            let bytes = res.bytes().await.map_err(unreachable)?;
            if status == reqwest::StatusCode::FORBIDDEN && !retried && self.reread_token() {
                retried = true;
                continue;
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                let errors = serde_json::from_slice::<Errors>(&bytes)
                    .map(|e| e.errors.join("; "))
                    .unwrap_or_default();
                return Err(TransitError::Refused {
                    what: what.into(),
                    status: status.as_u16(),
                    errors,
                });
            }
            return Ok(Some(bytes));
        }
    }

    /// A call whose answer is Transit's `data`; None for a 404.
    async fn data<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl + Clone,
        body: Option<String>,
        what: &str,
    ) -> Result<Option<T>, TransitError> {
        let Some(bytes) = self.call(method, url, body, what).await? else {
            return Ok(None);
        };
        serde_json::from_slice::<Reply<T>>(&bytes)
            .map(|r| Some(r.data))
            .map_err(|e| TransitError::Malformed {
                what: what.into(),
                detail: e.to_string(),
            })
    }

    /// The key's versions, or None when there is no such key.
    pub async fn read_key(&self) -> Result<Option<TransitKey>, TransitError> {
        let what = format!("reading the Transit key {}", self.cfg.key);
        let Some(data) = self
            .data::<KeyData>(
                reqwest::Method::GET,
                url(&self.cfg, &format!("keys/{}", self.cfg.key)),
                None,
                &what,
            )
            .await?
        else {
            return Ok(None);
        };
        if data.kind != "ed25519" {
            return Err(TransitError::WrongType {
                key: self.cfg.key.clone(),
                kind: data.kind,
            });
        }
        let mut public = BTreeMap::new();
        for (v, k) in data.keys {
            let bad = |detail: String| TransitError::Malformed {
                what: what.clone(),
                detail,
            };
            let version: u64 = v.parse().map_err(|_| bad(format!("version {v:?}")))?;
            if version < data.min_available_version {
                continue;
            }
            let raw = STANDARD
                .decode(&k.public_key)
                .map_err(|e| bad(format!("public key of version {version}: {e}")))?;
            let raw: [u8; 32] = raw
                .try_into()
                .map_err(|_| bad(format!("public key of version {version} is not 32 bytes")))?;
            public.insert(version, raw);
        }
        if !public.contains_key(&data.latest_version) {
            return Err(TransitError::Malformed {
                what,
                detail: format!(
                    "no public key for the latest version {}",
                    data.latest_version
                ),
            });
        }
        Ok(Some(TransitKey {
            latest: data.latest_version,
            public,
        }))
    }

    /// The key, made (type ed25519) when there is none yet.
    pub async fn ensure_key(&self) -> Result<TransitKey, TransitError> {
        if let Some(k) = self.read_key().await? {
            return Ok(k);
        }
        self.post_empty(
            &format!("keys/{}", self.cfg.key),
            &serde_json::json!({ "type": "ed25519" }),
            "creating the Transit key",
        )
        .await?;
        tracing::info!(mount = %self.cfg.mount, key = %self.cfg.key, "made the Transit signing key");
        self.read_key()
            .await?
            .ok_or_else(|| TransitError::Malformed {
                what: "creating the Transit key".into(),
                detail: "the key is still missing after it was made".into(),
            })
    }

    /// A new version of the key; the returned key's `latest` is it.
    pub async fn rotate(&self) -> Result<TransitKey, TransitError> {
        self.post_empty(
            &format!("keys/{}/rotate", self.cfg.key),
            &serde_json::json!({}),
            "rotating the Transit key",
        )
        .await?;
        self.read_key()
            .await?
            .ok_or_else(|| TransitError::Malformed {
                what: "rotating the Transit key".into(),
                detail: "the key is gone".into(),
            })
    }

    /// A POST whose answer may be empty (204); a 404 is an error.
    async fn post_empty(
        &self,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> Result<(), TransitError> {
        match self
            .call(
                reqwest::Method::POST,
                url(&self.cfg, path),
                Some(body.to_string()),
                what,
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(TransitError::Refused {
                what: what.into(),
                status: 404,
                errors: format!(
                    "no Transit engine at {}/ or no key {}",
                    self.cfg.mount, self.cfg.key
                ),
            }),
        }
    }

    /// Signs each input with `version` of the key, in one call.
    pub async fn sign_batch(
        &self,
        version: u64,
        inputs: &[Vec<u8>],
    ) -> Result<Vec<[u8; 64]>, TransitError> {
        let what = format!("signing {} inputs", inputs.len());
        let body = SignBody {
            key_version: version,
            batch_input: inputs
                .iter()
                .map(|i| SignInput {
                    input: STANDARD.encode(i),
                })
                .collect(),
        };
        let body = serde_json::to_string(&body).map_err(|e| TransitError::Malformed {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let data = self
            .data::<SignData>(
                reqwest::Method::POST,
                self.sign_url.clone(),
                Some(body),
                &what,
            )
            .await?
            .ok_or_else(|| TransitError::Refused {
                what: what.clone(),
                status: 404,
                errors: format!("no Transit key {}", self.cfg.key),
            })?;
        let bad = |detail: String| TransitError::Malformed {
            what: what.clone(),
            detail,
        };
        if data.batch_results.len() != inputs.len() {
            return Err(bad(format!(
                "{} results for {} inputs",
                data.batch_results.len(),
                inputs.len()
            )));
        }
        data.batch_results
            .into_iter()
            .map(|r| {
                if let Some(e) = r.error.filter(|e| !e.is_empty()) {
                    return Err(bad(e));
                }
                let sig = r.signature.unwrap_or_default();
                // vault:v<version>:<base64 signature>
                let b64 = sig
                    .strip_prefix("vault:v")
                    .and_then(|s| s.split_once(':'))
                    .map(|(_, b)| b)
                    .ok_or_else(|| bad("a signature without the vault:vN: prefix".into()))?;
                let raw = STANDARD
                    .decode(b64)
                    .map_err(|e| bad(format!("signature: {e}")))?;
                raw.try_into()
                    .map_err(|_| bad("a signature that is not 64 bytes".into()))
            })
            .collect()
    }
}

/// A call's slot, given back when the call ends however it ends, with word to the batcher.
struct Ended(Option<tokio::sync::OwnedSemaphorePermit>, Arc<Notify>);

impl Drop for Ended {
    fn drop(&mut self) {
        // The slot first: the batcher woken next counts it free.
        drop(self.0.take());
        self.1.notify_one();
    }
}

struct Job {
    version: u64,
    input: Vec<u8>,
    reply: oneshot::Sender<Result<[u8; 64], String>>,
}

/// Collects the signatures asked for at once into Transit batch calls; a clone feeds the
/// same task.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the batching task on the current runtime.
    pub fn start(transit: Arc<Transit>, metrics: Option<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let finished = Arc::new(Notify::new());
        tokio::spawn(async move {
            loop {
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut jobs = vec![first];
                let linger = tokio::time::Instant::now() + LINGER;
                let mut lingered = false;
                loop {
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let busy = IN_FLIGHT - slots.available_permits();
                    if busy == 0 || jobs.len() >= busy * PER_CALL || lingered {
                        break;
                    }
                    // A call ending (its permit stored if it ends before this waits),
                    // another signature asked for, or the wait's end: look again.
                    tokio::select! {
                        _ = finished.notified() => {}
                        _ = tokio::time::sleep_until(linger) => lingered = true,
                        more = rx.recv() => match more {
                            Some(j) => jobs.push(j),
                            None => break,
                        },
                    }
                }
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (transit, metrics, finished) =
                    (transit.clone(), metrics.clone(), finished.clone());
                tokio::spawn(async move {
                    let _ended = Ended(Some(slot), finished);
                    let mut by_version: BTreeMap<u64, Vec<Job>> = BTreeMap::new();
                    for j in jobs {
                        by_version.entry(j.version).or_default().push(j);
                    }
                    for (version, jobs) in by_version {
                        let (inputs, replies): (Vec<_>, Vec<_>) =
                            jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
                        let result = transit.sign_batch(version, &inputs).await;
                        if let Some(m) = &metrics {
                            m.signing_batches.inc();
                            if result.is_err() {
                                m.signing_failures.inc();
                            }
                        }
                        match result {
                            Ok(sigs) => {
                                for (r, s) in replies.into_iter().zip(sigs) {
                                    let _ = r.send(Ok(s));
                                }
                            }
                            Err(e) => {
                                let text = crate::error::chain(&e);
                                for r in replies {
                                    let _ = r.send(Err(text.clone()));
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { tx }
    }

    /// The signature of `input` by `version`, or why there is none.
    pub async fn sign(&self, version: u64, input: Vec<u8>) -> Result<[u8; 64], TransitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job {
                version,
                input,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TransitError::Busy,
                mpsc::error::TrySendError::Closed(_) => TransitError::Stopped,
            })?;
        match answer.await {
            Ok(Ok(sig)) => Ok(sig),
            Ok(Err(text)) => Err(TransitError::Batch(text)),
            Err(_) => Err(TransitError::Stopped),
        }
    }
}
