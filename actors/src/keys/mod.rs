//! Signing keys: Ed25519 key pairs generated on first start, stored encrypted under the master
//! key (ChaCha20-Poly1305, key id as associated data), published as JWKS, rotated on demand.
//! A retired key stops signing but stays published until every token it signed has expired.
//! With the `vault` backend a key is a version of a Vault Transit key instead: its row holds
//! the public half and which version it is, and Vault signs ([`transit`]).

pub mod transit;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use keyward_messages::CommandError;
use keyward_storage::{SigningKeyRecord, Store};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::chain;
use crate::tokens::derive_key;
use crate::StartError;
use keyward_config::{KeyBackend, Settings};
use std::path::Path;
use transit::{Batcher, Transit, TransitError};

const ALG: &str = "EdDSA";
/// The stored form of a Transit key version: `transit:<version>:<mount>:<key>`.
const TRANSIT_PREFIX: &str = "transit:";

/// A signing key cannot be made, stored, read back or installed. Names the key by its kid,
/// never shows key material.
///
/// NOTE: `Encrypt` and `Decrypt` carry no source: chacha20poly1305's `aead::Error` is opaque on
/// purpose (it says nothing that could help an attacker) and is not a `std::error::Error`
/// without aead's `std` feature.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("encryption failed")]
    Encrypt,
    #[error("key {kid}: unknown storage format")]
    Format { kid: String },
    #[error("key {kid}: bad {part}")]
    Base64 {
        kid: String,
        part: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("key {kid}: bad nonce")]
    NonceLength { kid: String },
    #[error(
        "key {kid} cannot be decrypted: KEYWARD_MASTER_KEY differs from the one that encrypted it"
    )]
    Decrypt { kid: String },
    #[error("encoding a new key")]
    Encode(#[source] ed25519_dalek::pkcs8::Error),
    #[error("key {kid}")]
    PublicKey {
        kid: String,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("key {kid}")]
    PrivateKey {
        kid: String,
        #[source]
        source: ed25519_dalek::pkcs8::Error,
    },
    #[error("key ring poisoned")]
    Poisoned,
    #[error("no active signing key")]
    NoActiveKey,
    #[error(
        "key {kid} is version {version} of the Vault Transit key {mount}/{name}, but {configured}"
    )]
    TransitUnconfigured {
        kid: String,
        version: u64,
        mount: String,
        name: String,
        configured: String,
    },
    #[error(transparent)]
    Transit(#[from] TransitError),
}

/// `StartError` carries text: the whole chain goes into it.
fn start_error(e: KeyError) -> StartError {
    StartError::Keys(chain(&e))
}

/// The active key, decoded once: `jsonwebtoken::encode` decodes its key again (and derives
/// the public half, a scalar multiplication) at every signature.
struct Signer {
    /// The token's first part, the same for every token this key signs.
    header: String,
    key: Held,
}

/// Where a key's private half is.
enum Held {
    Here(Box<SigningKey>),
    /// This version of a Transit key, signed through that key's batcher.
    Transit(u64, Batcher),
}

impl Signer {
    fn new(kid: &str, key: Held) -> Result<Self, CommandError> {
        let header = serde_json::to_vec(&access_header(kid)).map_err(|_| CommandError::Internal)?;
        Ok(Self {
            header: URL_SAFE_NO_PAD.encode(header),
            key,
        })
    }
}

/// A Transit key version's stored form, parsed: `(version, mount, key)`.
fn transit_ref(stored: &str) -> Option<(u64, &str, &str)> {
    let mut parts = stored.strip_prefix(TRANSIT_PREFIX)?.splitn(3, ':');
    let version = parts.next()?.parse().ok()?;
    Some((version, parts.next()?, parts.next()?))
}

/// The row of version `version` of a Transit key: the public half and where the private one is.
fn transit_record(
    transit: &Transit,
    key: &transit::TransitKey,
    version: u64,
    now: DateTime<Utc>,
) -> Result<SigningKeyRecord, KeyError> {
    let public = key.public.get(&version).ok_or(KeyError::NoActiveKey)?;
    let x = URL_SAFE_NO_PAD.encode(public);
    Ok(SigningKeyRecord {
        kid: thumbprint(&x),
        algorithm: ALG.into(),
        public_key: x,
        private_key_enc: format!(
            "{TRANSIT_PREFIX}{version}:{}:{}",
            transit.mount(),
            transit.key()
        ),
        created_at: now,
        retired_at: None,
        signs_from: None,
    })
}

/// A key that signs (or will, or did) during `[from, until)`.
struct Window {
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    signer: Signer,
}

/// A key published in JWKS (and accepted) until `until`, when its last token has expired.
struct Published {
    kid: String,
    key: DecodingKey,
    jwk: serde_json::Value,
    until: Option<DateTime<Utc>>,
}

struct Inner {
    /// Newest first.
    signing: Vec<Window>,
    /// Oldest first; a handful at most.
    published: Vec<Published>,
}

/// The node's view of the signing keys. Reads never wait on I/O. Which key signs is decided
/// at each signature by the clock, so every node switches to a rotated-in key at the same
/// moment, long after each has published it.
pub struct KeyRing {
    inner: RwLock<Inner>,
    clock: crate::Clock,
    access_ttl: Duration,
    /// With the `vault` backend.
    transit: Option<(Arc<Transit>, Batcher)>,
    /// Batchers for the Transit keys older versions belong to, by mount and key, when the
    /// configured key is another: they sign until the configured key's version takes over.
    older: std::sync::Mutex<HashMap<(String, String), Batcher>>,
    metrics: Option<crate::metrics::Metrics>,
}

/// Where this node's keys are made and kept: [`KeyBackend`], connected.
#[derive(Clone)]
pub enum Keys {
    Local,
    Transit(Arc<Transit>),
}

impl Keys {
    pub fn connect(backend: &KeyBackend) -> Result<Keys, StartError> {
        match backend {
            KeyBackend::Local => Ok(Keys::Local),
            KeyBackend::Vault(cfg) => Transit::new(cfg.clone())
                .map(|t| Keys::Transit(Arc::new(t)))
                .map_err(|e| start_error(e.into())),
        }
    }

    fn transit(&self) -> Option<&Arc<Transit>> {
        match self {
            Keys::Local => None,
            Keys::Transit(t) => Some(t),
        }
    }

    /// A new key (a new Transit version, or a key made here), not yet stored.
    async fn make(
        &self,
        master: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<SigningKeyRecord, KeyError> {
        match self {
            Keys::Local => generate(master, now),
            // The key's first version when there is no key yet (made now), else a new one.
            Keys::Transit(t) => {
                let key = match t.read_key().await? {
                    None => t.ensure_key().await?,
                    Some(_) => t.rotate().await?,
                };
                transit_record(t, &key, key.latest, now)
            }
        }
    }
}

/// What `keyward keys list` shows.
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    /// None: it signed from its creation.
    pub signs_from: Option<DateTime<Utc>>,
    /// Where its private half is: `local` (encrypted in the database) or
    /// `vault:<mount>/<key>#<version>`.
    pub held: String,
}

fn cipher(master: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&derive_key(master, "signing-keys").into())
}

fn encrypt(master: &[u8; 32], kid: &str, plain: &[u8]) -> Result<String, KeyError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher(master)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: kid.as_bytes(),
            },
        )
        .map_err(|_| KeyError::Encrypt)?;
    Ok(format!(
        "v1:{}:{}",
        STANDARD.encode(nonce),
        STANDARD.encode(ct)
    ))
}

fn decrypt(master: &[u8; 32], kid: &str, stored: &str) -> Result<Vec<u8>, KeyError> {
    let mut parts = stored.split(':');
    let (Some("v1"), Some(n), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyError::Format { kid: kid.into() });
    };
    let base64 = |part, text| {
        STANDARD.decode(text).map_err(|source| KeyError::Base64 {
            kid: kid.into(),
            part,
            source,
        })
    };
    let nonce = base64("nonce", n)?;
    let ct = base64("ciphertext", c)?;
    if nonce.len() != 12 {
        return Err(KeyError::NonceLength { kid: kid.into() });
    }
    cipher(master)
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: kid.as_bytes(),
            },
        )
        .map_err(|_| KeyError::Decrypt { kid: kid.into() })
}

/// RFC 7638 thumbprint of an Ed25519 JWK: a stable, content-derived key id.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn generate(master: &[u8; 32], now: DateTime<Utc>) -> Result<SigningKeyRecord, KeyError> {
    let sk = SigningKey::generate(&mut rand::rngs::OsRng);
    let x = URL_SAFE_NO_PAD.encode(sk.verifying_key().to_bytes());
    let kid = thumbprint(&x);
    let der = sk.to_pkcs8_der().map_err(KeyError::Encode)?;
    Ok(SigningKeyRecord {
        private_key_enc: encrypt(master, &kid, der.as_bytes())?,
        kid,
        algorithm: ALG.into(),
        public_key: x,
        created_at: now,
        retired_at: None,
        signs_from: None,
    })
}

impl KeyRing {
    /// Loads the stored keys, making the first one when there is none. With the `vault`
    /// backend, the Transit key (made when missing) must be the one that signs: when the
    /// stored keys do not hold its latest version yet (a node moving to Vault, or a version
    /// made in Vault directly), that version is stored to sign after the publish lead, as
    /// `keys rotate` would, so verifiers know it before its first token.
    pub async fn load_or_create(
        store: &Store,
        master: &[u8; 32],
        clock: crate::Clock,
        access_ttl: Duration,
        keys: &Keys,
        lead: Duration,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Result<Arc<KeyRing>, StartError> {
        let now = clock();
        let mut records = store.signing_keys().all().await?;
        let active = records.iter().any(|r| r.retired_at.is_none());
        match keys {
            Keys::Local if !active => {
                let rec = generate(master, now).map_err(start_error)?;
                let tx = store.begin().await?;
                tx.signing_keys().insert(&rec).await?;
                tx.commit().await?;
                tracing::info!(kid = %rec.kid, "generated a signing key");
                records.push(rec);
            }
            Keys::Local => {
                // A Transit key that signs or will: this node could not, so it does not start.
                let vault_key = records
                    .iter()
                    .filter(|r| r.retired_at.is_none_or(|t| t > now))
                    .find_map(|r| transit_ref(&r.private_key_enc).map(|t| (r, t)));
                if let Some((r, (version, mount, name))) = vault_key {
                    return Err(start_error(KeyError::TransitUnconfigured {
                        kid: r.kid.clone(),
                        version,
                        mount: mount.to_owned(),
                        name: name.to_owned(),
                        configured:
                            "KEYWARD_KEYS__BACKEND is not vault (set it and the Vault settings)"
                                .into(),
                    }));
                }
            }
            Keys::Transit(t) => {
                let key = t.ensure_key().await.map_err(|e| start_error(e.into()))?;
                let rec = transit_record(t, &key, key.latest, now).map_err(start_error)?;
                let kid = rec.kid.clone();
                if !records.iter().any(|r| r.kid == kid) {
                    let lead = if active { lead } else { Duration::zero() };
                    match schedule(store, rec, now, lead).await {
                        Ok(r) => {
                            tracing::info!(kid = %r.kid, signs_from = %r.signs_from, "a Vault Transit key version signs from then")
                        }
                        // Another node stored it first.
                        Err(e)
                            if store
                                .signing_keys()
                                .all()
                                .await?
                                .iter()
                                .any(|r| r.kid == kid) =>
                        {
                            tracing::debug!(error = %e, "the Transit key version was stored by another node");
                        }
                        Err(e) => return Err(e),
                    }
                    records = store.signing_keys().all().await?;
                }
            }
        }
        let ring = KeyRing {
            inner: RwLock::new(Inner {
                signing: Vec::new(),
                published: Vec::new(),
            }),
            clock,
            access_ttl,
            transit: keys
                .transit()
                .map(|t| (t.clone(), Batcher::start(t.clone(), metrics.clone()))),
            older: Default::default(),
            metrics,
        };
        ring.install(&records, master).map_err(start_error)?;
        Ok(Arc::new(ring))
    }

    /// Reads the stored keys again (a rotation, here or on another node or from the CLI).
    pub async fn reload(&self, store: &Store, master: &[u8; 32]) -> Result<(), String> {
        let records = store.signing_keys().all().await.map_err(|e| chain(&e))?;
        self.install(&records, master).map_err(|e| chain(&e))
    }

    fn install(&self, records: &[SigningKeyRecord], master: &[u8; 32]) -> Result<(), KeyError> {
        let now = (self.clock)();
        // A retired key is published while tokens it signed may live (plus a minute of skew);
        // a rotated-in key from the moment it is stored, before it signs.
        let horizon = self.access_ttl + Duration::seconds(60);
        let mut signing = Vec::new();
        let mut published = Vec::new();
        for r in records {
            if r.algorithm != ALG {
                continue;
            }
            if r.retired_at.is_some_and(|t| t + horizon <= now) {
                continue;
            }
            let key = DecodingKey::from_ed_components(&r.public_key).map_err(|source| {
                KeyError::PublicKey {
                    kid: r.kid.clone(),
                    source,
                }
            })?;
            published.push(Published {
                kid: r.kid.clone(),
                key,
                jwk: serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": r.public_key,
                    "kid": r.kid, "alg": ALG, "use": "sig",
                }),
                until: r.retired_at.map(|t| t + horizon),
            });
            if r.retired_at.is_none_or(|t| t > now) {
                let key = match self.held(r, master) {
                    Ok(key) => key,
                    // A node not (yet) on the backend that holds this key still publishes
                    // and accepts it; at start this is fatal (see `load_or_create`).
                    Err(e @ KeyError::TransitUnconfigured { .. }) => {
                        tracing::error!(error = %e, "this node cannot sign with a stored key; move every node to the same key backend before the key signs");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                signing.push(Window {
                    from: r.signs_from.unwrap_or(r.created_at),
                    until: r.retired_at,
                    signer: Signer::new(&r.kid, key).map_err(|_| KeyError::Poisoned)?,
                });
            }
        }
        // The newest key whose window holds the moment signs.
        signing.sort_by_key(|w| std::cmp::Reverse(w.from));
        let mut inner = self.inner.write().map_err(|_| KeyError::Poisoned)?;
        *inner = Inner { signing, published };
        Ok(())
    }

    /// The private half of a stored key that (still or soon) signs.
    fn held(&self, r: &SigningKeyRecord, master: &[u8; 32]) -> Result<Held, KeyError> {
        let Some((version, mount, name)) = transit_ref(&r.private_key_enc) else {
            let der = decrypt(master, &r.kid, &r.private_key_enc)?;
            let key = SigningKey::from_pkcs8_der(&der).map_err(|source| KeyError::PrivateKey {
                kid: r.kid.clone(),
                source,
            })?;
            return Ok(Held::Here(Box::new(key)));
        };
        let Some((t, batcher)) = &self.transit else {
            return Err(KeyError::TransitUnconfigured {
                kid: r.kid.clone(),
                version,
                mount: mount.to_owned(),
                name: name.to_owned(),
                configured: "KEYWARD_KEYS__BACKEND is not vault".to_owned(),
            });
        };
        if t.mount() == mount && t.key() == name {
            return Ok(Held::Transit(version, batcher.clone()));
        }
        // The settings name another Transit key, which will sign after its publish lead: this
        // one goes on signing until then, with the same Vault and token.
        let mut older = self.older.lock().map_err(|_| KeyError::Poisoned)?;
        let key = (mount.to_owned(), name.to_owned());
        let batcher = match older.get(&key) {
            Some(b) => b.clone(),
            None => {
                let b = Batcher::start(Arc::new(t.for_key(mount, name)?), self.metrics.clone());
                older.insert(key, b.clone());
                b
            }
        };
        Ok(Held::Transit(version, batcher))
    }

    /// Signs `claims` as an access token (typ at+jwt, alg EdDSA, kid): the JWS compact form
    /// `jsonwebtoken::encode` makes, with the key decoded once. With a Transit key, Vault
    /// signs (batched with the signatures asked for meanwhile); Vault down or slow past
    /// `KEYWARD_KEYS__VAULT_TIMEOUT_MS` is a 503.
    pub async fn sign<C: Serialize>(&self, claims: &C) -> Result<String, CommandError> {
        use ed25519_dalek::Signer as _;
        let body = serde_json::to_vec(claims).map_err(|e| {
            tracing::error!(error = %e, "an access token's claims do not serialize");
            CommandError::Internal
        })?;
        let (mut token, version, batcher) = {
            let inner = self.inner.read().map_err(|_| CommandError::Internal)?;
            let signer = active(&inner, (self.clock)())?;
            let mut token = format!("{}.{}", signer.header, URL_SAFE_NO_PAD.encode(body));
            match &signer.key {
                Held::Here(key) => {
                    self.count("local");
                    let signature = key.sign(token.as_bytes());
                    token.push('.');
                    token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
                    return Ok(token);
                }
                Held::Transit(version, batcher) => (token, *version, batcher.clone()),
            }
        };
        let signature = batcher
            .sign(version, token.as_bytes().to_vec())
            .await
            .map_err(TransitError::into_command)?;
        self.count("vault");
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    fn count(&self, backend: &str) {
        if let Some(m) = &self.metrics {
            m.signatures.with_label_values(&[backend]).inc();
        }
    }

    /// Whether this node signs with keys held in its own memory (the local backend), not
    /// through a key service that can be slow or down.
    pub fn signs_here(&self) -> bool {
        self.transit.is_none()
    }

    /// The length `sign(claims)` would have, without signing: a signature is the costly part,
    /// and its length is fixed.
    pub fn signed_len<C: Serialize>(&self, claims: &C) -> Result<usize, CommandError> {
        let inner = self.inner.read().map_err(|_| CommandError::Internal)?;
        let header = active(&inner, (self.clock)())?.header.len();
        let body = serde_json::to_vec(claims)
            .map_err(|_| CommandError::Internal)?
            .len();
        // base64url without padding: 4 characters per 3 bytes, rounded up.
        let b64 = |n: usize| (4 * n).div_ceil(3);
        Ok(header + 1 + b64(body) + 1 + b64(ed25519_dalek::SIGNATURE_LENGTH))
    }

    /// The verification key for `kid`, if it is published.
    pub fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        let now = (self.clock)();
        self.inner
            .read()
            .ok()?
            .published
            .iter()
            .find(|p| p.kid == kid && p.until.is_none_or(|u| u > now))
            .map(|p| p.key.clone())
    }

    /// The published keys: each rotated-in key from its creation, each retired one until its
    /// last token expires.
    pub fn jwks(&self) -> serde_json::Value {
        let now = (self.clock)();
        let keys: Vec<serde_json::Value> = self
            .inner
            .read()
            .map(|i| {
                i.published
                    .iter()
                    .filter(|p| p.until.is_none_or(|u| u > now))
                    .map(|p| p.jwk.clone())
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({ "keys": keys })
    }
}

/// What a rotation made.
#[derive(Debug, Serialize)]
pub struct Rotated {
    pub kid: String,
    /// Published from now; signs from then, when the keys before it stop signing.
    pub signs_from: DateTime<Utc>,
}

/// Makes a key (locally, or a new Transit version) that every node publishes at once and that
/// signs from `now + lead`, when the active keys stop signing (lead 0: at once, for
/// emergencies); `keys.rotated` goes out in the same transaction, so running nodes reload
/// their keys (through `keyward.broadcast`, or the outbox feed, within a second) long before
/// the new key signs.
pub async fn rotate(
    store: &Store,
    master: &[u8; 32],
    keys: &Keys,
    now: DateTime<Utc>,
    lead: Duration,
) -> Result<Rotated, StartError> {
    // Refuse to rotate under a wrong master key: the old keys made here must decrypt.
    for r in store
        .signing_keys()
        .all()
        .await?
        .iter()
        .filter(|r| r.retired_at.is_none() && transit_ref(&r.private_key_enc).is_none())
    {
        decrypt(master, &r.kid, &r.private_key_enc).map_err(start_error)?;
    }
    let rec = keys.make(master, now).await.map_err(start_error)?;
    schedule(store, rec, now, lead).await
}

/// Stores `rec` to sign from `now + lead`, retiring the active keys then, and tells the nodes.
async fn schedule(
    store: &Store,
    mut rec: SigningKeyRecord,
    now: DateTime<Utc>,
    lead: Duration,
) -> Result<Rotated, StartError> {
    let signs_from = now + lead.max(Duration::zero());
    rec.signs_from = Some(signs_from);
    let tx = store.begin().await?;
    tx.signing_keys().retire_active(signs_from).await?;
    tx.signing_keys().insert(&rec).await?;
    let ev = keyward_messages::events::DomainEvent::KeysRotated {
        kid: rec.kid.clone(),
        signs_from,
    };
    crate::outbox::enqueue_at(
        &tx,
        now,
        &keyward_messages::RequestMeta::default(),
        keyward_messages::events::Outgoing::Event(ev),
    )
    .await?;
    tx.commit().await?;
    Ok(Rotated {
        kid: rec.kid,
        signs_from,
    })
}

/// Reloads a node's [`KeyRing`] when a rotation is heard of (`keys.rotated`), or when
/// messages may have been missed.
pub struct KeyRingCache {
    pub ring: Arc<KeyRing>,
    pub store: Store,
    pub master: [u8; 32],
}

impl KeyRingCache {
    fn reload(&self) {
        let (ring, store, master) = (self.ring.clone(), self.store.clone(), self.master);
        tokio::spawn(async move {
            match ring.reload(&store, &master).await {
                Ok(()) => tracing::info!("signing keys reloaded"),
                Err(e) => tracing::error!(error = %e, "reloading the signing keys failed"),
            }
        });
    }
}

impl crate::caches::NodeCache for KeyRingCache {
    fn apply(&self, env: &keyward_messages::events::Envelope) {
        if env.kind == "keys.rotated" {
            self.reload();
        }
    }

    fn forget_beliefs(&self) {
        self.reload();
    }
}

/// The active signing key: its kid and its PKCS#8 DER. For tools and tests that hold the
/// master key (the security suite signs tokens with it to show that each claim check holds on
/// its own, not only the signature check).
pub async fn active_private_key(
    store: &Store,
    master: &[u8; 32],
) -> Result<(String, Vec<u8>), StartError> {
    let rec = store
        .signing_keys()
        .all()
        .await?
        .into_iter()
        .filter(|r| r.retired_at.is_none())
        .max_by_key(|r| r.signs_from.unwrap_or(r.created_at))
        .ok_or_else(|| start_error(KeyError::NoActiveKey))?;
    let der = decrypt(master, &rec.kid, &rec.private_key_enc).map_err(start_error)?;
    Ok((rec.kid, der))
}

pub async fn list(store: &Store) -> Result<Vec<KeyInfo>, StartError> {
    Ok(store
        .signing_keys()
        .all()
        .await?
        .into_iter()
        .map(|r| KeyInfo {
            algorithm: r.algorithm,
            created_at: r.created_at,
            retired_at: r.retired_at,
            signs_from: r.signs_from,
            held: match transit_ref(&r.private_key_enc) {
                Some((version, mount, key)) => format!("vault:{mount}/{key}#{version}"),
                None => "local".to_owned(),
            },
            kid: r.kid,
        })
        .collect())
}

/// The master key: configured, or (embedded mode only) generated into the data dir.
pub fn master_key(settings: &Settings) -> Result<[u8; 32], StartError> {
    if let Some(k) = settings
        .master_key_bytes()
        .map_err(|e| StartError::Config(e.to_string()))?
    {
        return Ok(k);
    }
    if settings.is_distributed() {
        return Err(StartError::Config(
            "KEYWARD_MASTER_KEY is required in distributed mode (32 random bytes, base64; the same on every node)".into(),
        ));
    }
    std::fs::create_dir_all(&settings.data_dir).map_err(StartError::io(&settings.data_dir))?;
    let path = settings.data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(StartError::io(&path))?;
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            StartError::Config(format!(
                "{}: not base64; delete it only if no keys were encrypted with it",
                path.display()
            ))
        })?;
        return bytes
            .try_into()
            .map_err(|_| StartError::Config(format!("{}: must hold 32 bytes", path.display())));
    }
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    write_private(&path, &STANDARD.encode(k))?;
    tracing::warn!(path = %path.display(), "generated a master key into the data dir; set KEYWARD_MASTER_KEY for production");
    Ok(k)
}

fn write_private(path: &Path, contents: &str) -> Result<(), StartError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path).map_err(StartError::io(path))?;
    f.write_all(contents.as_bytes())
        .map_err(StartError::io(path))
}

/// The JOSE header of an access token signed with `kid`.
fn access_header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.to_owned());
    header
}

fn active(inner: &Inner, now: DateTime<Utc>) -> Result<&Signer, CommandError> {
    inner
        .signing
        .iter()
        .find(|w| w.from <= now && w.until.is_none_or(|u| u > now))
        .map(|w| &w.signer)
        .ok_or_else(|| {
            tracing::error!("no active signing key");
            CommandError::Internal
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn a_token_is_signed_as_jsonwebtoken_signs_it_and_its_length_is_predicted() {
        let (master, now) = ([7; 32], Utc::now());
        let ring = ring_at(now);
        let rec = generate(&master, now).unwrap();
        ring.install(&[rec], &master).unwrap();
        let kid = ring.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
        let der = {
            let inner = ring.inner.read().unwrap();
            let Held::Here(key) = &inner.signing[0].signer.key else {
                panic!("a local key")
            };
            key.to_pkcs8_der().unwrap()
        };
        let theirs = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
        // Every remainder of the base64 groups, and text that JSON escapes.
        for n in 0..7 {
            let claims = serde_json::json!({
                "sub": "x".repeat(n),
                "email": "ünï\"cødé@example.com",
                "roles": vec!["role"; n],
            });
            let token = ring.sign(&claims).await.unwrap();
            assert_eq!(ring.signed_len(&claims).unwrap(), token.len(), "{claims}");
            // Ed25519 is deterministic: the crate's encoder makes the same token.
            let expected = jsonwebtoken::encode(&access_header(&kid), &claims, &theirs).unwrap();
            assert_eq!(token, expected);
        }
    }

    fn ring_at(now: DateTime<Utc>) -> KeyRing {
        KeyRing {
            inner: RwLock::new(Inner {
                signing: Vec::new(),
                published: Vec::new(),
            }),
            clock: Arc::new(move || now),
            access_ttl: Duration::minutes(15),
            transit: None,
            older: Default::default(),
            metrics: None,
        }
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    #[tokio::test]
    async fn a_rotated_in_key_is_published_at_once_and_signs_only_from_its_time() {
        let (master, t0) = ([7; 32], Utc::now());
        let mut old = generate(&master, t0 - Duration::hours(1)).unwrap();
        let mut new = generate(&master, t0).unwrap();
        new.signs_from = Some(t0 + Duration::minutes(10));
        old.retired_at = new.signs_from;
        let records = [old.clone(), new.clone()];
        let claims = serde_json::json!({"sub": "x"});
        // Before its time: both published, the old key signs.
        let ring = ring_at(t0);
        ring.install(&records, &master).unwrap();
        let kids: Vec<_> = ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kids, [old.kid.clone(), new.kid.clone()]);
        assert_eq!(kid_of(&ring.sign(&claims).await.unwrap()), old.kid);
        // From its time the new key signs; the old one stays published for its tokens.
        let ring = ring_at(t0 + Duration::minutes(10));
        ring.install(&records, &master).unwrap();
        assert_eq!(kid_of(&ring.sign(&claims).await.unwrap()), new.kid);
        assert!(ring.decoding_key(&old.kid).is_some());
        // Once its last token expired (15 minutes, plus a minute), the old key is gone.
        let ring = ring_at(t0 + Duration::minutes(27));
        ring.install(&records, &master).unwrap();
        assert!(ring.decoding_key(&old.kid).is_none());
        assert_eq!(kid_of(&ring.sign(&claims).await.unwrap()), new.kid);
    }

    #[test]
    fn a_private_key_only_decrypts_under_its_master_key_and_kid() {
        let rec = generate(&[7; 32], Utc::now()).unwrap();
        assert!(decrypt(&[7; 32], &rec.kid, &rec.private_key_enc).is_ok());
        assert!(decrypt(&[8; 32], &rec.kid, &rec.private_key_enc).is_err());
        assert!(decrypt(&[7; 32], "other-kid", &rec.private_key_enc).is_err());
        assert!(!rec.private_key_enc.contains(&rec.public_key));
    }

    #[test]
    fn a_key_under_another_master_key_is_refused_with_a_hint_and_no_key_material() {
        let rec = generate(&[7; 32], Utc::now()).unwrap();

        let e = decrypt(&[8; 32], &rec.kid, &rec.private_key_enc).unwrap_err();

        assert!(matches!(&e, KeyError::Decrypt { kid } if *kid == rec.kid));
        let text = chain(&e);
        assert!(text.contains("KEYWARD_MASTER_KEY differs"), "{text}");
        for part in rec.private_key_enc.split(':').skip(1) {
            assert!(!text.contains(part), "{text}");
        }
    }

    #[test]
    fn a_stored_key_that_is_not_ours_names_the_key_and_what_is_wrong() {
        let e = decrypt(&[7; 32], "k1", "v2:AAAA:AAAA").unwrap_err();
        assert_eq!(chain(&e), "key k1: unknown storage format");
        let e = decrypt(&[7; 32], "k1", "v1:!!:AAAA").unwrap_err();
        assert!(matches!(e, KeyError::Base64 { part: "nonce", .. }), "{e:?}");
        let e = decrypt(&[7; 32], "k1", "v1:AAAA:AAAA").unwrap_err();
        assert!(matches!(e, KeyError::NonceLength { .. }), "{e:?}");
    }

    #[test]
    fn the_kid_is_the_jwk_thumbprint() {
        // RFC 8037 appendix A.3 test vector.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
